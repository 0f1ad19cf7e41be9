//! Speaking to a modern child: what the daemon learns from its
//! `server/discover` (in place of an initialize result), the envelope every
//! request to it carries, the key its era verdict is cached under, and how
//! its errors reach clients of either era.
//!
//! A modern child is spoken to statelessly: it is asked `server/discover`
//! once per instance, and each request forwarded to it carries, in `_meta`,
//! the capabilities the daemon declares for that child (the same set a
//! legacy child is told at `initialize`), never one client's.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{code, key, MODERN_VERSION};
use crate::config::ServerConfig;
use crate::jsonrpc;

/// What a child's discover result says, in the terms of an initialize
/// result.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovered {
    /// The revision the daemon speaks with it.
    pub protocol_version: String,
    /// Its capabilities.
    pub capabilities: Value,
    /// Its `serverInfo` (from the result's `_meta`), `Null` if absent.
    pub server_info: Value,
    /// Its instructions.
    pub instructions: Option<String>,
}

/// Reads a discover result.
pub fn discovered(result: &Value) -> Result<Discovered, String> {
    let offered = result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v.as_str() == Some(MODERN_VERSION)));
    if !offered {
        return Err(format!(
            "its server/discover does not offer {MODERN_VERSION} (supportedVersions: {})",
            result.get("supportedVersions").unwrap_or(&Value::Null)
        ));
    }
    Ok(Discovered {
        protocol_version: MODERN_VERSION.to_string(),
        capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
        server_info: result
            .pointer(&format!("/_meta/{}", key::SERVER_INFO.replace('/', "~1")))
            .cloned()
            .unwrap_or(Value::Null),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The client capabilities the daemon declares to a child (either era):
/// sampling and elicitation, which it routes to a client, and roots only
/// when the server has roots configured (answered from the config).
pub fn declared_capabilities(roots: bool) -> Value {
    let mut caps = json!({
        "sampling": {},
        "elicitation": { "form": {}, "url": {} },
    });
    if roots {
        caps["roots"] = json!({ "listChanged": true });
    }
    caps
}

/// The key an era verdict is cached under: a SHA-256 over command, args,
/// cwd and env (names and values, sorted), since any of them can change
/// which program answers. Env values are taken as written in the config
/// (`${VAR}` templates unexpanded), so a secret that comes from the
/// daemon's environment is never hashed into the cache; a literal one only
/// as a truncated SHA-256 mixed with everything else.
pub fn verdict_key(spec: &ServerConfig) -> String {
    let mut h = Sha256::new();
    h.update(spec.command.0.as_bytes());
    for a in &spec.args {
        h.update(b"\0a");
        h.update(a.as_bytes());
    }
    h.update(b"\0cwd=");
    h.update(spec.cwd.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &spec.env {
        h.update(b"\0e");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A child's error for a client: its -32021 ("missing required client
/// capability") means the daemon did not declare something the child
/// needs, which the client cannot fix; it becomes -32603 naming the server
/// and the capability. Any other error passes through unchanged.
pub fn client_error(server: &str, error: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(error) else {
        return error.to_string();
    };
    if v.get("code").and_then(Value::as_i64) != Some(code::MISSING_CLIENT_CAPABILITY) {
        return error.to_string();
    }
    let needed = v
        .pointer("/data/requiredCapabilities")
        .cloned()
        .unwrap_or(Value::Null);
    let hint = if needed.get("roots").is_some() {
        " (configure roots = [...] for it)"
    } else {
        ""
    };
    json!({
        "code": jsonrpc::code::INTERNAL_ERROR,
        "message": format!(
            "server '{server}' needs a client capability stdioproxy does not declare to it: {needed}{hint}"
        ),
        "data": { "server": server, "requiredCapabilities": needed },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_discover_result() {
        let r = json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {"listChanged": true}},
            "instructions": "hi", "resultType": "complete",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "m", "version": "1"}}});
        let d = discovered(&r).unwrap();
        assert_eq!(d.protocol_version, "2026-07-28");
        assert_eq!(d.capabilities["tools"]["listChanged"], true);
        assert_eq!(d.server_info["name"], "m");
        assert_eq!(d.instructions.as_deref(), Some("hi"));
        assert!(discovered(&json!({"supportedVersions": ["2099-01-01"]})).is_err());
        assert_eq!(
            discovered(&json!({"supportedVersions": ["2026-07-28"]}))
                .unwrap()
                .server_info,
            Value::Null
        );
    }

    #[test]
    fn the_verdict_key_covers_command_args_cwd_and_env() {
        let mut a = ServerConfig::new("node");
        a.args = vec!["x.js".into()];
        let base = verdict_key(&a);
        assert_eq!(base.len(), 32);
        let mut b = a.clone();
        b.args.push("--modern".into());
        assert_ne!(verdict_key(&b), base);
        let mut c = a.clone();
        c.env.insert("MODE".into(), "1".into());
        assert_ne!(verdict_key(&c), base);
        let mut d = a.clone();
        d.cwd = Some("/tmp".into());
        assert_ne!(verdict_key(&d), base);
        assert_eq!(verdict_key(&a.clone()), base);
    }

    #[test]
    fn a_childs_missing_capability_is_translated() {
        let e = r#"{"code":-32021,"message":"Cannot request input 'name'","data":{"requiredCapabilities":{"roots":{}}}}"#;
        let v: Value = serde_json::from_str(&client_error("files", e)).unwrap();
        assert_eq!(v["code"], -32603);
        assert!(v["message"].as_str().unwrap().contains("files"), "{v}");
        assert!(v["message"].as_str().unwrap().contains("roots = ["), "{v}");
        assert_eq!(v["data"]["requiredCapabilities"], json!({"roots": {}}));
        let other = r#"{"code":-32602,"message":"bad"}"#;
        assert_eq!(client_error("files", other), other);
        assert!(declared_capabilities(true).get("roots").is_some());
        assert!(declared_capabilities(false).get("roots").is_none());
    }
}
