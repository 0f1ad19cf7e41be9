//! What a modern client's results carry besides the child's payload:
//! `resultType` (required on every result), the daemon's `serverInfo` in
//! result `_meta`, and cache hints (`ttlMs`, `cacheScope`) on lists and
//! discover; and the reverse, for a legacy client served by a modern child.
//!
//! The child's payload passes through byte for byte: members are added or
//! replaced with [`RawObject::to_string_with`], never re-serialised.

use serde_json::{json, Map, Value};

use super::{key, MODERN_VERSIONS};
use crate::jsonrpc::RawObject;

/// Who the daemon is, as `serverInfo`.
pub fn server_info() -> Value {
    json!({ "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") })
}

/// Whether a cached result may be shared across authorization contexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Anyone may reuse it.
    Public,
    /// Only the requester's authorization context may reuse it.
    Private,
}

/// A result's cache hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheHint {
    /// How long the result stays fresh, in milliseconds.
    pub ttl_ms: u64,
    /// Who may reuse it.
    pub scope: Scope,
}

impl CacheHint {
    /// What the daemon assumes of a child that gave no hint (every legacy
    /// child): stale at once, and private. It cannot know better, and a
    /// reload or a `list_changed` may change the list at any moment.
    pub const UNKNOWN: CacheHint = CacheHint {
        ttl_ms: 0,
        scope: Scope::Private,
    };

    /// The hint of an aggregate: the shortest TTL, private if any part is.
    pub fn combine(self, other: CacheHint) -> CacheHint {
        CacheHint {
            ttl_ms: self.ttl_ms.min(other.ttl_ms),
            scope: if self.scope == Scope::Private || other.scope == Scope::Private {
                Scope::Private
            } else {
                Scope::Public
            },
        }
    }

    /// The hint a modern child put on a result, if any.
    pub fn of_result(result: &str) -> Option<CacheHint> {
        let obj = RawObject::parse_str(result)?;
        let ttl_ms = obj
            .get("ttlMs")
            .and_then(|t| serde_json::from_str::<f64>(t.get()).ok())?;
        let scope = match obj.get_str("cacheScope").as_deref() {
            Some("public") => Scope::Public,
            _ => Scope::Private,
        };
        Some(CacheHint {
            ttl_ms: if ttl_ms.is_finite() && ttl_ms > 0.0 {
                ttl_ms as u64
            } else {
                0
            },
            scope,
        })
    }

    fn scope_str(self) -> &'static str {
        match self.scope {
            Scope::Public => "public",
            Scope::Private => "private",
        }
    }
}

/// A result for a modern client: `resultType: "complete"` unless the
/// payload already names its type (a modern child's `input_required`, a
/// task), and the daemon's `serverInfo` in `_meta` (other `_meta` members
/// kept). A payload that is not an object is returned unchanged.
pub fn modern(result: &str) -> String {
    decorate(result, None)
}

/// [`modern`] plus the cache hint, for lists, reads and discover.
pub fn modern_cacheable(result: &str, hint: CacheHint) -> String {
    decorate(result, Some(hint))
}

fn decorate(result: &str, hint: Option<CacheHint>) -> String {
    let Some(obj) = RawObject::parse_str(result) else {
        return result.to_string();
    };
    let mut meta: Map<String, Value> = obj
        .get("_meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    meta.insert(key::SERVER_INFO.into(), server_info());
    let meta = Value::Object(meta).to_string();
    let ttl;
    let mut members: Vec<(&str, &str)> = Vec::with_capacity(4);
    if obj.get("resultType").is_none() {
        members.push(("resultType", "\"complete\""));
    }
    if let Some(h) = hint {
        ttl = h.ttl_ms.to_string();
        members.push(("ttlMs", &ttl));
        members.push((
            "cacheScope",
            if h.scope == Scope::Public {
                "\"public\""
            } else {
                "\"private\""
            },
        ));
    }
    members.push(("_meta", &meta));
    obj.to_string_with(&members)
}

/// A modern child's complete result for a legacy client: without
/// `resultType`, `ttlMs`, `cacheScope` and the child's `serverInfo`, which
/// a legacy client does not expect (strict validators reject them).
pub fn legacy(result: &str) -> String {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(result) else {
        return result.to_string();
    };
    let mut changed = false;
    for k in ["resultType", "ttlMs", "cacheScope"] {
        changed |= obj.remove(k).is_some();
    }
    if let Some(Value::Object(meta)) = obj.get_mut("_meta") {
        changed |= meta.remove(key::SERVER_INFO).is_some();
        if meta.is_empty() {
            obj.remove("_meta");
        }
    }
    if changed {
        Value::Object(obj).to_string()
    } else {
        result.to_string()
    }
}

/// The daemon's `server/discover` result.
pub fn discover(capabilities: &Value, instructions: Option<&str>, hint: CacheHint) -> String {
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": MODERN_VERSIONS,
        "capabilities": capabilities,
        "ttlMs": hint.ttl_ms,
        "cacheScope": hint.scope_str(),
        "_meta": { key::SERVER_INFO: server_info() },
    });
    if let Some(i) = instructions {
        result["instructions"] = json!(i);
    }
    result.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn results_get_their_type_and_server_info() {
        let out = modern(r#"{"content":[{"type":"text","text":"a  b"}],"_meta":{"x":1}}"#);
        let r = v(&out);
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["_meta"]["x"], 1);
        assert_eq!(r["_meta"][key::SERVER_INFO]["name"], "stdioproxy");
        assert!(
            out.contains(r#""text":"a  b""#),
            "payload bytes kept: {out}"
        );
        let out = modern(r#"{"resultType":"input_required","requestState":"s"}"#);
        assert_eq!(v(&out)["resultType"], "input_required");
        assert_eq!(modern("null"), "null");
        let out = modern("{}");
        assert_eq!(v(&out)["resultType"], "complete");
    }

    #[test]
    fn lists_carry_the_combined_cache_hint() {
        let public = CacheHint {
            ttl_ms: 60_000,
            scope: Scope::Public,
        };
        let short = CacheHint {
            ttl_ms: 5_000,
            scope: Scope::Public,
        };
        assert_eq!(public.combine(short), short);
        assert_eq!(public.combine(CacheHint::UNKNOWN), CacheHint::UNKNOWN);
        let r = v(&modern_cacheable(r#"{"tools":[]}"#, public.combine(short)));
        assert_eq!(r["ttlMs"], 5000);
        assert_eq!(r["cacheScope"], "public");
        assert_eq!(r["resultType"], "complete");
        assert_eq!(
            CacheHint::of_result(r#"{"tools":[],"ttlMs":1500,"cacheScope":"public"}"#),
            Some(CacheHint {
                ttl_ms: 1500,
                scope: Scope::Public
            })
        );
        assert_eq!(
            CacheHint::of_result(r#"{"tools":[],"ttlMs":-1}"#),
            Some(CacheHint {
                ttl_ms: 0,
                scope: Scope::Private
            })
        );
        assert_eq!(CacheHint::of_result(r#"{"tools":[]}"#), None);
    }

    #[test]
    fn legacy_clients_see_no_modern_members() {
        let out = legacy(
            r#"{"content":[],"resultType":"complete","ttlMs":0,"cacheScope":"private","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"m"}}}"#,
        );
        assert_eq!(v(&out), json!({"content": []}));
        let kept =
            legacy(r#"{"content":[],"_meta":{"io.modelcontextprotocol/serverInfo":{},"k":2}}"#);
        assert_eq!(v(&kept), json!({"content": [], "_meta": {"k": 2}}));
        assert_eq!(legacy(r#"{"content": []}"#), r#"{"content": []}"#);
    }

    #[test]
    fn the_discover_result() {
        let r = v(&discover(
            &json!({"tools": {"listChanged": true}}),
            Some("hi"),
            CacheHint::UNKNOWN,
        ));
        assert_eq!(r["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(r["instructions"], "hi");
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["_meta"][key::SERVER_INFO]["name"], "stdioproxy");
    }
}
