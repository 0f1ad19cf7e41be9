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
/// session's view to those servers when non-empty.
pub fn shim_hello(version: &str, servers: &[String]) -> String {
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
    line.push_str("}\n");
    line
}

/// [`shim_hello`] with the fitting options (`server`, `name_max`, `tools`).
pub fn shim_hello_fit(version: &str, servers: &[String], fit: &crate::fit_options::Fit) -> String {
    let mut line = shim_hello(version, servers);
    line.truncate(line.len() - 2);
    let quoted = |s: &str| {
        let mut q = String::from("\"");
        for c in s.chars() {
            match c {
                '"' | '\\' => {
                    q.push('\\');
                    q.push(c);
                }
                c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    if let Some(s) = &fit.server {
        line.push_str(&format!(",\"server\":{}", quoted(s)));
    }
    if let Some(n) = fit.name_max {
        line.push_str(&format!(",\"name_max\":{n}"));
    }
    if let Some(t) = &fit.tools {
        line.push_str(&format!(",\"tools\":{}", quoted(t)));
    }
    line.push_str("}\n");
    line
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
        let line = shim_hello("0.1.0", &["a".into(), "b-c".into()]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["stdioproxy"], 1);
        assert_eq!(v["servers"], serde_json::json!(["a", "b-c"]));
    }

    #[test]
    fn fit_options_roundtrip_as_json() {
        use crate::fit_options::Fit;
        let fit = Fit {
            server: Some("we\"ird".into()),
            name_max: Some(40),
            tools: Some("search".into()),
        };
        let line = shim_hello_fit("0.1.0", &[], &fit);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["server"], "we\"ird");
        assert_eq!(v["name_max"], 40);
        assert_eq!(v["tools"], "search");
        assert_eq!(
            shim_hello_fit("1", &[], &Fit::default()),
            shim_hello("1", &[])
        );
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
