//! A modern request's `_meta`: the protocol version, the client's
//! capabilities (for this request only: the modern era forbids inferring
//! them from earlier requests), who the client is, and the log level it
//! wants for this request.
//!
//! Validation follows the order the SDKs use, first failure wins: `_meta` is
//! an object carrying both required keys (else -32602 naming what is
//! missing), the version is a string (else -32602), the version is served
//! (else -32022 with `data.supported` and `data.requested`).

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{code, key, MODERN_VERSIONS};
use crate::jsonrpc::{self, RawObject};
use crate::loglevel::Level;

/// What a valid modern request said about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestMeta {
    /// The protocol revision (one of [`MODERN_VERSIONS`]).
    pub version: String,
    /// The client's capabilities for this request.
    pub capabilities: Value,
    /// `clientInfo`, when given.
    pub client_info: Option<Value>,
    /// The most verbose log level wanted for this request; `None` means the
    /// client wants no log messages for it.
    pub log_level: Option<Level>,
}

/// What the client may be asked, from a request's capabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asks {
    /// `sampling`
    pub sampling: bool,
    /// form-mode elicitation (also what a bare `elicitation: {}` means)
    pub elicitation_form: bool,
    /// `elicitation.url`
    pub elicitation_url: bool,
    /// `roots`
    pub roots: bool,
}

impl Asks {
    /// From a capabilities object (legacy `initialize` or modern `_meta`).
    pub fn from_capabilities(caps: &Value) -> Self {
        let elicitation = caps.get("elicitation").filter(|e| e.is_object());
        Self {
            sampling: caps.get("sampling").is_some_and(Value::is_object),
            elicitation_form: elicitation
                .is_some_and(|e| e.get("form").is_some() || e.get("url").is_none()),
            elicitation_url: elicitation.is_some_and(|e| e.get("url").is_some()),
            roots: caps.get("roots").is_some_and(Value::is_object),
        }
    }

    /// Whether the client may be sent an input request of `method` (with
    /// its params, for the elicitation mode), and if not, the capability it
    /// lacks (as the `requiredCapabilities` object of a -32021 error).
    pub fn allows(&self, method: &str, params: Option<&Value>) -> Result<(), Value> {
        let url = params.and_then(|p| p.get("mode")).and_then(Value::as_str) == Some("url");
        let (ok, needed) = match method {
            "sampling/createMessage" => (self.sampling, json!({ "sampling": {} })),
            "roots/list" => (self.roots, json!({ "roots": {} })),
            "elicitation/create" if url => (
                self.elicitation_url,
                json!({ "elicitation": { "url": {} } }),
            ),
            "elicitation/create" => (
                self.elicitation_form,
                json!({ "elicitation": { "form": {} } }),
            ),
            _ => (false, json!({})),
        };
        if ok {
            Ok(())
        } else {
            Err(needed)
        }
    }
}

impl RequestMeta {
    /// What the client may be asked while serving this request.
    pub fn asks(&self) -> Asks {
        Asks::from_capabilities(&self.capabilities)
    }
}

/// Why a modern request's `_meta` was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaError {
    /// No `params._meta` object at all.
    NoMeta,
    /// `_meta` lacks these required keys.
    Missing(Vec<&'static str>),
    /// A member has the wrong type.
    Malformed(String),
    /// The version is not one the daemon serves.
    Unsupported(String),
}

impl MetaError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            MetaError::Unsupported(_) => code::UNSUPPORTED_VERSION,
            _ => jsonrpc::code::INVALID_PARAMS,
        }
    }

    /// The error message, naming what is wrong.
    pub fn message(&self) -> String {
        match self {
            MetaError::NoMeta => format!(
                "params._meta must be an object carrying the required '{}' and '{}' keys (2026-07-28 requests carry them on every request)",
                key::PROTOCOL_VERSION,
                key::CLIENT_CAPABILITIES
            ),
            MetaError::Missing(keys) => format!(
                "params._meta is missing the required key(s): {}",
                keys.join(", ")
            ),
            MetaError::Malformed(what) => format!("Invalid params._meta: {what}"),
            MetaError::Unsupported(v) => format!("Unsupported protocol version: {v}"),
        }
    }

    /// The error's `data`.
    pub fn data(&self) -> Option<Value> {
        match self {
            MetaError::Unsupported(v) => {
                Some(json!({ "supported": MODERN_VERSIONS, "requested": v }))
            }
            MetaError::Missing(keys) => Some(json!({ "missing": keys })),
            _ => None,
        }
    }

    /// The error response for request `id` (raw JSON).
    pub fn response(&self, id: &str) -> String {
        jsonrpc::error_response(Some(id), self.code(), &self.message(), self.data())
    }
}

/// Reads and validates a modern request's `params._meta`.
pub fn parse(params: Option<&RawValue>) -> Result<RequestMeta, MetaError> {
    let meta = params
        .and_then(RawObject::parse)
        .and_then(|p| p.get("_meta"))
        .and_then(RawObject::parse)
        .ok_or(MetaError::NoMeta)?;
    let missing: Vec<&'static str> = [key::PROTOCOL_VERSION, key::CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| meta.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(MetaError::Missing(missing));
    }
    let value = |k: &str| {
        meta.get(k)
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
    };
    let Some(Value::String(version)) = value(key::PROTOCOL_VERSION) else {
        return Err(MetaError::Malformed(format!(
            "'{}' must be a string",
            key::PROTOCOL_VERSION
        )));
    };
    let capabilities = value(key::CLIENT_CAPABILITIES).unwrap_or(Value::Null);
    if !capabilities.is_object() {
        return Err(MetaError::Malformed(format!(
            "'{}' must be an object",
            key::CLIENT_CAPABILITIES
        )));
    }
    if !MODERN_VERSIONS.contains(&version.as_str()) {
        return Err(MetaError::Unsupported(version));
    }
    let log_level = match value(key::LOG_LEVEL) {
        None | Some(Value::Null) => None,
        Some(Value::String(l)) => Some(Level::parse(&l).ok_or_else(|| {
            MetaError::Malformed(format!(
                "'{}' must be one of debug, info, notice, warning, error, critical, alert, emergency",
                key::LOG_LEVEL
            ))
        })?),
        Some(_) => {
            return Err(MetaError::Malformed(format!(
                "'{}' must be a string",
                key::LOG_LEVEL
            )))
        }
    };
    Ok(RequestMeta {
        version,
        capabilities,
        client_info: value(key::CLIENT_INFO),
        log_level,
    })
}

/// `params` with the reserved modern keys removed from `_meta` (and `_meta`
/// dropped when nothing else is left in it), for a legacy child, which
/// would not know them. Other `_meta` members (`progressToken`, vendor keys)
/// stay, byte for byte.
pub fn strip_for_legacy(params: &str) -> String {
    let Some(obj) = RawObject::parse_str(params) else {
        return params.to_string();
    };
    let Some(meta) = obj.get("_meta") else {
        return params.to_string();
    };
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(meta.get()) else {
        return params.to_string();
    };
    let before = m.len();
    m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    if m.len() == before {
        return params.to_string();
    }
    if m.is_empty() {
        let Ok(Value::Object(mut all)) = serde_json::from_str::<Value>(params) else {
            return params.to_string();
        };
        all.remove("_meta");
        return Value::Object(all).to_string();
    }
    obj.to_string_with(&[("_meta", &Value::Object(m).to_string())])
}

/// `params` with `_meta` carrying the modern envelope for a modern child:
/// `version`, the capabilities the daemon declares for that child, and the
/// daemon as client. Existing `_meta` members other than the reserved
/// envelope keys are kept, and so is a log level the client asked for
/// (unless `log_level` overrides it).
pub fn with_envelope(
    params: Option<&str>,
    capabilities: &Value,
    log_level: Option<Level>,
) -> String {
    let params = params.unwrap_or("{}");
    let Some(obj) = RawObject::parse_str(params) else {
        return params.to_string();
    };
    let mut meta = obj
        .get("_meta")
        .and_then(|m| serde_json::from_str::<serde_json::Map<String, Value>>(m.get()).ok())
        .unwrap_or_default();
    let client_level = meta.get(key::LOG_LEVEL).cloned();
    meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    if let (None, Some(l)) = (log_level, client_level) {
        meta.insert(key::LOG_LEVEL.into(), l);
    }
    meta.insert(key::PROTOCOL_VERSION.into(), json!(super::MODERN_VERSION));
    meta.insert(key::CLIENT_CAPABILITIES.into(), capabilities.clone());
    meta.insert(
        key::CLIENT_INFO.into(),
        json!({ "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") }),
    );
    if let Some(l) = log_level {
        meta.insert(key::LOG_LEVEL.into(), json!(l.as_str()));
    }
    obj.to_string_with(&[("_meta", &Value::Object(meta).to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    const GOOD: &str = r#"{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"io.modelcontextprotocol/logLevel":"warning","progressToken":3}}"#;

    #[test]
    fn reads_a_valid_envelope() {
        let m = parse(Some(&p(GOOD))).unwrap();
        assert_eq!(m.version, "2026-07-28");
        assert_eq!(m.capabilities, json!({"sampling": {}}));
        assert_eq!(m.client_info, Some(json!({"name": "c", "version": "1"})));
        assert_eq!(m.log_level, Some(Level::Warning));
        assert!(m.asks().sampling && !m.asks().elicitation_form);
    }

    #[test]
    fn names_what_is_missing() {
        let e = parse(None).unwrap_err();
        assert_eq!(e, MetaError::NoMeta);
        assert_eq!(e.code(), -32602);
        assert!(
            e.message().contains(key::PROTOCOL_VERSION),
            "{}",
            e.message()
        );
        let e = parse(Some(&p(
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        )))
        .unwrap_err();
        assert_eq!(e, MetaError::Missing(vec![key::CLIENT_CAPABILITIES]));
        assert!(e.message().contains(key::CLIENT_CAPABILITIES));
        let e = parse(Some(&p(r#"{"_meta":{"progressToken":1}}"#))).unwrap_err();
        assert_eq!(
            e,
            MetaError::Missing(vec![key::PROTOCOL_VERSION, key::CLIENT_CAPABILITIES])
        );
        let e = parse(Some(&p(r#"{"_meta":5}"#))).unwrap_err();
        assert_eq!(e, MetaError::NoMeta);
    }

    #[test]
    fn refuses_unknown_versions_with_the_supported_list() {
        let e = parse(Some(&p(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"1900-01-01","io.modelcontextprotocol/clientCapabilities":{}}}"#))).unwrap_err();
        assert_eq!(e.code(), -32022);
        assert_eq!(
            e.data(),
            Some(json!({"supported": ["2026-07-28"], "requested": "1900-01-01"}))
        );
        let line: Value = serde_json::from_str(&e.response("7")).unwrap();
        assert_eq!(line["id"], 7);
        assert_eq!(line["error"]["data"]["supported"][0], "2026-07-28");
        // A non-string version is a shape error, not a negotiation outcome.
        let e = parse(Some(&p(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":5,"io.modelcontextprotocol/clientCapabilities":{}}}"#))).unwrap_err();
        assert_eq!(e.code(), -32602);
        let e = parse(Some(&p(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/logLevel":"loud"}}"#))).unwrap_err();
        assert!(matches!(e, MetaError::Malformed(_)));
    }

    #[test]
    fn asks_follow_the_capabilities() {
        let a = Asks::from_capabilities(&json!({"elicitation": {}}));
        assert!(a.elicitation_form && !a.elicitation_url && !a.sampling);
        assert!(a
            .allows("elicitation/create", Some(&json!({"message": "m"})))
            .is_ok());
        assert_eq!(
            a.allows("elicitation/create", Some(&json!({"mode": "url"})))
                .unwrap_err(),
            json!({"elicitation": {"url": {}}})
        );
        assert_eq!(
            a.allows("sampling/createMessage", None).unwrap_err(),
            json!({"sampling": {}})
        );
        let a = Asks::from_capabilities(&json!({"elicitation": {"url": {}}, "roots": {}}));
        assert!(!a.elicitation_form && a.elicitation_url && a.roots);
    }

    #[test]
    fn strips_and_adds_the_envelope() {
        let stripped = strip_for_legacy(GOOD);
        let v: Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(v, json!({"name": "x", "_meta": {"progressToken": 3}}));
        let only = r#"{"a":1,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#;
        assert_eq!(strip_for_legacy(only), r#"{"a":1}"#);
        assert_eq!(
            strip_for_legacy(r#"{"a": 1}"#),
            r#"{"a": 1}"#,
            "untouched bytes"
        );
        let added = with_envelope(
            Some(r#"{"name":"t","_meta":{"progressToken":"sp-1"}}"#),
            &json!({"sampling": {}}),
            None,
        );
        let m = parse(Some(&p(&added))).unwrap();
        assert_eq!(m.capabilities, json!({"sampling": {}}));
        let v: Value = serde_json::from_str(&added).unwrap();
        assert_eq!(v["_meta"]["progressToken"], "sp-1");
        assert_eq!(v["name"], "t");
        assert!(parse(Some(&p(&with_envelope(
            None,
            &json!({}),
            Some(Level::Info)
        ))))
        .is_ok());
    }
}
