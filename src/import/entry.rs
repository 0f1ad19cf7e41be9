//! One client `mcpServers` entry → the local server stdioproxy would run.
//!
//! Client formats agree on `command`/`args`/`env`/`cwd` and differ in
//! everything else (`type`, `url`/`serverUrl`/`httpUrl`, `disabled` or
//! `enabled`, `envFile`, `autoApprove`...). The entry is a serde struct for
//! the fields that mean something here, with `#[serde(flatten)]` collecting
//! the rest, so unknown fields are reported by name instead of silently
//! dropped. Field types are checked by small deserializers whose errors name
//! the field, because the error text becomes the "skipped" reason a person
//! reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A local server as stdioproxy will run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Server {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub enabled: bool,
}

/// A parsed entry and what a person should know about it.
pub(super) struct Parsed {
    pub server: Server,
    /// Per-server warnings, also written as comments.
    pub notes: Vec<String>,
}

/// The fields of a client entry; everything else lands in `rest`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(rename = "type", default, deserialize_with = "type_field")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "command_field")]
    command: Option<String>,
    #[serde(default, deserialize_with = "args_field")]
    args: Vec<String>,
    #[serde(default, deserialize_with = "env_field")]
    env: Map<String, Value>,
    #[serde(default, deserialize_with = "cwd_field")]
    cwd: Option<String>,
    #[serde(default)]
    disabled: Option<Value>,
    #[serde(default)]
    enabled: Option<Value>,
    #[serde(default)]
    env_file: Option<Value>,
    #[serde(default)]
    url: Option<Value>,
    #[serde(default)]
    server_url: Option<Value>,
    #[serde(default)]
    http_url: Option<Value>,
    /// Fields we do not use, in the file's order.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn string_field<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(D::Error::custom(format!(
            "\"{field}\" is not a string: {other}"
        ))),
    }
}

fn type_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string_field(d, "type")
}

fn command_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string_field(d, "command")
}

fn cwd_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(string_field(d, "cwd")?.filter(|c| !c.is_empty()))
}

fn args_field<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                scalar_string(item).ok_or_else(|| {
                    D::Error::custom(format!("\"args\" holds a non-string item: {item}"))
                })
            })
            .collect(),
        other => Err(D::Error::custom(format!("\"args\" is not a list: {other}"))),
    }
}

fn env_field<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Map::new()),
        Value::Object(vars) => Ok(vars),
        other => Err(D::Error::custom(format!(
            "\"env\" is not an object: {other}"
        ))),
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

/// Server types that are reached over the network.
const REMOTE_TYPES: &[&str] = &[
    "http",
    "sse",
    "streamable-http",
    "streamablehttp",
    "ws",
    "websocket",
];

/// Parses one entry; `Err` is the reason it is skipped.
pub(super) fn parse_entry(value: &Value) -> Result<Parsed, String> {
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let entry = Entry::deserialize(value).map_err(|e| e.to_string())?;
    let url = [&entry.url, &entry.server_url, &entry.http_url]
        .into_iter()
        .find_map(|u| u.as_ref().and_then(Value::as_str));
    if let Some(reason) = remote_reason(&entry, url) {
        return Err(reason);
    }
    if let Some(k) = entry
        .kind
        .as_deref()
        .filter(|k| !k.eq_ignore_ascii_case("stdio"))
    {
        return Err(format!("unsupported server type {k:?}"));
    }
    let command = match entry.command.as_deref() {
        Some(c) if !c.trim().is_empty() => c.to_string(),
        Some(_) => return Err("\"command\" is empty".into()),
        None => return Err("no \"command\" (and no \"url\")".into()),
    };
    if is_stdioproxy(&command) {
        return Err(
            "this entry runs stdioproxy itself (the shim); importing it would make the daemon start a client of itself".into(),
        );
    }

    let mut notes = Vec::new();
    if url.is_some() {
        notes.push("has both \"command\" and \"url\"; imported the command".into());
    }
    command_notes(&command, &entry.args, &mut notes);
    let env = env_values(&entry.env, &mut notes);
    if entry.env_file.is_some() {
        notes.push(
            "\"envFile\" is not supported; its variables were not imported (add them to env)"
                .into(),
        );
    }
    let ignored: Vec<&str> = entry
        .rest
        .keys()
        .map(String::as_str)
        .filter(|k| !SILENTLY_IGNORED.contains(k))
        .collect();
    if !ignored.is_empty() {
        notes.push(format!("ignored field(s): {}", ignored.join(", ")));
    }
    let disabled = entry.disabled.as_ref().and_then(Value::as_bool) == Some(true)
        || entry.enabled.as_ref().and_then(Value::as_bool) == Some(false);

    Ok(Parsed {
        server: Server {
            command,
            args: entry.args,
            env,
            cwd: entry.cwd,
            enabled: !disabled,
        },
        notes,
    })
}

/// Why an entry is a remote server (which the daemon cannot run), if it is.
fn remote_reason(entry: &Entry, url: Option<&str>) -> Option<String> {
    let remote_kind = entry
        .kind
        .as_deref()
        .filter(|t| REMOTE_TYPES.contains(&t.to_ascii_lowercase().replace('_', "-").as_str()));
    if remote_kind.is_none() && (url.is_none() || entry.command.is_some()) {
        return None;
    }
    let mut reason = String::from("remote server");
    let _ = match (remote_kind, url) {
        (Some(k), Some(u)) => write!(reason, " ({k}, {})", url_origin(u)),
        (Some(k), None) => write!(reason, " ({k})"),
        (None, Some(u)) => write!(reason, " ({})", url_origin(u)),
        (None, None) => Ok(()),
    };
    reason
        .push_str(": stdioproxy only runs local stdio servers; keep it in the client's own config");
    Some(reason)
}

fn command_notes(command: &str, args: &[String], notes: &mut Vec<String>) {
    if args.is_empty() && command.trim().contains(char::is_whitespace) {
        notes.push(format!(
            "command {command:?} contains spaces but stdioproxy runs it as one program name; \
             split it into command and args"
        ));
    }
    if std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .any(|a| a.contains("${"))
    {
        notes.push(
            "command or args contain ${...}, which stdioproxy does not expand (only env values are expanded)"
                .into(),
        );
    }
}

/// Env values as strings (numbers and booleans as written); others are left
/// out with a note, and `${...}` syntax stdioproxy would not expand is noted.
fn env_values(vars: &Map<String, Value>, notes: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (key, value) in vars {
        let Some(v) = scalar_string(value) else {
            notes.push(format!("env {key} is not a string; left out"));
            continue;
        };
        if let Err(e) = crate::config::expand_vars(&v, |_| Some(String::new())) {
            notes.push(format!(
                "env {key}: {e}; stdioproxy only expands ${{NAME}} (write $${{ for a literal ${{)"
            ));
        }
        env.insert(key.clone(), v);
    }
    env
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
pub(super) fn url_origin(url: &str) -> String {
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

/// True when an env key's name suggests its value is a secret.
pub(super) fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| k.contains(w))
}

/// True when `command` is stdioproxy's own shim (or daemon binary).
pub(crate) fn is_stdioproxy(command: &str) -> bool {
    let file = command.trim().rsplit('/').next().unwrap_or_default();
    matches!(file, "stdioproxy-shim" | "stdioproxy")
}
