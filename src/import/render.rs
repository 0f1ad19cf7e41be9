//! Imported servers → stdioproxy config TOML, with comments for people.
//!
//! Values, keys and table headers are written by `toml_edit` (so every
//! string, however odd, is escaped correctly and a name can never inject a
//! table); only the comments are ours. Each server becomes its own
//! `toml_edit::Table`, comments attached, so `import --write` can merge the
//! very same tables into an existing config.

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use super::entry::looks_secret;
use super::{Accepted, ImportedServer, SkippedServer, SourceFormat};
use crate::config::ServerName;

/// The `[servers.NAME]` table for one server, with its comments (why it was
/// renamed, its project, warnings, secret-looking env values).
pub(super) fn server_table(a: &Accepted) -> Table {
    let mut prefix = String::from("\n");
    if a.renamed() {
        let why = if ServerName::new(&a.original).is_ok() {
            "another server already has that name"
        } else {
            "names allow only A-Z a-z 0-9 _ -, no \"__\", at most 32 characters"
        };
        comment(
            &mut prefix,
            &format!("imported from {:?} ({why})", a.original),
        );
    }
    if let Some(project) = &a.project {
        comment(
            &mut prefix,
            &format!(
                "from Claude Code project {project:?}, where it ran in that directory; add cwd if it needs to"
            ),
        );
    }
    for note in &a.notes {
        comment(&mut prefix, &format!("note: {note}"));
    }

    let s = &a.server;
    let mut t = Table::new();
    t.decor_mut().set_prefix(prefix);
    t.insert("command", toml_edit::value(s.command.as_str()));
    if !s.args.is_empty() {
        let args: Array = s.args.iter().map(String::as_str).collect();
        t.insert("args", toml_edit::value(args));
    }
    if let Some(cwd) = &s.cwd {
        t.insert("cwd", toml_edit::value(cwd.as_str()));
    }
    if !s.enabled {
        let mut off = Value::from(false);
        off.decor_mut()
            .set_suffix("  # disabled in the client's config");
        t.insert("enabled", Item::Value(off));
    }
    if !s.env.is_empty() {
        let mut env = Table::new();
        env.decor_mut().set_prefix("\n");
        for (key, value) in &s.env {
            env.insert(key, toml_edit::value(value.as_str()));
            if looks_secret(key) && !value.is_empty() && !value.contains("${") {
                let mut note = String::new();
                comment(
                    &mut note,
                    &format!(
                        "{key} looks like a secret: consider {} = \"${{{key}}}\" with {key} set in the daemon's environment",
                        toml_edit::Key::new(key.as_str()).display_repr()
                    ),
                );
                if let Some(mut k) = env.key_mut(key) {
                    k.leaf_decor_mut().set_prefix(note);
                }
            }
        }
        t.insert("env", Item::Table(env));
    }
    t
}

/// A document holding `tables` under `[servers]`, in order.
pub(super) fn servers_document<'a>(
    tables: impl Iterator<Item = (&'a str, &'a Table)>,
) -> DocumentMut {
    let mut doc = DocumentMut::new();
    let mut servers = Table::new();
    servers.set_implicit(true);
    for (name, table) in tables {
        servers.insert(name, Item::Table(table.clone()));
    }
    doc.insert("servers", Item::Table(servers));
    crate::toml_doc::renumber(doc.as_table_mut(), &mut 0);
    doc
}

/// The whole output of a plain `stdioproxy import`: a header, the servers,
/// and what was not imported.
pub(super) fn render(
    format: SourceFormat,
    servers: &[ImportedServer],
    skipped: &[SkippedServer],
) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        &format!(
            "stdioproxy servers imported from {} by `stdioproxy import`.",
            format.describe()
        ),
    );
    out.push_str(
        "# Review before use: env values were copied verbatim (better: write \"${VAR}\" and\n\
         # set VAR in the daemon's environment), and servers run with the daemon's\n\
         # environment and PATH, not your login shell's.\n",
    );
    if servers.is_empty() {
        out.push_str("# No local (stdio) MCP servers were found.\n");
    } else {
        let doc = servers_document(servers.iter().map(|s| (s.name.as_str(), &s.table)));
        out.push_str(&doc.to_string());
    }
    out.push_str(&skipped_comments(skipped));
    out
}

/// `# Not imported:` and one line per skipped entry (empty when none).
pub(super) fn skipped_comments(skipped: &[SkippedServer]) -> String {
    let mut out = String::new();
    if skipped.is_empty() {
        return out;
    }
    out.push_str("\n# Not imported:\n");
    for s in skipped {
        let place = match &s.project {
            None => String::new(),
            Some(p) => format!(" (project {p:?})"),
        };
        comment(
            &mut out,
            &format!("- {:?}{place}: {}", s.original, s.reason),
        );
    }
    out
}

/// Appends `# text`, with control characters (newlines!) neutralised so the
/// comment cannot end early and inject TOML.
pub(super) fn comment(out: &mut String, text: &str) {
    out.push_str("# ");
    out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
    out.push('\n');
}
