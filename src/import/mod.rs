//! `stdioproxy import`: turns the `mcpServers` JSON of an existing MCP client
//! into stdioproxy config TOML.
//!
//! Accepted inputs:
//!
//! - Claude Desktop `claude_desktop_config.json`, Cursor `~/.cursor/mcp.json`
//!   and project `.mcp.json` files: `{"mcpServers": {NAME: {...}}, ...}`;
//! - Claude Code `~/.claude.json`: the user-scope `mcpServers` plus every
//!   `projects.<path>.mcpServers`;
//! - Gemini CLI `~/.gemini/settings.json`: `mcpServers` too;
//! - VS Code `mcp.json`: `{"servers": {NAME: {...}}}`;
//! - Codex `~/.codex/config.toml`: `[mcp_servers.NAME]` tables (TOML);
//! - a bare map `{NAME: {"command": ..., "args": [...]}}`.
//!
//! Each local (stdio) server becomes one `[servers.NAME]` table with its
//! `command`, `args`, `env`, `cwd`, and `enabled = false` when it was
//! `"disabled": true`. Remote servers (`url`, or a `type` of `http`, `sse`,
//! `streamable-http`...) are not something the daemon can run; they are
//! reported in [`ImportOutcome::skipped`] and as comments, and the client can
//! keep connecting to them directly.
//!
//! Client names that are not valid stdioproxy names are rewritten
//! (`names`); the original is kept in a comment.
//!
//! Env values are copied verbatim, secrets included, because a working config
//! is the point of an import; [`ImportOutcome::secret_env`] lists the keys
//! that look like secrets so the CLI can suggest `${VAR}` references instead.
//! The TOML is written by `toml_edit` with comments attached (`render`).
//! `stdioproxy import FILE --write` merges it into the config file itself,
//! keeping the comments already there ([`write`](mod@write)).
//!
//! The work is split by responsibility: `source` recognises the input's
//! shape, `entry` turns one entry into a server, `names` assigns names,
//! `render` writes TOML and [`write`](mod@write) merges into an existing config.

mod entry;
mod names;
mod render;
mod source;
#[cfg(test)]
mod tests;
pub mod write;

pub(crate) use entry::is_stdioproxy;
pub use source::SourceFormat;

use serde_json::Value;

use entry::Server;

/// What an import produced.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// The stdioproxy config text (TOML with comments).
    pub toml: String,
    /// The shape the input was recognised as.
    pub format: SourceFormat,
    /// The servers written to `toml`, in output order.
    pub imported: Vec<ImportedServer>,
    /// Entries that were not imported, with the reason.
    pub skipped: Vec<SkippedServer>,
    /// Env keys whose names look like secrets and whose values are literal
    /// (not already `${VAR}` references).
    pub secret_env: Vec<SecretEnv>,
    /// Things a person should check: ignored fields, unsupported `${...}`
    /// syntax, commands with spaces. Each names the server.
    pub warnings: Vec<String>,
}

/// One server written to the TOML.
#[derive(Debug, Clone)]
pub struct ImportedServer {
    /// The stdioproxy name (the `[servers.NAME]` key).
    pub name: String,
    /// The name in the client's config.
    pub original: String,
    /// For Claude Code project-scope servers: the project path.
    pub project: Option<String>,
    /// False when the source marked it disabled.
    pub enabled: bool,
    /// Its `[servers.NAME]` table, with comments.
    pub table: toml_edit::Table,
}

impl ImportedServer {
    /// True when the name had to change.
    pub fn renamed(&self) -> bool {
        self.name != self.original
    }
}

/// An entry that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedServer {
    /// The name in the client's config.
    pub original: String,
    /// For Claude Code project-scope servers: the project path.
    pub project: Option<String>,
    /// Why, for a person.
    pub reason: String,
}

/// An env entry that looks like a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    /// The stdioproxy server name.
    pub server: String,
    /// The env key, e.g. `GITHUB_TOKEN`.
    pub key: String,
}

/// The input could not be imported at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Not JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON, but not a shape that holds MCP servers.
    #[error("{0}")]
    Unrecognized(String),
}

/// Converts a client config (see the module docs for the accepted shapes)
/// into stdioproxy config TOML.
pub fn import_mcp_servers(json: &str) -> Result<ImportOutcome, ImportError> {
    let (root, codex) = match serde_json::from_str::<Value>(json) {
        Ok(root) => (root, false),
        Err(e) => match source::codex_servers(json) {
            Some(root) => (root, true),
            None => {
                return Err(ImportError::Json {
                    line: e.line(),
                    column: e.column(),
                    message: strip_position(&e.to_string()),
                })
            }
        },
    };
    let Value::Object(root) = root else {
        return Err(source::unrecognized("the top level is not a JSON object"));
    };
    let (mut format, candidates) = source::collect_candidates(&root)?;
    if codex {
        format = SourceFormat::Codex;
    }

    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    let mut accepted: Vec<Accepted> = Vec::new();
    for c in candidates {
        match entry::parse_entry(c.value) {
            Ok(parsed) => {
                if let Some(same) = accepted
                    .iter()
                    .find(|a| a.original == c.original && a.server == parsed.server)
                {
                    skipped.push(SkippedServer {
                        original: c.original.to_string(),
                        project: c.project.map(str::to_string),
                        reason: format!("same command, args and env as {}", same.describe()),
                    });
                    continue;
                }
                accepted.push(Accepted {
                    name: String::new(),
                    original: c.original.to_string(),
                    project: c.project.map(str::to_string),
                    server: parsed.server,
                    notes: parsed.notes,
                });
            }
            Err(reason) => skipped.push(SkippedServer {
                original: c.original.to_string(),
                project: c.project.map(str::to_string),
                reason,
            }),
        }
    }

    let names = names::assign_names(accepted.iter().map(|a| a.original.as_str()));
    for (a, name) in accepted.iter_mut().zip(names) {
        a.name = name;
    }

    let mut secret_env = Vec::new();
    for a in &accepted {
        for note in &a.notes {
            warnings.push(format!("server {}: {note}", a.name));
        }
        for (key, value) in &a.server.env {
            if entry::looks_secret(key) && !value.is_empty() && !value.contains("${") {
                secret_env.push(SecretEnv {
                    server: a.name.clone(),
                    key: key.clone(),
                });
            }
        }
    }

    let imported: Vec<ImportedServer> = accepted
        .iter()
        .map(|a| ImportedServer {
            name: a.name.clone(),
            original: a.original.clone(),
            project: a.project.clone(),
            enabled: a.server.enabled,
            table: render::server_table(a),
        })
        .collect();
    let toml = render::render(format, &imported, &skipped);
    Ok(ImportOutcome {
        toml,
        format,
        imported,
        skipped,
        secret_env,
        warnings,
    })
}

/// serde_json's message ends with " at line L column C", which the error
/// variant already carries.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// An entry that will be imported.
struct Accepted {
    name: String,
    original: String,
    project: Option<String>,
    server: Server,
    notes: Vec<String>,
}

impl Accepted {
    fn renamed(&self) -> bool {
        self.name != self.original
    }

    fn describe(&self) -> String {
        match &self.project {
            None => format!("{:?}", self.original),
            Some(p) => format!("{:?} of project {p:?}", self.original),
        }
    }
}
