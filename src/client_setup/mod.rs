//! `stdioproxy setup-client <client>`: pointing an MCP client at
//! `stdioproxy-shim`.
//!
//! Two layouts:
//!
//! - one `stdioproxy` entry that shows every server, tools named
//!   `<server>__<tool>` (the default);
//! - `--per-server`: one entry per enabled server of the daemon's config,
//!   each running `stdioproxy-shim --server NAME`, so the client sees each
//!   server under its own entry with its own tool names, exactly as before a
//!   migration. An entry that ran that server directly (what
//!   `stdioproxy import` read) is replaced under its original name, so tool
//!   names such as `mcp__github__create_issue` and permission rules keep
//!   working.
//!
//! Claude Code and Codex name a tool `mcp__<entry>__<tool>` and the model
//! APIs refuse names over 64 characters, so for them each entry's shim gets
//! `--name-max N` with N = 64 − len(`mcp__<entry>__`) ([`name_max`]);
//! Gemini CLI rewrites names over 63 characters, so its entries get
//! `--name-max 63`.
//!
//! Every client keeps its entries in a file: an `mcpServers` JSON object
//! (Claude Desktop, Claude Code, Cursor, Gemini CLI; `json`) or Codex's
//! `[mcp_servers.NAME]` TOML tables (`codex`). We can print what to paste
//! ([`snippet`]) or edit the file ourselves ([`merge`]), carefully:
//!
//! - only our entries change; every other byte of the file stays as it was
//!   (spliced into the original text: `json`, `codex`);
//! - the result is re-parsed and checked to hold exactly the intended
//!   entries before anything is written;
//! - the original is copied to `<file>.bak.<unix-seconds>` first, and the
//!   file is replaced atomically with its permission bits kept (a new file
//!   is 0600: these files can hold tokens; [`crate::atomic_file`]);
//! - a symlinked config (dotfiles) is written through: the link stays;
//! - nothing is written when the entries are already there as wanted.
//!
//! Other entries are reported, so the CLI can suggest `stdioproxy import`.

mod codex;
mod json;
mod layout;
mod splice;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};

pub use layout::{name_max, Entry, Layout};

use crate::atomic_file;

/// The key of the aggregated entry.
pub const ENTRY_NAME: &str = "stdioproxy";

/// Longest tool name Gemini CLI leaves as it is.
const GEMINI_NAME_MAX: usize = 63;

/// An MCP client whose config we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// Claude Desktop (`claude_desktop_config.json`).
    ClaudeDesktop,
    /// Claude Code (`~/.claude.json`, user scope).
    ClaudeCode,
    /// Cursor (`~/.cursor/mcp.json`, global).
    Cursor,
    /// OpenAI Codex CLI (`~/.codex/config.toml`).
    Codex,
    /// Gemini CLI (`~/.gemini/settings.json`, user scope).
    Gemini,
}

impl Client {
    /// Every client, in the order shown to people.
    pub const ALL: [Client; 5] = [
        Client::ClaudeDesktop,
        Client::ClaudeCode,
        Client::Cursor,
        Client::Codex,
        Client::Gemini,
    ];

    /// The command-line name.
    pub fn cli_name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
            Client::Codex => "codex",
            Client::Gemini => "gemini",
        }
    }

    /// The product name.
    pub fn display_name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "Claude Desktop",
            Client::ClaudeCode => "Claude Code",
            Client::Cursor => "Cursor",
            Client::Codex => "Codex",
            Client::Gemini => "Gemini CLI",
        }
    }

    /// The `--name-max` for an entry named `entry`, when the client has a
    /// name budget: Claude Code and Codex name a tool `mcp__<entry>__<tool>`
    /// within 64 characters ([`name_max`]); Gemini CLI rewrites any tool
    /// name over 63 characters.
    pub fn name_budget(self, entry: &str) -> Option<usize> {
        match self {
            Client::ClaudeCode | Client::Codex => Some(name_max(entry)),
            Client::Gemini => Some(GEMINI_NAME_MAX),
            Client::ClaudeDesktop | Client::Cursor => None,
        }
    }

    fn is_toml(self) -> bool {
        self == Client::Codex
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// An unknown client name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown client {0:?}; expected one of: claude-desktop, claude-code, cursor, codex, gemini"
)]
pub struct UnknownClient(pub String);

impl FromStr for Client {
    type Err = UnknownClient;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Client::ALL
            .into_iter()
            .find(|c| c.cli_name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownClient(s.to_string()))
    }
}

/// Where `client` keeps its MCP servers on Linux, under `home`.
pub fn config_path(client: Client, home: &Path) -> PathBuf {
    match client {
        Client::ClaudeDesktop => home.join(".config/Claude/claude_desktop_config.json"),
        Client::ClaudeCode => home.join(".claude.json"),
        Client::Cursor => home.join(".cursor/mcp.json"),
        Client::Codex => home.join(".codex/config.toml"),
        Client::Gemini => home.join(".gemini/settings.json"),
    }
}

/// The client that keeps its servers at `file` under `home`, if any (so a
/// hint after `import FILE` can name the right `setup-client`).
pub fn client_of(file: &Path, home: &Path) -> Option<Client> {
    let file = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    Client::ALL.into_iter().find(|c| {
        let p = config_path(*c, home);
        fs::canonicalize(&p).unwrap_or(p) == file
    })
}

/// What to paste into the client's config for `layout`, given the file's
/// current text (for per-server entry names; `None` when there is none).
/// For Claude Code, also the `claude mcp add` commands that do it.
pub fn snippet(
    client: Client,
    shim: &Path,
    layout: &Layout,
    current: Option<&str>,
) -> Result<String, String> {
    let servers = match current {
        Some(text) => current_servers(client, text)?,
        None => Map::new(),
    };
    let entries = layout.entries(client, &shim.to_string_lossy(), &servers);
    if client.is_toml() {
        return Ok(codex::snippet(&entries));
    }
    let json = json::snippet(&entries);
    Ok(match client {
        Client::ClaudeCode => {
            let mut out = String::new();
            for e in &entries {
                out.push_str(&format!(
                    "claude mcp add --scope user {} -- {}\n",
                    sh_quote(&e.key),
                    std::iter::once(&e.command)
                        .chain(&e.args)
                        .map(|a| sh_quote(a))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            format!("{out}\nor merge this into ~/.claude.json:\n{json}")
        }
        _ => json,
    })
}

/// What [`merge`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeOutcome {
    /// The file written (the symlink target when the path was a symlink).
    pub path: PathBuf,
    /// The copy of the previous content, when there was a file and it changed.
    pub backup: Option<PathBuf>,
    /// The file did not exist before.
    pub created: bool,
    /// False when every entry was already as wanted.
    pub changed: bool,
    /// Entries added.
    pub added: Vec<String>,
    /// Entries that existed with other content and were replaced.
    pub replaced: Vec<String>,
    /// Entries removed (the aggregated entry, when going per-server).
    pub removed: Vec<String>,
    /// Other entries of the client's top-level servers (not ours).
    pub other_servers: Vec<String>,
    /// Claude Code project-scope entries: (project path, name).
    pub project_servers: Vec<(String, String)>,
}

impl MergeOutcome {
    /// True when the client still starts other MCP servers itself (which
    /// `stdioproxy import` could move into the daemon's config).
    pub fn has_other_servers(&self) -> bool {
        !self.other_servers.is_empty() || !self.project_servers.is_empty()
    }
}

/// Why [`merge`] did not write.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Reading or writing failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The existing file cannot be parsed or does not have the expected
    /// shape; nothing was written.
    #[error("{}: {message}; fix it or move it away, then retry", path.display())]
    Invalid { path: PathBuf, message: String },
    /// The shim path cannot be written into the file.
    #[error("the shim path {} is not valid UTF-8", .0.display())]
    NonUtf8Shim(PathBuf),
}

/// The result of editing a file's text.
#[derive(Debug, Default)]
struct Edited {
    text: String,
    added: Vec<String>,
    replaced: Vec<String>,
    removed: Vec<String>,
}

/// Writes the entries of `layout` into `file` (the config of `client`),
/// keeping everything else. A missing file counts as empty.
pub fn merge(
    client: Client,
    file: &Path,
    shim: &Path,
    layout: &Layout,
) -> Result<MergeOutcome, MergeError> {
    let shim_str = shim
        .to_str()
        .ok_or_else(|| MergeError::NonUtf8Shim(shim.to_path_buf()))?;
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io {
            action,
            path,
            source,
        }
    };
    let target = atomic_file::resolve_symlink(file).map_err(io_err("resolve", file))?;
    let original = match fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &target)(e)),
    };
    let invalid = |message: String| MergeError::Invalid {
        path: target.clone(),
        message,
    };
    let text = match &original {
        Some(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| invalid(format!("not UTF-8 text ({e})")))?
            .to_string(),
        None => String::new(),
    };

    let servers = current_servers(client, &text).map_err(invalid)?;
    let entries = layout.entries(client, shim_str, &servers);
    let remove = layout.removals(&servers);
    let edited = if client.is_toml() {
        codex::apply(&text, &entries, &remove)
    } else {
        json::apply(&text, &entries, &remove)
    }
    .map_err(invalid)?;
    // The edit must have done exactly what was meant, read back the way
    // the client will read it.
    let after = current_servers(client, &edited.text).map_err(invalid)?;
    layout::verify(&after, &entries, &remove).map_err(invalid)?;

    let ours: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let mut outcome = MergeOutcome {
        path: target.clone(),
        created: original.is_none(),
        changed: edited.text != text,
        other_servers: servers
            .iter()
            .filter(|(k, v)| {
                !ours.contains(&k.as_str()) && !remove.contains(*k) && !layout::is_shim_entry(v)
            })
            .map(|(k, _)| k.clone())
            .collect(),
        project_servers: if client.is_toml() {
            Vec::new()
        } else {
            json::project_servers(&text)
        },
        added: edited.added,
        replaced: edited.replaced,
        removed: edited.removed,
        backup: None,
    };
    if !outcome.changed {
        return Ok(outcome);
    }
    let mode = atomic_file::existing_mode(&target)
        .map_err(io_err("inspect", &target))?
        .unwrap_or(0o600);
    if let Some(bytes) = &original {
        outcome.backup =
            Some(atomic_file::backup(file, bytes, mode).map_err(io_err("back up", file))?);
    } else if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        atomic_file::create_private_dir(dir).map_err(io_err("create", dir))?;
    }
    atomic_file::write(&target, edited.text.as_bytes(), mode).map_err(io_err("write", &target))?;
    Ok(outcome)
}

/// The client's top-level server entries as JSON values (Codex's TOML
/// tables converted), in the file's order.
fn current_servers(client: Client, text: &str) -> Result<Map<String, Value>, String> {
    if client.is_toml() {
        codex::servers(text)
    } else {
        json::servers(text)
    }
}

/// Quotes a word for a POSIX shell command line.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
