//! Adding and replacing `[KEY.NAME]` tables in a user's TOML file, with
//! `toml_edit`, so everything else in the file stays byte for byte.
//!
//! Shared by `import --write` (`[servers.NAME]` in the daemon's config) and
//! `setup-client codex` (`[mcp_servers.NAME]` in Codex's). toml_edit writes
//! tables in the order of their document positions: a table we add gets a
//! position after every existing one (and its sub-tables right after it),
//! and a table we replace takes over the old one's position and the comment
//! above it.

use toml_edit::{DocumentMut, Item, Table};

/// The table of tables at `key` (created, implicit, when missing), or
/// `None` when `key` holds something else.
pub fn table_of_tables<'a>(doc: &'a mut DocumentMut, key: &str) -> Option<&'a mut Table> {
    doc.entry(key)
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
}

/// The position after every table of `doc`.
pub fn next_position(doc: &DocumentMut) -> isize {
    max_position(doc.as_table()) + 1
}

fn max_position(table: &Table) -> isize {
    let mut max = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        if let Item::Table(t) = item {
            max = max.max(max_position(t));
        }
    }
    max
}

/// Inserts `table` as `parent[name]` at position `*next` (its sub-tables
/// right after), advancing `*next`.
pub fn append(parent: &mut Table, name: &str, mut table: Table, next: &mut isize) {
    table.set_position(Some(*next));
    *next += 1;
    renumber(&mut table, next);
    parent.insert(name, Item::Table(table));
}

/// Replaces `old` with `new`, keeping the old table's place in the file and
/// the comment above it.
pub fn replace_in_place(old: &mut Item, mut new: Table) {
    if let Some(t) = old.as_table() {
        let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("\n");
        new.decor_mut().set_prefix(prefix.to_string());
        if let Some(mut at) = t.position() {
            new.set_position(Some(at));
            // Sub-tables sort right after their parent.
            renumber(&mut new, &mut at);
        }
    }
    *old = Item::Table(new);
}

/// Gives every sub-table of `table` a position from `*next` on, in order,
/// each one's own sub-tables right after it.
pub fn renumber(table: &mut Table, next: &mut isize) {
    for (_, item) in table.iter_mut() {
        if let Item::Table(t) = item {
            t.set_position(Some(*next));
            *next += 1;
            renumber(t, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(key: &str, value: &str) -> Table {
        let mut t = Table::new();
        t.insert(key, toml_edit::value(value));
        t
    }

    #[test]
    fn appends_after_everything_and_replaces_in_place() {
        let text = "# top\na = 1\n\n[x.one]\nk = \"1\"\n\n# about two\n[x.two]\nk = \"2\"\n\n[other]\nz = 0\n";
        let mut doc: DocumentMut = text.parse().expect("toml");
        let mut next = next_position(&doc);
        let x = table_of_tables(&mut doc, "x").expect("table");
        let mut three = table("k", "3");
        three.insert("sub", Item::Table(table("s", "x")));
        append(x, "three", three, &mut next);
        replace_in_place(x.get_mut("two").expect("two"), table("k", "new"));
        assert_eq!(
            doc.to_string(),
            "# top\na = 1\n\n[x.one]\nk = \"1\"\n\n# about two\n[x.two]\nk = \"new\"\n\n[other]\nz = 0\n\n[x.three]\nk = \"3\"\n\n[x.three.sub]\ns = \"x\"\n"
        );
        let mut doc: DocumentMut = "x = 3\n".parse().expect("toml");
        assert!(table_of_tables(&mut doc, "x").is_none());
    }
}
