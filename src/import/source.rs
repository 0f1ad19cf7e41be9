//! Recognising the shape of a client config and finding its server entries.
//!
//! Claude Desktop, Cursor and `.mcp.json` keep `mcpServers`; Claude Code's
//! `~/.claude.json` adds `projects.<path>.mcpServers`; VS Code uses
//! `servers`; Codex keeps TOML `[mcp_servers.NAME]` tables; and a bare
//! `{NAME: {...}}` map is accepted too.

use serde_json::{Map, Value};

use super::ImportError;

/// The recognised input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// `{"mcpServers": {...}}`: Claude Desktop, Cursor, `.mcp.json`.
    McpServers,
    /// Claude Code `~/.claude.json`: `mcpServers` and `projects.*.mcpServers`.
    ClaudeCode,
    /// VS Code `{"servers": {...}}`.
    VsCode,
    /// `{NAME: {command, ...}}`.
    BareMap,
    /// Codex `config.toml`: `[mcp_servers.NAME]`.
    Codex,
}

impl SourceFormat {
    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            SourceFormat::McpServers => {
                "an mcpServers config (Claude Desktop, Cursor, Gemini CLI, .mcp.json)"
            }
            SourceFormat::ClaudeCode => "a Claude Code ~/.claude.json",
            SourceFormat::VsCode => "a VS Code mcp.json",
            SourceFormat::BareMap => "a map of MCP servers",
            SourceFormat::Codex => "a Codex config.toml",
        }
    }
}

pub(super) fn unrecognized(what: &str) -> ImportError {
    ImportError::Unrecognized(format!(
        "{what}; expected a client config with \"mcpServers\" (Claude Desktop, Claude Code, Cursor), \
         a VS Code config with \"servers\", or a map of server name to {{\"command\", \"args\", \"env\"}}"
    ))
}

/// `{"mcpServers": ...}` from a Codex `config.toml` (TOML holding an
/// `mcp_servers` table), or `None` when `text` is not that.
pub(super) fn codex_servers(text: &str) -> Option<Value> {
    let doc: Value = toml::from_str(text).ok()?;
    let servers = doc.get("mcp_servers")?.as_object()?;
    Some(serde_json::json!({ "mcpServers": servers }))
}

/// One `NAME: {...}` entry found in the input.
pub(super) struct Candidate<'a> {
    pub original: &'a str,
    pub project: Option<&'a str>,
    pub value: &'a Value,
}

fn push_map<'a>(
    out: &mut Vec<Candidate<'a>>,
    map: &'a Map<String, Value>,
    project: Option<&'a str>,
) {
    for (name, value) in map {
        out.push(Candidate {
            original: name,
            project,
            value,
        });
    }
}

/// `null` or an object; anything else under a servers key is an error.
fn servers_of(v: &Value, key: &str) -> Result<(), ImportError> {
    match v {
        Value::Null | Value::Object(_) => Ok(()),
        _ => Err(unrecognized(&format!("\"{key}\" is not an object"))),
    }
}

pub(super) fn collect_candidates(
    root: &Map<String, Value>,
) -> Result<(SourceFormat, Vec<Candidate<'_>>), ImportError> {
    // serde_json is built with `preserve_order`, so every map iterates in
    // the file's order: imported servers and their `-2` suffixes follow the
    // file, and the same file always gives the same output.
    let mut out = Vec::new();
    let has_mcp = root.contains_key("mcpServers");
    let projects = root.get("projects").and_then(Value::as_object);
    if has_mcp || projects.is_some() {
        let format = if projects.is_some() {
            SourceFormat::ClaudeCode
        } else {
            SourceFormat::McpServers
        };
        if let Some(v) = root.get("mcpServers") {
            servers_of(v, "mcpServers")?;
            if let Some(map) = v.as_object() {
                push_map(&mut out, map, None);
            }
        }
        for (path, project) in projects.into_iter().flatten() {
            if let Some(map) = project.get("mcpServers").and_then(Value::as_object) {
                push_map(&mut out, map, Some(path.as_str()));
            }
        }
        return Ok((format, out));
    }

    if let Some(v) = root.get("servers") {
        if v.as_object().is_some_and(|m| !is_server_entry(m)) {
            servers_of(v, "servers")?;
            if let Some(map) = v.as_object() {
                push_map(&mut out, map, None);
            }
            return Ok((SourceFormat::VsCode, out));
        }
    }

    if let Some((key, _)) = root.iter().find(|(_, v)| !v.is_object()) {
        return Err(unrecognized(&format!(
            "no \"mcpServers\" found, and {key:?} is not a server entry"
        )));
    }
    push_map(&mut out, root, None);
    Ok((SourceFormat::BareMap, out))
}

/// True when `map` looks like one server entry rather than a map of them.
fn is_server_entry(map: &Map<String, Value>) -> bool {
    ["command", "url", "type"]
        .iter()
        .any(|k| map.get(*k).is_some_and(Value::is_string))
}
