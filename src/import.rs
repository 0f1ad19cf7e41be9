//! `stdioproxy import`: turns the `mcpServers` JSON of an existing MCP client
//! into stdioproxy config TOML.
//!
//! Accepted inputs:
//!
//! - Claude Desktop `claude_desktop_config.json`, Cursor `~/.cursor/mcp.json`
//!   and project `.mcp.json` files: `{"mcpServers": {NAME: {...}}, ...}`;
//! - Claude Code `~/.claude.json`: the user-scope `mcpServers` plus every
//!   `projects.<path>.mcpServers`;
//! - VS Code `mcp.json`: `{"servers": {NAME: {...}}}`;
//! - a bare map `{NAME: {"command": ..., "args": [...]}}`.
//!
//! Each local (stdio) server becomes one `[servers.NAME]` table with its
//! `command`, `args`, `env`, `cwd`, and `enabled = false` when it was
//! `"disabled": true`. Remote servers (`url`, or a `type` of `http`, `sse`,
//! `streamable-http`...) are not something the daemon can run; they are
//! reported in [`ImportOutcome::skipped`] and as comments, and the client can
//! keep connecting to them directly.
//!
//! Client server names are free-form ("Brave Search", "my.server"), while
//! stdioproxy names are the tool prefix clients see and must match
//! `[A-Za-z0-9_-]+` without `__`, at most 32 characters. Invalid names are
//! rewritten (other characters become `-`, runs of `_` or `-` collapse, the
//! result is truncated) and made unique with `-2`, `-3`... Names that are
//! already valid are kept first, so renaming never steals a valid name. The
//! original name is kept in a comment.
//!
//! Env values are copied verbatim, secrets included, because a working config
//! is the point of an import; [`ImportOutcome::secret_env`] lists the keys
//! that look like secrets so the CLI can suggest `${VAR}` references instead.
//! The output is built by hand (not with a TOML serializer) so it can carry
//! comments, and is checked to parse with [`crate::config::parse_str`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::config::ServerName;

/// What an import produced.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl SourceFormat {
    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            SourceFormat::McpServers => "an mcpServers config (Claude Desktop, Cursor, .mcp.json)",
            SourceFormat::ClaudeCode => "a Claude Code ~/.claude.json",
            SourceFormat::VsCode => "a VS Code mcp.json",
            SourceFormat::BareMap => "a map of MCP servers",
        }
    }
}

/// One server written to the TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedServer {
    /// The stdioproxy name (the `[servers.NAME]` key).
    pub name: String,
    /// The name in the client's config.
    pub original: String,
    /// For Claude Code project-scope servers: the project path.
    pub project: Option<String>,
    /// False when the source marked it disabled.
    pub enabled: bool,
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
    let root: Value = serde_json::from_str(json).map_err(|e| ImportError::Json {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let Value::Object(root) = root else {
        return Err(unrecognized("the top level is not a JSON object"));
    };
    let (format, candidates) = collect_candidates(&root)?;

    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    let mut accepted: Vec<Accepted> = Vec::new();
    for c in candidates {
        match parse_entry(c.value) {
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

    let names = assign_names(accepted.iter().map(|a| a.original.as_str()));
    for (a, name) in accepted.iter_mut().zip(names) {
        a.name = name;
    }

    let mut secret_env = Vec::new();
    for a in &accepted {
        for note in &a.notes {
            warnings.push(format!("server {}: {note}", a.name));
        }
        for (key, value) in &a.server.env {
            if looks_secret(key) && !value.is_empty() && !value.contains("${") {
                secret_env.push(SecretEnv {
                    server: a.name.clone(),
                    key: key.clone(),
                });
            }
        }
    }

    let toml = render(format, &accepted, &skipped);
    let imported = accepted
        .iter()
        .map(|a| ImportedServer {
            name: a.name.clone(),
            original: a.original.clone(),
            project: a.project.clone(),
            enabled: a.server.enabled,
        })
        .collect();
    Ok(ImportOutcome {
        toml,
        format,
        imported,
        skipped,
        secret_env,
        warnings,
    })
}

fn unrecognized(what: &str) -> ImportError {
    ImportError::Unrecognized(format!(
        "{what}; expected a client config with \"mcpServers\" (Claude Desktop, Claude Code, Cursor), \
         a VS Code config with \"servers\", or a map of server name to {{\"command\", \"args\", \"env\"}}"
    ))
}

/// serde_json's message ends with " at line L column C", which the error
/// variant already carries.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// One `NAME: {...}` entry found in the input.
struct Candidate<'a> {
    original: &'a str,
    project: Option<&'a str>,
    value: &'a Value,
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

fn collect_candidates(
    root: &Map<String, Value>,
) -> Result<(SourceFormat, Vec<Candidate<'_>>), ImportError> {
    // `Map` without serde_json's preserve_order is sorted by key, so the
    // order below (and the de-duplication suffixes) is deterministic.
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

/// A local server as stdioproxy will run it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    enabled: bool,
}

struct Parsed {
    server: Server,
    /// Per-server warnings, also written as comments.
    notes: Vec<String>,
}

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

/// Fields that carry no meaning for stdioproxy and need no warning.
const SILENTLY_IGNORED: &[&str] = &[
    "autoApprove",
    "alwaysAllow",
    "description",
    "name",
    "transportType",
];

/// Parses one entry; `Err` is the reason it is skipped.
fn parse_entry(value: &Value) -> Result<Parsed, String> {
    let Value::Object(entry) = value else {
        return Err("not a JSON object".into());
    };
    let mut notes = Vec::new();

    let kind = match entry.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(other) => return Err(format!("\"type\" is not a string: {other}")),
    };
    let url = ["url", "serverUrl", "httpUrl"]
        .iter()
        .find_map(|k| entry.get(*k).and_then(Value::as_str));
    let remote_kind = kind.filter(|t| {
        matches!(
            t.to_ascii_lowercase().replace('_', "-").as_str(),
            "http" | "sse" | "streamable-http" | "streamablehttp" | "ws" | "websocket"
        )
    });
    let command = entry.get("command");
    if remote_kind.is_some() || (url.is_some() && command.is_none()) {
        let mut reason = String::from("remote server");
        match (remote_kind, url) {
            (Some(k), Some(u)) => write!(reason, " ({k}, {})", url_origin(u)),
            (Some(k), None) => write!(reason, " ({k})"),
            (None, Some(u)) => write!(reason, " ({})", url_origin(u)),
            (None, None) => Ok(()),
        }
        .ok();
        reason.push_str(
            ": stdioproxy only runs local stdio servers; keep it in the client's own config",
        );
        return Err(reason);
    }
    if let Some(k) = kind.filter(|k| !k.eq_ignore_ascii_case("stdio")) {
        return Err(format!("unsupported server type {k:?}"));
    }

    let command = match command {
        Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
        Some(Value::String(_)) => return Err("\"command\" is empty".into()),
        Some(other) => return Err(format!("\"command\" is not a string: {other}")),
        None => return Err("no \"command\" (and no \"url\")".into()),
    };
    if is_stdioproxy(&command) {
        return Err(
            "this entry runs stdioproxy itself (the shim); importing it would make the daemon start a client of itself".into(),
        );
    }
    if url.is_some() {
        notes.push("has both \"command\" and \"url\"; imported the command".into());
    }

    let args = match entry.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut args = Vec::with_capacity(items.len());
            for item in items {
                match scalar_string(item) {
                    Some(s) => args.push(s),
                    None => return Err(format!("\"args\" holds a non-string item: {item}")),
                }
            }
            args
        }
        Some(other) => return Err(format!("\"args\" is not a list: {other}")),
    };
    if args.is_empty() && command.trim().contains(char::is_whitespace) {
        notes.push(format!(
            "command {command:?} contains spaces but stdioproxy runs it as one program name; \
             split it into command and args"
        ));
    }
    if std::iter::once(&command)
        .chain(&args)
        .any(|a| a.contains("${"))
    {
        notes.push(
            "command or args contain ${...}, which stdioproxy does not expand (only env values are expanded)"
                .into(),
        );
    }

    let mut env = BTreeMap::new();
    match entry.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (key, value) in vars {
                match scalar_string(value) {
                    Some(v) => {
                        if let Err(e) = crate::config::expand_vars(&v, |_| Some(String::new())) {
                            notes.push(format!(
                                "env {key}: {e}; stdioproxy only expands ${{NAME}} (write $${{ for a literal ${{)"
                            ));
                        }
                        env.insert(key.clone(), v);
                    }
                    None => notes.push(format!("env {key} is not a string; left out")),
                }
            }
        }
        Some(other) => return Err(format!("\"env\" is not an object: {other}")),
    }

    let cwd = match entry.get("cwd") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if c.is_empty() => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(other) => return Err(format!("\"cwd\" is not a string: {other}")),
    };

    let disabled = entry.get("disabled").and_then(Value::as_bool) == Some(true)
        || entry.get("enabled").and_then(Value::as_bool) == Some(false);

    if entry.contains_key("envFile") {
        notes.push(
            "\"envFile\" is not supported; its variables were not imported (add them to env)"
                .into(),
        );
    }
    let known = [
        "type",
        "command",
        "args",
        "env",
        "cwd",
        "disabled",
        "enabled",
        "envFile",
        "url",
        "serverUrl",
        "httpUrl",
    ];
    let ignored: Vec<&str> = entry
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k) && !SILENTLY_IGNORED.contains(k))
        .collect();
    if !ignored.is_empty() {
        notes.push(format!("ignored field(s): {}", ignored.join(", ")));
    }

    Ok(Parsed {
        server: Server {
            command,
            args,
            env,
            cwd,
            enabled: !disabled,
        },
        notes,
    })
}

/// Strings as they are; numbers and booleans as written in JSON.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `scheme://host[:port]` of a URL, without user info, path or query (which
/// can hold tokens).
fn url_origin(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    }
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| k.contains(w))
}

/// Longest server name.
const MAX_NAME: usize = 32;

/// True when `command` is stdioproxy's own shim (or daemon binary).
fn is_stdioproxy(command: &str) -> bool {
    let file = command.trim().rsplit('/').next().unwrap_or_default();
    matches!(file, "stdioproxy-shim" | "stdioproxy")
}

/// Gives each original name a unique valid stdioproxy name. Valid originals
/// keep their name (first come, first served); the rest are sanitized and
/// numbered, in input order.
fn assign_names<'a>(originals: impl Iterator<Item = &'a str>) -> Vec<String> {
    let originals: Vec<&str> = originals.collect();
    let mut taken: BTreeSet<String> = crate::config::RESERVED_SERVER_NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut names: Vec<Option<String>> = originals
        .iter()
        .map(|o| (ServerName::new(o).is_ok() && taken.insert(o.to_string())).then(|| o.to_string()))
        .collect();
    for (slot, original) in names.iter_mut().zip(&originals) {
        if slot.is_some() {
            continue;
        }
        let base = sanitize_name(original);
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = with_suffix(&base, n);
            n += 1;
        }
        taken.insert(candidate.clone());
        *slot = Some(candidate);
    }
    names.into_iter().flatten().collect()
}

/// Makes a valid name out of anything: invalid characters become `-`, runs
/// of `-` or `_` collapse (so no `__`), `-`/`_` are trimmed from both ends,
/// and the result is cut to 32 characters. Never empty.
fn sanitize_name(original: &str) -> String {
    let mut out = String::with_capacity(original.len());
    for c in original.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if (c == '-' || c == '_') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    let trimmed = trim_separators(&out);
    let cut = trim_separators(&trimmed[..trimmed.len().min(MAX_NAME)]);
    if cut.is_empty() {
        "server".to_string()
    } else {
        cut.to_string()
    }
}

fn trim_separators(s: &str) -> &str {
    s.trim_matches(|c| c == '-' || c == '_')
}

/// `base-N`, with `base` shortened so the whole stays within 32 characters.
fn with_suffix(base: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let keep = MAX_NAME.saturating_sub(suffix.len()).min(base.len());
    let head = trim_separators(&base[..keep]);
    format!("{head}{suffix}")
}

fn render(format: SourceFormat, servers: &[Accepted], skipped: &[SkippedServer]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# stdioproxy servers imported from {} by `stdioproxy import`.",
        format.describe()
    );
    out.push_str(
        "# Review before use: env values were copied verbatim (better: write \"${VAR}\" and\n\
         # set VAR in the daemon's environment), and servers run with the daemon's\n\
         # environment and PATH, not your login shell's.\n",
    );
    if servers.is_empty() {
        out.push_str("# No local (stdio) MCP servers were found.\n");
    }

    for a in servers {
        out.push('\n');
        if a.renamed() {
            let why = if ServerName::new(&a.original).is_ok() {
                "another server already has that name"
            } else {
                "names allow only A-Z a-z 0-9 _ -, no \"__\", at most 32 characters"
            };
            comment(&mut out, &format!("imported from {:?} ({why})", a.original));
        }
        if let Some(project) = &a.project {
            comment(
                &mut out,
                &format!(
                    "from Claude Code project {project:?}, where it ran in that directory; add cwd if it needs to"
                ),
            );
        }
        for note in &a.notes {
            comment(&mut out, &format!("note: {note}"));
        }
        let s = &a.server;
        let _ = writeln!(out, "[servers.{}]", a.name);
        let _ = writeln!(out, "command = {}", toml_string(&s.command));
        if !s.args.is_empty() {
            let items: Vec<String> = s.args.iter().map(|x| toml_string(x)).collect();
            let _ = writeln!(out, "args = [{}]", items.join(", "));
        }
        if let Some(cwd) = &s.cwd {
            let _ = writeln!(out, "cwd = {}", toml_string(cwd));
        }
        if !s.enabled {
            out.push_str("enabled = false  # disabled in the client's config\n");
        }
        if !s.env.is_empty() {
            let _ = writeln!(out, "\n[servers.{}.env]", a.name);
            for (key, value) in &s.env {
                if looks_secret(key) && !value.is_empty() && !value.contains("${") {
                    comment(
                        &mut out,
                        &format!("{key} looks like a secret: consider {} = \"${{{key}}}\" with {key} set in the daemon's environment", toml_key(key)),
                    );
                }
                let _ = writeln!(out, "{} = {}", toml_key(key), toml_string(value));
            }
        }
    }

    if !skipped.is_empty() {
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
    }
    out
}

/// Appends `# text`, with control characters (newlines!) neutralised so the
/// comment cannot end early and inject TOML.
fn comment(out: &mut String, text: &str) {
    out.push_str("# ");
    out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
    out.push('\n');
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when possible, else quoted.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        toml_string(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, Config};
    use std::path::Path;

    fn import(json: &str) -> ImportOutcome {
        let out = import_mcp_servers(json).expect("import");
        // Every output must be a valid stdioproxy config.
        parse(&out.toml);
        out
    }

    fn parse(toml: &str) -> Config {
        match parse_str(Path::new("imported.toml"), toml) {
            Ok(c) => c,
            Err(e) => panic!("{e}\n---\n{toml}"),
        }
    }

    fn server<'a>(c: &'a Config, name: &str) -> &'a crate::config::ServerConfig {
        let key = ServerName::new(name).expect("valid name");
        c.servers
            .get(&key)
            .unwrap_or_else(|| panic!("no server {name}: {:?}", c.servers.keys()))
    }

    fn names(out: &ImportOutcome) -> Vec<&str> {
        out.imported.iter().map(|s| s.name.as_str()).collect()
    }

    const CLAUDE_DESKTOP: &str = r#"{
  "globalShortcut": "Ctrl+Alt+Space",
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/home/alice/Desktop",
        "/home/alice/Downloads"
      ]
    },
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": {
        "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexample"
      }
    },
    "Brave Search": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-brave-search"],
      "env": { "BRAVE_API_KEY": "BSAexample", "LOG_LEVEL": "info" }
    },
    "sqlite": {
      "command": "uvx",
      "args": ["mcp-server-sqlite", "--db-path", "/home/alice/test.db"],
      "disabled": true
    },
    "linear": {
      "command": "npx",
      "args": ["-y", "mcp-remote", "https://mcp.linear.app/sse"]
    }
  }
}"#;

    #[test]
    fn claude_desktop_config() {
        let out = import(CLAUDE_DESKTOP);
        assert_eq!(out.format, SourceFormat::McpServers);
        assert_eq!(
            names(&out),
            // The file's own order.
            vec!["filesystem", "github", "Brave-Search", "sqlite", "linear"]
        );
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
        let c = parse(&out.toml);

        let fs = server(&c, "filesystem");
        assert_eq!(fs.command.0, "npx");
        assert_eq!(
            fs.args,
            vec![
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/home/alice/Desktop",
                "/home/alice/Downloads"
            ]
        );
        assert!(fs.env.is_empty());
        assert!(fs.enabled);
        assert_eq!(fs.cwd, None);

        let gh = server(&c, "github");
        assert_eq!(
            gh.env
                .get("GITHUB_PERSONAL_ACCESS_TOKEN")
                .map(String::as_str),
            Some("ghp_exampleexampleexample")
        );

        let brave = server(&c, "Brave-Search");
        assert_eq!(brave.env.len(), 2);
        assert!(
            out.toml.contains("# imported from \"Brave Search\""),
            "{}",
            out.toml
        );
        let renamed: Vec<_> = out.imported.iter().filter(|s| s.renamed()).collect();
        assert_eq!(renamed.len(), 1);
        assert_eq!(renamed[0].original, "Brave Search");

        assert!(!server(&c, "sqlite").enabled);
        assert!(
            !out.imported
                .iter()
                .find(|s| s.name == "sqlite")
                .expect("sqlite")
                .enabled
        );
        // mcp-remote is a local stdio process even though it talks to a URL.
        assert_eq!(server(&c, "linear").args[2], "https://mcp.linear.app/sse");

        assert_eq!(
            out.secret_env,
            vec![
                SecretEnv {
                    server: "github".into(),
                    key: "GITHUB_PERSONAL_ACCESS_TOKEN".into()
                },
                SecretEnv {
                    server: "Brave-Search".into(),
                    key: "BRAVE_API_KEY".into()
                },
            ]
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    const CLAUDE_CODE: &str = r#"{
  "numStartups": 57,
  "installMethod": "native",
  "autoUpdates": true,
  "theme": "dark",
  "tipsHistory": { "new-user-warmup": 1, "memory-command": 12 },
  "userID": "0f3c5e4d2a1b",
  "mcpServers": {
    "context7": {
      "type": "http",
      "url": "https://mcp.context7.com/mcp?api_key=secret",
      "headers": { "CONTEXT7_API_KEY": "ctx7-secret" }
    },
    "sequential-thinking": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-sequential-thinking"],
      "env": {}
    },
    "playwright": {
      "type": "stdio",
      "command": "npx",
      "args": ["@playwright/mcp@latest"],
      "env": {}
    }
  },
  "projects": {
    "/home/alice/src/webapp": {
      "allowedTools": [],
      "history": [{ "display": "fix the login bug", "pastedContents": {} }],
      "mcpContextUris": [],
      "mcpServers": {
        "postgres": {
          "type": "stdio",
          "command": "npx",
          "args": ["-y", "@modelcontextprotocol/server-postgres", "postgresql://localhost/webapp"],
          "env": {}
        },
        "playwright": {
          "type": "stdio",
          "command": "npx",
          "args": ["@playwright/mcp@latest"],
          "env": {}
        }
      },
      "enabledMcpjsonServers": [],
      "disabledMcpjsonServers": [],
      "hasTrustDialogAccepted": true
    },
    "/home/alice/src/api": {
      "allowedTools": ["Bash(npm test:*)"],
      "mcpServers": {
        "postgres": {
          "type": "stdio",
          "command": "npx",
          "args": ["-y", "@modelcontextprotocol/server-postgres", "postgresql://localhost/api"],
          "env": { "PGPASSWORD": "hunter2" }
        },
        "sentry": { "type": "sse", "url": "https://mcp.sentry.dev/sse" }
      }
    },
    "/home/alice": { "allowedTools": [], "mcpServers": {} }
  }
}"#;

    #[test]
    fn claude_code_user_and_project_servers() {
        let out = import(CLAUDE_CODE);
        assert_eq!(out.format, SourceFormat::ClaudeCode);
        // User scope first (in file order), then projects in file order.
        assert_eq!(
            names(&out),
            vec![
                "sequential-thinking",
                "playwright",
                "postgres",
                "postgres-2"
            ]
        );
        let pg: Vec<_> = out
            .imported
            .iter()
            .filter(|s| s.original == "postgres")
            .collect();
        // Projects in the file's order: webapp comes first there.
        assert_eq!(pg[0].project.as_deref(), Some("/home/alice/src/webapp"));
        assert_eq!(pg[1].project.as_deref(), Some("/home/alice/src/api"));

        let c = parse(&out.toml);
        assert_eq!(
            server(&c, "postgres").args[2],
            "postgresql://localhost/webapp"
        );
        assert_eq!(
            server(&c, "postgres-2").args[2],
            "postgresql://localhost/api"
        );
        assert!(out
            .toml
            .contains("from Claude Code project \"/home/alice/src/api\""));
        assert!(out
            .toml
            .contains("# imported from \"postgres\" (another server already has that name)"));

        // Remote servers and the project copy of playwright are skipped.
        let skipped: Vec<(&str, Option<&str>)> = out
            .skipped
            .iter()
            .map(|s| (s.original.as_str(), s.project.as_deref()))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("context7", None),
                ("playwright", Some("/home/alice/src/webapp")),
                ("sentry", Some("/home/alice/src/api")),
            ]
        );
        let ctx = &out.skipped[0].reason;
        assert!(
            ctx.contains("remote server (http, https://mcp.context7.com)"),
            "{ctx}"
        );
        // No query string, no header values in the output.
        assert!(!out.toml.contains("ctx7-secret"), "{}", out.toml);
        assert!(!out.toml.contains("api_key"), "{}", out.toml);
        assert!(out.skipped[2].reason.contains("sse"));
        assert!(
            out.skipped[1].reason.contains("same command"),
            "{}",
            out.skipped[1].reason
        );
        assert!(out.toml.contains("# Not imported:"));
        assert!(
            out.toml.contains("# - \"context7\": remote server"),
            "{}",
            out.toml
        );

        assert_eq!(
            out.secret_env,
            vec![SecretEnv {
                // The api project's postgres, second in the file.
                server: "postgres-2".into(),
                key: "PGPASSWORD".into()
            }]
        );
    }

    const CURSOR: &str = r#"{
  "mcpServers": {
    "Figma Dev Mode MCP": { "url": "http://127.0.0.1:3845/sse" },
    "supabase": {
      "command": "npx",
      "args": ["-y", "@supabase/mcp-server-supabase@latest", "--read-only", "--project-ref=abcdefgh"],
      "env": { "SUPABASE_ACCESS_TOKEN": "sbp_0123456789" }
    },
    "my__tool": { "command": "/home/alice/bin/my-tool", "args": ["--stdio"] },
    "a.b": { "command": "a" },
    "a-b": { "command": "b" },
    "a b": { "command": "c" },
    "an extremely long server name that exceeds the limit": {
      "command": "node",
      "args": ["/home/alice/mcp/server.js"],
      "cwd": "/home/alice/mcp",
      "envFile": "${workspaceFolder}/.env",
      "env": { "API_TOKEN": "${env:API_TOKEN}", "PORT": 8080 }
    },
    "local-db": {
      "command": "python -m mcp_db",
      "env": { "DB_PASSWORD": "${DB_PASSWORD}" },
      "autoApprove": ["query"]
    }
  }
}"#;

    #[test]
    fn cursor_config_with_awkward_names() {
        let out = import(CURSOR);
        assert_eq!(out.format, SourceFormat::McpServers);
        let pairs: BTreeMap<&str, &str> = out
            .imported
            .iter()
            .map(|s| (s.original.as_str(), s.name.as_str()))
            .collect();
        // The valid "a-b" keeps its name; "a.b" and "a b" get numbered in
        // the file's order.
        assert_eq!(pairs["a-b"], "a-b");
        assert_eq!(pairs["a.b"], "a-b-2");
        assert_eq!(pairs["a b"], "a-b-3");
        assert_eq!(pairs["my__tool"], "my_tool");
        let long = pairs["an extremely long server name that exceeds the limit"];
        assert_eq!(long, "an-extremely-long-server-name-th");
        assert_eq!(long.len(), 32);
        for name in pairs.values() {
            ServerName::new(name).expect("valid");
        }

        assert_eq!(out.skipped.len(), 1);
        assert_eq!(out.skipped[0].original, "Figma Dev Mode MCP");
        assert!(out.skipped[0].reason.contains("http://127.0.0.1:3845"));

        let c = parse(&out.toml);
        let long = server(&c, long);
        assert_eq!(long.cwd.as_deref(), Some("/home/alice/mcp"));
        assert_eq!(long.env.get("PORT").map(String::as_str), Some("8080"));
        assert_eq!(
            long.env.get("API_TOKEN").map(String::as_str),
            Some("${env:API_TOKEN}")
        );
        let warnings = out.warnings.join("\n");
        assert!(warnings.contains("envFile"), "{warnings}");
        assert!(warnings.contains("env API_TOKEN"), "{warnings}");
        assert!(warnings.contains("contains spaces"), "{warnings}");
        assert!(!warnings.contains("autoApprove"), "{warnings}");
        // Warnings also appear as comments next to the server.
        assert!(out.toml.contains("# note: \"envFile\" is not supported"));

        // Values that are already references are not flagged as secrets.
        let secrets: Vec<&str> = out.secret_env.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(secrets, vec!["SUPABASE_ACCESS_TOKEN"]);
        assert!(out
            .toml
            .contains("# SUPABASE_ACCESS_TOKEN looks like a secret: consider SUPABASE_ACCESS_TOKEN = \"${SUPABASE_ACCESS_TOKEN}\""));
    }

    #[test]
    fn bare_map_and_vscode_servers() {
        let bare = import(
            r#"{"echo": {"command": "mcp-echo", "args": ["--x"]}, "off": {"command": "y", "disabled": true}}"#,
        );
        assert_eq!(bare.format, SourceFormat::BareMap);
        assert_eq!(names(&bare), vec!["echo", "off"]);
        let c = parse(&bare.toml);
        assert_eq!(server(&c, "echo").args, vec!["--x"]);
        assert!(!server(&c, "off").enabled);

        let vscode = import(
            r#"{"inputs": [{"type": "promptString", "id": "token"}],
                "servers": {"gh": {"type": "stdio", "command": "docker", "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"]},
                            "remote": {"type": "http", "url": "https://api.githubcopilot.com/mcp/"}}}"#,
        );
        assert_eq!(vscode.format, SourceFormat::VsCode);
        assert_eq!(names(&vscode), vec!["gh"]);
        assert_eq!(vscode.skipped.len(), 1);

        // A bare map holding a server called "servers" is still a bare map.
        let odd = import(r#"{"servers": {"command": "x"}}"#);
        assert_eq!(odd.format, SourceFormat::BareMap);
        assert_eq!(names(&odd), vec!["servers"]);
    }

    #[test]
    fn empty_inputs_give_a_valid_empty_config() {
        for json in ["{}", r#"{"mcpServers": {}}"#, r#"{"mcpServers": null}"#] {
            let out = import(json);
            assert!(out.imported.is_empty());
            assert!(parse(&out.toml).servers.is_empty());
            assert!(out.toml.contains("No local (stdio) MCP servers"));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        match import_mcp_servers("{\n  \"mcpServers\": {,}\n}") {
            Err(ImportError::Json { line, column, .. }) => assert_eq!((line, column), (2, 18)),
            other => panic!("{other:?}"),
        }
        for json in [
            "[]",
            "\"x\"",
            r#"{"mcpServers": []}"#,
            r#"{"globalShortcut": "Ctrl+Space"}"#,
        ] {
            let e = import_mcp_servers(json).expect_err(json);
            assert!(matches!(e, ImportError::Unrecognized(_)), "{json}: {e}");
            assert!(e.to_string().contains("mcpServers"), "{e}");
        }
    }

    #[test]
    fn malformed_entries_are_skipped_with_a_reason() {
        let out = import(
            r#"{"mcpServers": {
                "a": "npx foo",
                "b": {"args": ["x"]},
                "c": {"command": ""},
                "d": {"command": "x", "args": [{"k": 1}]},
                "e": {"command": "x", "env": ["A=1"]},
                "f": {"command": "x", "type": "carrier-pigeon"},
                "g": {"command": 42},
                "ok": {"command": "x", "args": [1, true, "s"], "timeout": 30}
            }}"#,
        );
        assert_eq!(names(&out), vec!["ok"]);
        let reasons: BTreeMap<&str, &str> = out
            .skipped
            .iter()
            .map(|s| (s.original.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert!(reasons["a"].contains("not a JSON object"));
        assert!(reasons["b"].contains("no \"command\""));
        assert!(reasons["c"].contains("empty"));
        assert!(reasons["d"].contains("non-string"));
        assert!(reasons["e"].contains("\"env\" is not an object"));
        assert!(reasons["f"].contains("carrier-pigeon"));
        assert!(reasons["g"].contains("not a string"));
        let c = parse(&out.toml);
        assert_eq!(server(&c, "ok").args, vec!["1", "true", "s"]);
        assert_eq!(out.warnings, vec!["server ok: ignored field(s): timeout"]);
    }

    #[test]
    fn strings_survive_toml_escaping() {
        let nasty =
            "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} unicode é 😀 ${X} '";
        let json = serde_json::json!({
            "mcpServers": {
                "x": {
                    "command": nasty,
                    "args": [nasty, "C:\\Program Files\\node.exe", ""],
                    "env": { "weird key.with dots": nasty, "": "empty key", "A": "" },
                    "cwd": "/tmp/dir with spaces/\"q\""
                },
                "name\nwith newline]\n[servers.evil]\ncommand = \"rm\"": { "command": "safe" }
            }
        })
        .to_string();
        let out = import(&json);
        let c = parse(&out.toml);
        assert_eq!(c.servers.len(), 2, "{}", out.toml);
        let x = server(&c, "x");
        assert_eq!(x.command.0, nasty);
        assert_eq!(x.args, vec![nasty, "C:\\Program Files\\node.exe", ""]);
        assert_eq!(x.env["weird key.with dots"], nasty);
        assert_eq!(x.env[""], "empty key");
        assert_eq!(x.env["A"], "");
        assert_eq!(x.cwd.as_deref(), Some("/tmp/dir with spaces/\"q\""));
        // The newline in the original name cannot inject a table.
        assert!(!c
            .servers
            .contains_key(&ServerName::new("evil").expect("valid")));
        let renamed = out
            .imported
            .iter()
            .find(|s| s.original.starts_with("name"))
            .expect("imported");
        assert_eq!(renamed.name, "name-with-newline-servers-evil-c");
        assert_eq!(server(&c, &renamed.name).command.0, "safe");
    }

    #[test]
    fn stdioproxy_itself_is_not_imported_and_its_name_is_not_taken() {
        let out = import_mcp_servers(
            r#"{"mcpServers": {
                "stdioproxy": {"command": "/home/u/.cargo/bin/stdioproxy-shim", "args": []},
                "stdioproxy ": {"command": "npx", "args": ["-y", "server-memory"]}
            }}"#,
        )
        .unwrap();
        assert_eq!(out.skipped.len(), 1, "{:?}", out.skipped);
        assert!(out.skipped[0].reason.contains("stdioproxy itself"));
        let c = crate::config::parse_str(Path::new("imported.toml"), &out.toml).unwrap();
        let names: Vec<&str> = c.servers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["stdioproxy-2"]);
    }

    #[test]
    fn sanitizing_names() {
        assert_eq!(sanitize_name("Brave Search"), "Brave-Search");
        assert_eq!(sanitize_name("@scope/pkg"), "scope-pkg");
        assert_eq!(sanitize_name("a___b"), "a_b");
        assert_eq!(sanitize_name("a.__.b"), "a-_-b");
        assert_eq!(sanitize_name("é"), "server");
        assert_eq!(sanitize_name(""), "server");
        assert_eq!(sanitize_name("__x__"), "x");
        assert_eq!(sanitize_name("日本語 server"), "server");
        let cut = sanitize_name(&format!("{}_{}", "a".repeat(31), "b"));
        assert_eq!(cut, "a".repeat(31));
        for s in ["a.__.b", "x y z", "ümlaut", "a--b", &"long-".repeat(20)] {
            let n = sanitize_name(s);
            ServerName::new(&n).unwrap_or_else(|e| panic!("{s:?} -> {n:?}: {e}"));
        }
    }

    #[test]
    fn numbering_is_deterministic_and_stays_within_32() {
        let long = "x".repeat(40);
        let names = assign_names([long.as_str(), long.as_str(), "valid", "valid"].into_iter());
        assert_eq!(
            names,
            vec![
                "x".repeat(32),
                format!("{}-2", "x".repeat(30)),
                "valid".to_string(),
                "valid-2".to_string()
            ]
        );
        for n in &names {
            ServerName::new(n).expect("valid");
        }
        // Many collisions: suffixes keep counting.
        let many = assign_names(std::iter::repeat_n("a b", 12));
        assert_eq!(many[0], "a-b");
        assert_eq!(many[11], "a-b-12");
        // The same input always gives the same output.
        assert_eq!(import(CURSOR).toml, import(CURSOR).toml);
    }

    #[test]
    fn url_origins_drop_credentials_and_paths() {
        assert_eq!(
            url_origin("https://user:pw@host.example:8443/p?q=1"),
            "https://host.example:8443"
        );
        assert_eq!(
            url_origin("http://127.0.0.1:3845/sse"),
            "http://127.0.0.1:3845"
        );
        assert_eq!(url_origin("host/path"), "host");
    }
}
