//! Which entries a client gets: their names, and the shim's arguments.
//!
//! Format-independent: the client's current entries come in as JSON values
//! (Codex's TOML converted), and what to write goes out as [`Entry`]s that
//! the format modules render.

use serde_json::{Map, Value};

use super::{Client, ENTRY_NAME};

/// The length limit the model APIs put on a tool name.
const TOOL_NAME_LIMIT: usize = 64;

/// The range `stdioproxy-shim --name-max` accepts.
const NAME_MAX_RANGE: (usize, usize) = (8, 128);

/// What `setup-client` should give the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One `stdioproxy` entry with every server.
    Aggregate,
    /// One entry per server (the daemon's enabled servers, in config order).
    PerServer(Vec<String>),
}

/// One client entry: runs `command` with `args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name in the client.
    pub key: String,
    /// The shim's path.
    pub command: String,
    /// The shim's arguments.
    pub args: Vec<String>,
}

impl Entry {
    /// `{"command": ..., "args": [...]}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "command": self.command, "args": self.args })
    }
}

/// The longest tool name the shim may give a client that names tools
/// `mcp__<entry>__<tool>` within 64 characters: 64 − len(`mcp__<entry>__`),
/// kept within what the shim accepts.
pub fn name_max(entry: &str) -> usize {
    let used = "mcp__".len() + entry.chars().count() + "__".len();
    TOOL_NAME_LIMIT
        .saturating_sub(used)
        .clamp(NAME_MAX_RANGE.0, NAME_MAX_RANGE.1)
}

impl Layout {
    /// The entries to write, given the client's current top-level entries.
    pub fn entries(&self, client: Client, shim: &str, current: &Map<String, Value>) -> Vec<Entry> {
        let budget = |key: &str| -> Vec<String> {
            client
                .name_budget(key)
                .map(|n| vec!["--name-max".into(), n.to_string()])
                .unwrap_or_default()
        };
        match self {
            Layout::Aggregate => vec![Entry {
                key: ENTRY_NAME.into(),
                command: shim.into(),
                args: budget(ENTRY_NAME),
            }],
            Layout::PerServer(servers) => {
                let imported = imported_names(current);
                let mut taken: Vec<String> = Vec::new();
                servers
                    .iter()
                    .map(|server| {
                        let key = shim_key(current, server)
                            .or_else(|| {
                                imported
                                    .iter()
                                    .find(|(n, _)| n == server)
                                    .map(|(_, o)| o.clone())
                            })
                            .filter(|k| !taken.contains(k))
                            .unwrap_or_else(|| server.clone());
                        taken.push(key.clone());
                        let mut args = vec!["--server".to_string(), server.clone()];
                        args.extend(budget(&key));
                        Entry {
                            key,
                            command: shim.into(),
                            args,
                        }
                    })
                    .collect()
            }
        }
    }

    /// Entries to remove: going per-server, the aggregated shim entry (the
    /// client would otherwise see every tool twice).
    pub fn removals(&self, current: &Map<String, Value>) -> Vec<String> {
        match self {
            Layout::Aggregate => Vec::new(),
            Layout::PerServer(_) => current
                .get(ENTRY_NAME)
                .filter(|v| is_shim_entry(v) && server_arg(v).is_none())
                .map(|_| vec![ENTRY_NAME.to_string()])
                .unwrap_or_default(),
        }
    }
}

/// True when an entry runs stdioproxy's shim.
pub fn is_shim_entry(v: &Value) -> bool {
    v.get("command")
        .and_then(Value::as_str)
        .is_some_and(crate::import::is_stdioproxy)
}

/// The `--server NAME` of a shim entry.
fn server_arg(v: &Value) -> Option<&str> {
    let args = v.get("args")?.as_array()?;
    args.iter().enumerate().find_map(|(i, a)| {
        let a = a.as_str()?;
        if a == "--server" {
            args.get(i + 1)?.as_str()
        } else {
            a.strip_prefix("--server=")
        }
    })
}

/// The entry that already runs the shim for `server`.
fn shim_key(current: &Map<String, Value>, server: &str) -> Option<String> {
    current
        .iter()
        .find(|(_, v)| is_shim_entry(v) && server_arg(v) == Some(server))
        .map(|(k, _)| k.clone())
}

/// (stdioproxy name, client entry name) for each entry `stdioproxy import`
/// would take from these entries: the entry that ran a server directly is
/// the one to replace, under its own name.
fn imported_names(current: &Map<String, Value>) -> Vec<(String, String)> {
    let doc = serde_json::json!({ "mcpServers": current }).to_string();
    match crate::import::import_mcp_servers(&doc) {
        Ok(out) => out
            .imported
            .into_iter()
            .map(|s| (s.name, s.original))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Checks that `after` (the edited file, read back) holds every entry as
/// meant and none of the removed ones.
pub fn verify(
    after: &Map<String, Value>,
    entries: &[Entry],
    removed: &[String],
) -> Result<(), String> {
    for e in entries {
        let got = after.get(&e.key);
        let same = got.is_some_and(|v| {
            v.get("command") == Some(&Value::from(e.command.as_str()))
                && v.get("args") == Some(&Value::from(e.args.clone()))
        });
        if !same {
            return Err(format!(
                "internal error: the edited file does not hold the entry {:?} as meant; nothing was written",
                e.key
            ));
        }
    }
    if let Some(k) = removed.iter().find(|k| after.contains_key(*k)) {
        return Err(format!(
            "internal error: the edited file still holds {k:?}; nothing was written"
        ));
    }
    Ok(())
}
