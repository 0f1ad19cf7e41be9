//! The config parser on arbitrary and mutated TOML: it never panics, and
//! every error it reports names a line and column (the README promises
//! file:line:column for every config error), in particular every syntax
//! error.

use std::path::Path;

use proptest::prelude::*;
use stdioproxy::config::parse_str;

/// A config using every kind of value the schema has.
const FULL: &str = r#"# a comment
[daemon]
page_size = 50
max_message_size = 1048576
max_sessions = 8
handshake_timeout = "5s"
reload_debounce = "150ms"
watch_config = false

[defaults]
startup_timeout = "30s"
request_timeout = "5m"
health_interval = "0s"

[servers.github]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-github", 'single']
env = { GITHUB_TOKEN = "${GITHUB_TOKEN}", "QUOTED KEY" = "é→ü" }
cwd = "~/src"
enabled = true
stop_grace = "2s"

[servers.off-line_2]
command = """multi
line"""
enabled = false
"#;

/// Pieces that are significant to TOML (and to this schema), and multi-byte
/// characters, which have broken byte/char position maths before.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            "=",
            "\"",
            "'",
            "\"\"\"",
            ",",
            ".",
            "#",
            "\n",
            "\r\n",
            " ",
            "\t",
            "\\",
            "\\u",
            "${",
            "}",
            "0",
            "1e3",
            "-",
            "_",
            "true",
            "inf",
            "nan",
            "servers",
            "daemon",
            "defaults",
            "command",
            "args",
            "env",
            "é",
            "→",
            "😀",
            "\u{0}",
            "\u{feff}",
            "30x",
            "1970-01-01",
            "[servers.x]\n",
            "command = 5\n",
        ])
        .prop_map(String::from),
        any::<char>().prop_map(String::from),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index, usize),
    DuplicateLine(prop::sample::Index),
    SwapLines(prop::sample::Index, prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), piece()).prop_map(|(i, p)| Edit::Insert(i, p)),
        3 => (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

/// The char boundary at or before `i`.
fn boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    for e in edits {
        match e {
            Edit::Insert(at, piece) => {
                let at = boundary(&s, at.index(s.len() + 1));
                s.insert_str(at, piece);
            }
            Edit::Delete(at, n) => {
                if s.is_empty() {
                    continue;
                }
                let start = boundary(&s, at.index(s.len()));
                let end = boundary(&s, start + n);
                s.replace_range(start..end.max(start), "");
            }
            Edit::DuplicateLine(at) => {
                let mut lines: Vec<&str> = s.split('\n').collect();
                let i = at.index(lines.len());
                lines.insert(i, lines[i]);
                s = lines.join("\n");
            }
            Edit::SwapLines(a, b) => {
                let mut lines: Vec<&str> = s.split('\n').collect();
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
                s = lines.join("\n");
            }
        }
    }
    s
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let syntax_ok = toml::from_str::<toml::Table>(text).is_ok();
    match parse_str(Path::new("c.toml"), text) {
        Ok(_) => prop_assert!(syntax_ok, "accepted invalid TOML: {:?}", text),
        Err(e) => {
            prop_assert!(
                e.position.is_some(),
                "error without a position (syntax ok: {}): {} in {:?}",
                syntax_ok,
                e,
                text
            );
            let (line, col) = e.position.unwrap_or_default();
            let lines = text.split('\n').count();
            prop_assert!(
                line >= 1 && line <= lines.max(1),
                "line {} of {}: {}",
                line,
                lines,
                e
            );
            prop_assert!(col >= 1, "{}", e);
        }
    }
    Ok(())
}

#[test]
fn the_template_is_valid() {
    parse_str(Path::new("c.toml"), FULL).expect("the template parses");
}

proptest! {
    #![proptest_config(crate::config(1024))]

    #[test]
    fn mutated_configs_never_panic_and_errors_are_located(edits in prop::collection::vec(edit(), 1..6)) {
        check(&apply(FULL, &edits))?;
    }

    #[test]
    fn arbitrary_text_never_panics_and_errors_are_located(
        pieces in prop::collection::vec(piece(), 0..40)
    ) {
        check(&pieces.concat())?;
    }
}
