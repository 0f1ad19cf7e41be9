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
//! The protocol version is a small integer, not the crate's semver: it changes
//! only when these lines change incompatibly. This module is std-only because
//! the shim uses it.

/// Version of the hello/control lines.
pub const PROTO_VERSION: u32 = 1;

/// The key that marks a stdioproxy hello or control line.
pub const HELLO_KEY: &str = "stdioproxy";

/// Builds the shim's hello line (with trailing newline). `servers` limits the
/// session's view to those servers when non-empty; `workspace` is the
/// session's workspace (a string, or an array of bytes when the path is not
/// UTF-8; see `crate::workspace`).
pub fn shim_hello(
    version: &str,
    servers: &[String],
    workspace: Option<&std::path::Path>,
) -> String {
    let mut line = format!("{{\"stdioproxy\":{PROTO_VERSION},\"shim\":\"{version}\"");
    if !servers.is_empty() {
        line.push_str(",\"servers\":[");
        for (i, s) in servers.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push('"');
            // Server names are [A-Za-z0-9_-]; anything else is rejected by the
            // daemon, so escaping quotes and backslashes is enough here.
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    line.push('\\');
                }
                line.push(c);
            }
            line.push('"');
        }
        line.push(']');
    }
    if let Some(path) = workspace {
        line.push_str(",\"workspace\":");
        push_path(&mut line, path);
    }
    line.push_str("}\n");
    line
}

/// A path as JSON: a string when it is UTF-8, else the array of its bytes.
fn push_path(line: &mut String, path: &std::path::Path) {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    match path.to_str() {
        Some(text) => {
            line.push('"');
            for c in text.chars() {
                match c {
                    '"' => line.push_str("\\\""),
                    '\\' => line.push_str("\\\\"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(line, "\\u{:04x}", c as u32);
                    }
                    c => line.push(c),
                }
            }
            line.push('"');
        }
        None => {
            line.push('[');
            for (i, b) in path.as_os_str().as_bytes().iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{b}");
            }
            line.push(']');
        }
    }
}

/// The daemon's answer to a shim hello: `{"stdioproxy":1,"ok":true}` or
/// `{"stdioproxy":1,"ok":false,"error":"..."}`.
pub struct HelloReply;

impl HelloReply {
    /// The success line.
    pub fn ok() -> String {
        format!("{{\"stdioproxy\":{PROTO_VERSION},\"ok\":true}}\n")
    }

    /// Returns `Err(message)` when the line is a refusal, `Ok(())` when it
    /// accepts, and `Err` with a description when it is not a reply at all.
    pub fn parse(line: &str) -> Result<(), String> {
        // What the daemon sends, checked without allocating.
        if line.contains("\"ok\":true") {
            return Ok(());
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("\"ok\":true") {
            return Ok(());
        }
        if let Some(start) = line.find("\"error\":\"") {
            let rest = &line[start + 9..];
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => break,
                    c => out.push(c),
                }
            }
            return Err(out);
        }
        Err(format!("unexpected reply from the daemon: {}", line.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_hello_roundtrips_as_json() {
        let line = shim_hello("0.1.0", &["a".into(), "b-c".into()], None);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["stdioproxy"], 1);
        assert_eq!(v["servers"], serde_json::json!(["a", "b-c"]));
        assert!(v.get("workspace").is_none());
        use std::os::unix::ffi::OsStrExt;
        for raw in [&b"/tmp/a \"q\" \\ \n\x1b"[..], b"/tmp/\xff\xfe"] {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
            let line = shim_hello("0.1.0", &[], Some(path));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                v["workspace"],
                crate::workspace::Workspace::hello_value(path),
                "{line}"
            );
        }
    }

    #[test]
    fn reply_parsing() {
        assert_eq!(HelloReply::parse(&HelloReply::ok()), Ok(()));
        assert_eq!(
            HelloReply::parse(
                "{\"stdioproxy\":1,\"ok\":false,\"error\":\"too \\\"many\\\" sessions\"}"
            ),
            Err("too \"many\" sessions".to_string())
        );
        assert!(HelloReply::parse("{}").is_err());
    }
}
