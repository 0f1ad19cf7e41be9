//! The stdioproxy line protocol that may precede MCP on the daemon's socket.
//!
//! A connection's first line decides what it is:
//!
//! - `{"stdioproxy":1,"shim":"<version>",...}`: a shim hello. The daemon answers
//!   one line, [`HelloReply`], that the shim consumes (never forwarded to the
//!   MCP client), then the connection is a plain MCP session. The shim does not
//!   wait for the reply before forwarding the client's first message, so the
//!   hello costs no round trip.
//! - `{"stdioproxy":1,"control":"<verb>",...}`: a control request (`status`,
//!   `reload`, ...); the daemon answers one JSON line and closes.
//! - anything else: the first MCP message of a session with default options, so
//!   `socat STDIO UNIX-CONNECT:...` works as a client too.
//!
//! Both ends use the same typed [`Hello`] (serde), so a field added here is
//! added for both. Every optional field is left out of the line when unset,
//! so an older daemon still understands a newer shim that uses no new option.
//!
//! **Unknown fields are refused**, with a sentence that says to restart the
//! daemon after an upgrade. A field is only sent when the user asked for
//! that option (`--workspace`, `--tools search`, ...), and a daemon that
//! silently ignored it would give the client something else than it asked
//! for (another workspace's server instance, every tool instead of a
//! search), which is worse than a clear refusal. A newer daemon understands
//! every older shim, so a running shim keeps working across an upgrade.
//! `workspace` is the exception that is always sent (the shim's working
//! directory unless `--workspace` names another): per-workspace servers need
//! it for every session, so a shim that has this field needs a daemon that
//! knows it (the refusal says to restart the daemon).
//!
//! The protocol version is a small integer, not the crate's semver: it changes
//! only when these lines change incompatibly.

use serde::{Deserialize, Serialize};

/// Version of the hello/control lines.
pub const PROTO_VERSION: u32 = 1;

/// The key that marks a stdioproxy hello or control line.
pub const HELLO_KEY: &str = "stdioproxy";

/// The first line of a shim or control connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// [`PROTO_VERSION`] of the sender.
    pub stdioproxy: u32,
    /// The shim's crate version (a shim hello).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<String>,
    /// The control verb (a control request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Only these servers are visible to the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Set when the shim resumes a session on a new connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resumed>,
    /// `--server NAME`: exactly this server, under its own names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `--name-max N`: every tool and prompt name at most N characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_max: Option<u64>,
    /// `--tools search`: the two meta-tools instead of the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<String>,
    /// A control request's arguments (`restart`, `logs`, `tools-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The session's workspace for per-workspace servers: an absolute path
    /// as a string, or as an array of its bytes when it is not UTF-8 (see
    /// `crate::workspace`; the daemon canonicalises and checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<serde_json::Value>,
}

/// What a shim resuming a session tells the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// `clientInfo.name` of the client's `initialize`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// How many times this session has been resumed (1 the first time).
    #[serde(default)]
    pub count: u32,
}

impl Hello {
    /// The line to send (with its newline).
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads a connection's first line: `None` when it is not a hello (a
    /// JSON object with a `stdioproxy` key and no `jsonrpc` key) but the
    /// first MCP message; `Err` with a sentence for the peer when it is a
    /// hello this daemon cannot accept.
    pub fn parse(line: &[u8]) -> Option<Result<Hello, String>> {
        let key = format!("\"{HELLO_KEY}\"");
        if !line.windows(key.len()).any(|w| w == key.as_bytes()) {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        let obj = v.as_object()?;
        if obj.contains_key("jsonrpc") {
            return None;
        }
        let version = obj.get(HELLO_KEY)?;
        if version.as_u64() != Some(u64::from(PROTO_VERSION)) {
            return Some(Err(format!(
                "this daemon speaks stdioproxy protocol {PROTO_VERSION}, the client sent {version}; use matching versions of stdioproxy and stdioproxy-shim"
            )));
        }
        Some(serde_json::from_value(v).map_err(|e| {
            let e = e.to_string();
            if e.starts_with("unknown field") {
                format!(
                    "this daemon (stdioproxy {}) does not understand the hello: {e}; after upgrading stdioproxy, restart the daemon (`systemctl --user restart stdioproxy`)",
                    env!("CARGO_PKG_VERSION")
                )
            } else {
                format!("malformed hello: {e}")
            }
        }))
    }
}

/// The daemon's answer to a shim hello: `{"stdioproxy":1,"ok":true}` or
/// `{"stdioproxy":1,"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub stdioproxy: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HelloReply {
    /// The success line.
    pub fn ok() -> String {
        format!("{{\"stdioproxy\":{PROTO_VERSION},\"ok\":true}}\n")
    }

    /// A refusal line.
    pub fn refusal(message: &str) -> String {
        let mut s = serde_json::to_string(&HelloReply {
            stdioproxy: PROTO_VERSION,
            ok: false,
            error: Some(message.to_string()),
        })
        .unwrap_or_default();
        s.push('\n');
        s
    }

    /// Returns `Err(message)` when the line is a refusal, `Ok(())` when it
    /// accepts, and `Err` with a description when it is not a reply at all.
    pub fn parse(line: &[u8]) -> Result<(), String> {
        match serde_json::from_slice::<HelloReply>(line) {
            Ok(HelloReply { ok: true, .. }) => Ok(()),
            Ok(HelloReply { error, .. }) => {
                Err(error.unwrap_or_else(|| "no reason given".to_string()))
            }
            Err(_) => Err(format!(
                "unexpected reply from the daemon: {}",
                String::from_utf8_lossy(line).trim()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_roundtrips() {
        let hello = Hello {
            stdioproxy: PROTO_VERSION,
            shim: Some("0.1.0".into()),
            servers: Some(vec!["a".into(), "b\"c".into()]),
            resume: Some(Resumed {
                client: Some("claude".into()),
                count: 2,
            }),
            ..Hello::default()
        };
        let line = hello.line();
        assert!(line.ends_with('\n') && !line.contains("control"));
        assert_eq!(Hello::parse(line.as_bytes()), Some(Ok(hello)));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["servers"], serde_json::json!(["a", "b\"c"]));
    }

    #[test]
    fn workspaces_travel_as_strings_or_bytes() {
        use std::os::unix::ffi::OsStrExt;
        for raw in [&b"/tmp/a \"q\" \n\x1b"[..], b"/tmp/\xff\xfe"] {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
            let hello = Hello {
                stdioproxy: PROTO_VERSION,
                workspace: Some(crate::workspace::Workspace::hello_value(path)),
                ..Hello::default()
            };
            let parsed = Hello::parse(hello.line().as_bytes()).unwrap().unwrap();
            assert_eq!(parsed, hello);
        }
    }

    #[test]
    fn what_is_not_a_hello() {
        assert_eq!(
            Hello::parse(br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#),
            None
        );
        assert_eq!(
            Hello::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"stdioproxy":1}}"#),
            None
        );
        assert_eq!(Hello::parse(b"\"stdioproxy\""), None);
        assert_eq!(Hello::parse(b"{\"stdioproxy\":1"), None);
    }

    #[test]
    fn refusals() {
        let e = Hello::parse(br#"{"stdioproxy":2,"shim":"9"}"#)
            .unwrap()
            .unwrap_err();
        assert!(e.contains("protocol 1, the client sent 2"), "{e}");
        let e = Hello::parse(br#"{"stdioproxy":1,"future_option":"/w"}"#)
            .unwrap()
            .unwrap_err();
        assert!(
            e.contains("unknown field `future_option`") && e.contains("restart the daemon"),
            "{e}"
        );
        let e = Hello::parse(br#"{"stdioproxy":1,"servers":"a"}"#)
            .unwrap()
            .unwrap_err();
        assert!(e.starts_with("malformed hello"), "{e}");
    }

    #[test]
    fn fit_fields_roundtrip() {
        let hello = Hello {
            stdioproxy: PROTO_VERSION,
            shim: Some("0.1.0".into()),
            server: Some("we\"ird".into()),
            name_max: Some(40),
            tools: Some("search".into()),
            ..Hello::default()
        };
        let line = hello.line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["server"], "we\"ird");
        assert_eq!(v["name_max"], 40);
        assert_eq!(v["tools"], "search");
        assert_eq!(Hello::parse(line.as_bytes()), Some(Ok(hello)));
    }

    #[test]
    fn reply_parsing() {
        assert_eq!(HelloReply::parse(HelloReply::ok().as_bytes()), Ok(()));
        assert_eq!(
            HelloReply::parse(HelloReply::refusal("too \"many\" sessions").as_bytes()),
            Err("too \"many\" sessions".to_string())
        );
        assert_eq!(
            HelloReply::parse(b"{ \"stdioproxy\": 1, \"ok\": true }\n"),
            Ok(())
        );
        assert!(HelloReply::parse(b"{}").is_err());
    }
}
