//! Naming a duplicate key and where it was first defined.
//!
//! The TOML parser reports a duplicate only as "duplicate key" at the second
//! occurrence. After an `import` was appended to a config (or a table was
//! pasted twice) that is not enough to fix the file: a person needs to know
//! which key, and where the first one is. The parser's span points at the
//! duplicate key; its full dotted path comes from the line it is on (and
//! the table header above it), and the first definition is found by parsing
//! the text before that line, which held no error, with spans.

use std::ops::Range;

use toml_edit::{Document, Item, Key};

/// `duplicate key "servers.a" (first defined on line 3)` for the duplicate
/// at `span` in `text`, or `None` when it cannot be worked out (then the
/// parser's own message stands).
pub(super) fn describe(text: &str, span: Range<usize>) -> Option<String> {
    let line_start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?.trim();
    let before = text.get(..line_start)?;
    let path = if line.starts_with('[') {
        header_path(line)?
    } else {
        let mut path = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map_or(Some(Vec::new()), header_path)?;
        let key_text = text.get(line_start..span.end)?;
        path.extend(Key::parse(key_text.trim()).ok()?);
        path
    };
    let first = Document::parse(before).ok()?;
    let offset = first_definition(first.as_table(), &path)?;
    // `offset` lies in `before`, a prefix of `text` ending at a line start.
    let (line_no, _) = super::load::line_col(text, offset);
    let dotted: Vec<String> = path.iter().map(|k| k.display_repr().to_string()).collect();
    Some(format!(
        "duplicate key \"{}\" (first defined on line {line_no})",
        dotted.join(".")
    ))
}

/// The keys of a `[a.b]` or `[[a.b]]` header line.
fn header_path(line: &str) -> Option<Vec<Key>> {
    let inner = line.trim_start_matches('[');
    // The closing bracket is the last one outside quotes; a comment may follow.
    let doc = Document::parse(format!("[{}", inner.split('#').next()?.trim())).ok()?;
    let mut path = Vec::new();
    let mut table = doc.as_table();
    loop {
        let mut children = table.iter().filter(|(_, item)| item.is_table());
        let (name, child) = children.next()?;
        path.push(Key::new(name));
        match child.as_table() {
            Some(t) if t.is_implicit() => table = t,
            _ => return Some(path),
        }
    }
}

/// The byte offset of the first definition of `path` in `table`.
fn first_definition(table: &toml_edit::Table, path: &[Key]) -> Option<usize> {
    let (last, parents) = path.split_last()?;
    let mut item_table = table;
    for key in parents {
        item_table = match item_table.get(key.get())? {
            Item::Table(t) => t,
            _ => return None,
        };
    }
    let (key, item) = item_table.get_key_value(last.get())?;
    key.span()
        .or_else(|| item.as_table().and_then(toml_edit::Table::span))
        .map(|s| s.start)
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use std::path::Path;

    fn message(text: &str) -> String {
        parse_str(Path::new("c.toml"), text)
            .expect_err("duplicate")
            .to_string()
    }

    #[test]
    fn duplicate_tables_and_keys_are_named_with_their_first_line() {
        let cases = [
            (
                "[servers.a]\ncommand = \"x\"\n\n[servers.a]\ncommand = \"y\"\n",
                "c.toml:4:10: duplicate key \"servers.a\" (first defined on line 1)",
            ),
            (
                "[daemon]\npage_size = 3\n[servers.a]\ncommand = \"x\"\ncommand = \"y\"\n",
                "c.toml:5:1: duplicate key \"servers.a.command\" (first defined on line 4)",
            ),
            (
                "[servers.a]\ncommand = \"x\"\n[servers.a.env]\nA = \"1\"\n\n[servers.a.env]\nB = \"2\"\n",
                "c.toml:6:12: duplicate key \"servers.a.env\" (first defined on line 3)",
            ),
            (
                "[servers]\na = { command = \"x\" }\n[servers.a]\ncommand = \"y\"\n",
                "c.toml:3:10: duplicate key \"servers.a\" (first defined on line 2)",
            ),
            (
                "[servers.\"my-x\"]  # first\ncommand = \"x\"\n[servers.my-x]\ncommand = \"y\"\n",
                "c.toml:3:10: duplicate key \"servers.my-x\" (first defined on line 1)",
            ),
            (
                "[servers.a]\ncommand = \"x\"\nenv.A = \"1\"\nenv.A = \"2\"\n",
                "c.toml:4:5: duplicate key \"servers.a.env.A\" (first defined on line 3)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(message(text), want, "{text}");
        }
    }

    #[test]
    fn what_cannot_be_located_keeps_the_parser_message() {
        let m = message("[servers.a]\ncommand = \"x\"\nenv = { A = \"1\", A = \"2\" }\n");
        assert!(m.contains("duplicate key"), "{m}");
    }
}
