//! Codex's `~/.codex/config.toml`: one `[mcp_servers.NAME]` table per
//! server, next to the rest of Codex's settings.
//!
//! Edited with `toml_edit`, so the user's comments, key order and layout
//! stay byte for byte; an entry we replace keeps its place and the comment
//! above it (its old keys, such as an `env` table that the daemon now owns,
//! go), and new entries are appended at the end of the file.

use serde_json::{Map, Value};
use toml_edit::{Array, DocumentMut, Item, Table};

use super::{Edited, Entry};
use crate::toml_doc;

/// The key of Codex's server tables.
const SERVERS: &str = "mcp_servers";

/// The `[mcp_servers]` entries of `text`, as JSON values.
pub(super) fn servers(text: &str) -> Result<Map<String, Value>, String> {
    let doc: Value =
        toml::from_str(text).map_err(|e| format!("not valid TOML ({})", e.message()))?;
    match doc.get(SERVERS) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(format!("\"{SERVERS}\" is not a table")),
    }
}

/// The tables to paste into `~/.codex/config.toml`.
pub(super) fn snippet(entries: &[Entry]) -> String {
    let mut servers = Table::new();
    servers.set_implicit(true);
    for e in entries {
        servers.insert(&e.key, Item::Table(table(e)));
    }
    let mut doc = DocumentMut::new();
    doc.insert(SERVERS, Item::Table(servers));
    format!("# in ~/.codex/config.toml\n{doc}")
}

fn table(e: &Entry) -> Table {
    let mut t = Table::new();
    t.insert("command", toml_edit::value(e.command.as_str()));
    let args: Array = e.args.iter().map(String::as_str).collect();
    t.insert("args", toml_edit::value(args));
    t
}

fn is_wanted(item: &Item, e: &Entry) -> bool {
    let Some(t) = item.as_table_like() else {
        return false;
    };
    let args: Option<Vec<&str>> = t
        .get("args")
        .and_then(Item::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect());
    t.get("command").and_then(Item::as_str) == Some(e.command.as_str())
        && args == Some(e.args.iter().map(String::as_str).collect())
        && t.len() == 2
}

/// Sets every entry and removes `remove`, keeping the rest of the file.
pub(super) fn apply(text: &str, entries: &[Entry], remove: &[String]) -> Result<Edited, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("not valid TOML ({})", e.message()))?;
    let mut next = toml_doc::next_position(&doc);
    let servers = toml_doc::table_of_tables(&mut doc, SERVERS)
        .ok_or_else(|| format!("\"{SERVERS}\" is not a table of [{SERVERS}.NAME] tables"))?;

    let mut edited = Edited::default();
    for e in entries {
        let mut new = table(e);
        match servers.get_mut(&e.key) {
            Some(old) if is_wanted(old, e) => {}
            Some(old) => {
                toml_doc::replace_in_place(old, new);
                edited.replaced.push(e.key.clone());
            }
            None => {
                if !text.trim().is_empty() {
                    new.decor_mut().set_prefix("\n");
                }
                toml_doc::append(servers, &e.key, new, &mut next);
                edited.added.push(e.key.clone());
            }
        }
    }
    for k in remove {
        if servers.remove(k).is_some() {
            edited.removed.push(k.clone());
        }
    }
    edited.text =
        if edited.added.is_empty() && edited.replaced.is_empty() && edited.removed.is_empty() {
            text.to_string()
        } else {
            doc.to_string()
        };
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIM: &str = "/usr/bin/stdioproxy-shim";

    fn entry(key: &str, args: &[&str]) -> Entry {
        Entry {
            key: key.into(),
            command: SHIM.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    const EXISTING: &str = "# Codex settings\n\
        model = \"o4-mini\"  # fast\n\
        \n\
        [tui]\n\
        theme = \"dark\"\n\
        \n\
        # the GitHub server\n\
        [mcp_servers.github]\n\
        command = \"npx\"\n\
        args = [\"-y\", \"@modelcontextprotocol/server-github\"]\n\
        \n\
        [mcp_servers.github.env]\n\
        GITHUB_TOKEN = \"ghp_x\"\n\
        \n\
        [mcp_servers.remote]\n\
        url = \"https://example.com/mcp\"\n";

    #[test]
    fn adds_and_replaces_keeping_comments() {
        let wanted = [
            entry("github", &["--server", "github", "--name-max", "51"]),
            entry("memory", &["--server", "memory", "--name-max", "51"]),
        ];
        let out = apply(EXISTING, &wanted, &[]).expect("apply");
        assert_eq!(out.replaced, vec!["github"]);
        assert_eq!(out.added, vec!["memory"]);
        let text = out.text;
        assert!(
            text.starts_with("# Codex settings\nmodel = \"o4-mini\"  # fast\n\n[tui]\ntheme = \"dark\"\n\n# the GitHub server\n[mcp_servers.github]\n"),
            "{text}"
        );
        assert!(!text.contains("ghp_x"), "the env table went: {text}");
        let got = servers(&text).expect("parse");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            vec!["github", "remote", "memory"]
        );
        assert_eq!(got["github"], wanted[0].to_json());
        assert_eq!(got["memory"], wanted[1].to_json());
        assert_eq!(got["remote"]["url"], "https://example.com/mcp");
        // Idempotent.
        let again = apply(&text, &wanted, &[]).expect("apply");
        assert_eq!(again.text, text);
    }

    #[test]
    fn a_new_file_and_removal() {
        let out = apply("", &[entry("stdioproxy", &["--name-max", "47"])], &[]).expect("apply");
        assert_eq!(
            out.text,
            format!(
                "[mcp_servers.stdioproxy]\ncommand = \"{SHIM}\"\nargs = [\"--name-max\", \"47\"]\n"
            )
        );
        let out = apply(&out.text, &[], &["stdioproxy".into()]).expect("apply");
        assert!(servers(&out.text).expect("parse").is_empty());
        assert_eq!(out.removed, vec!["stdioproxy"]);
    }

    #[test]
    fn snippets_parse_and_bad_files_are_refused() {
        let s = snippet(&[entry("a-b", &["--server", "a-b"])]);
        let got = servers(&s).expect("parse");
        assert_eq!(got["a-b"]["args"], serde_json::json!(["--server", "a-b"]));
        for bad in ["[mcp_servers\n", "mcp_servers = 3\n"] {
            assert!(apply(bad, &[entry("x", &[])], &[]).is_err(), "{bad}");
        }
    }
}
