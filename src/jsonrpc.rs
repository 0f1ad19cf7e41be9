//! JSON-RPC 2.0 envelopes on raw JSON.
//!
//! The proxy reads only the envelope (`id`, `method`, and whether there is a
//! `result` or `error`) and keeps every payload as borrowed raw JSON text, so a
//! message it only routes is never re-serialised: fields it does not know
//! (`_meta`, `structuredContent`, fields no spec has yet) pass through byte for
//! byte. Outgoing messages are assembled by concatenating raw parts.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Standard JSON-RPC error codes.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object (also: batches, which MCP no longer has).
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad params, unknown tool, stale cursor.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// stdioproxy: the server that owns the target is not ready (starting,
    /// restarting, failed or stopped); `data` names it and its state.
    pub const SERVER_UNAVAILABLE: i64 = -32001;
    /// stdioproxy: the server exited or closed stdout while the call was in
    /// flight.
    pub const SERVER_CRASHED: i64 = -32003;
    /// stdioproxy: the request timed out.
    pub const REQUEST_TIMEOUT: i64 = -32004;
    /// stdioproxy: the message is larger than the configured limit.
    pub const MESSAGE_TOO_LARGE: i64 = -32005;
    /// stdioproxy: the daemon already has `max_sessions` client sessions
    /// open; sent to a plain (hello-less) client before closing.
    pub const TOO_MANY_SESSIONS: i64 = -32006;
    /// No instance for this call: a per-client or per-workspace server at its
    /// `max_instances`, or a per-workspace server and a session without a
    /// workspace.
    pub const TOO_MANY_INSTANCES: i64 = -32007;
}

/// The envelope of any JSON-RPC message, borrowing from the line it was read
/// from. `id: null` reads as `None`.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// Request or response id, as raw JSON (string or number).
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// Method of a request or notification.
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    /// Params of a request or notification.
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    /// Result of a success response. `"result": null` is a result (JSON-RPC
    /// allows any value), so it reads as `Some("null")`, not `None`.
    #[serde(borrow, default, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    /// Error of an error response (`null` reads as `Some("null")` too).
    #[serde(borrow, default, deserialize_with = "present")]
    pub error: Option<&'a RawValue>,
}

/// A member that is present, whatever its value (`null` included). Absent
/// members are `None` through `#[serde(default)]`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// What an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`, no `method`.
    Response,
    /// None of the above.
    Invalid,
}

/// Why a line could not be read as a message.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (or not UTF-8).
    NotJson(String),
    /// A JSON array: a batch.
    Batch,
    /// JSON, but not an object.
    NotObject,
}

impl<'a> Envelope<'a> {
    /// Parses one line. The caller keeps the line alive while the envelope
    /// is used.
    pub fn parse(line: &'a [u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(line).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let first = text.trim_start().as_bytes().first().copied();
        match first {
            Some(b'[') => {
                return if serde_json::from_str::<&RawValue>(text).is_ok() {
                    Err(ParseError::Batch)
                } else {
                    Err(ParseError::NotJson("invalid JSON array".into()))
                }
            }
            Some(b'{') => {}
            _ => {
                return if serde_json::from_str::<&RawValue>(text).is_ok() {
                    Err(ParseError::NotObject)
                } else {
                    Err(ParseError::NotJson(describe_json_error(text)))
                }
            }
        }
        serde_json::from_str::<Envelope<'a>>(text).map_err(|e| {
            // A data error (e.g. `"method": 5`) can come before the syntax
            // error that makes the line not JSON at all (trailing junk).
            if e.is_data() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                ParseError::NotObject
            } else {
                ParseError::NotJson(e.to_string())
            }
        })
    }

    /// Classifies the envelope.
    pub fn kind(&self) -> Kind {
        match (&self.method, &self.id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, Some(_)) if self.result.is_some() || self.error.is_some() => Kind::Response,
            _ => Kind::Invalid,
        }
    }
}

fn describe_json_error(text: &str) -> String {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) => e.to_string(),
        Ok(_) => "not a JSON object".into(),
    }
}

/// Finds `"id":<string or number>` in the start of an oversized line (raw
/// JSON of the id), so the error for it can name its request.
pub fn recover_id(prefix: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(prefix);
    let at = text.find("\"id\"")?;
    let rest = text[at + 4..].trim_start().strip_prefix(':')?.trim_start();
    let mut de = serde_json::Deserializer::from_str(rest);
    let v: serde_json::Value = serde::Deserialize::deserialize(&mut de).ok()?;
    (v.is_string() || v.is_number()).then(|| v.to_string())
}

/// `{"jsonrpc":"2.0","id":<id>,"result":<result>}\n`
pub fn response(id: &str, result: &str) -> String {
    let mut s = String::with_capacity(40 + id.len() + result.len());
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(id);
    s.push_str(",\"result\":");
    s.push_str(result);
    s.push_str("}\n");
    s
}

/// `{"jsonrpc":"2.0","id":<id>,"error":<error>}\n` with a raw error object.
pub fn error_response_raw(id: &str, error: &str) -> String {
    let mut s = String::with_capacity(40 + id.len() + error.len());
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(id);
    s.push_str(",\"error\":");
    s.push_str(error);
    s.push_str("}\n");
    s
}

/// An error response. `id` is raw JSON; `None` writes `"id":null` (the id
/// could not be read).
pub fn error_response(
    id: Option<&str>,
    code: i64,
    message: &str,
    data: Option<serde_json::Value>,
) -> String {
    let mut err = serde_json::json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d;
    }
    error_response_raw(id.unwrap_or("null"), &err.to_string())
}

/// A request with a numeric id and raw params.
pub fn request(id: u64, method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(64 + params.map_or(0, str::len));
    let _ = write!(s, "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":");
    push_json_str(&mut s, method);
    if let Some(p) = params {
        s.push_str(",\"params\":");
        s.push_str(p);
    }
    s.push_str("}\n");
    s
}

/// A notification with raw params.
pub fn notification(method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(48 + params.map_or(0, str::len));
    s.push_str("{\"jsonrpc\":\"2.0\",\"method\":");
    push_json_str(&mut s, method);
    if let Some(p) = params {
        s.push_str(",\"params\":");
        s.push_str(p);
    }
    s.push_str("}\n");
    s
}

/// Appends `text` as a JSON string literal.
pub fn push_json_str(out: &mut String, text: &str) {
    // serde_json's string escaping is the reference; writing into a String
    // cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()));
}

/// A JSON object held as its members' raw values, in their original order,
/// for rewriting a few members without re-serialising the rest.
pub struct RawObject<'a> {
    source: &'a str,
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Collects an object's members in order, without parsing their values.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    /// Parses an object; `None` when `raw` is not an object.
    pub fn parse(raw: &'a RawValue) -> Option<Self> {
        Self::parse_str(raw.get())
    }

    /// Parses an object from text; `None` when it is not one.
    pub fn parse_str(text: &'a str) -> Option<Self> {
        serde_json::from_str::<Members<'a>>(text)
            .ok()
            .map(|m| Self {
                source: text,
                members: m.0,
            })
    }

    /// A member's raw value (the first, if a key is repeated).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// A string member.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// Each member's key and the byte range of its value in the object's
    /// text, in order.
    pub fn value_ranges(&self) -> impl Iterator<Item = (&str, std::ops::Range<usize>)> + '_ {
        self.members.iter().map(|(k, v)| {
            // A member value borrows from `source`: its offset is exact.
            let start = v.get().as_ptr() as usize - self.source.as_ptr() as usize;
            (k.as_ref(), start..start + v.get().len())
        })
    }

    /// The object's text with some members' values replaced (raw JSON) or
    /// members added (at the end). Everything else is copied from the
    /// original text byte for byte, whitespace and order included: the
    /// replaced values are spliced in where the old ones were.
    pub fn to_string_with(&self, replace: &[(&str, &str)]) -> String {
        let extra: usize = replace.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = String::with_capacity(self.source.len() + extra);
        let mut copied = 0;
        let mut present = vec![false; replace.len()];
        for (k, v) in &self.members {
            let Some(i) = replace.iter().position(|(rk, _)| *rk == k.as_ref()) else {
                continue;
            };
            present[i] = true;
            // A member value borrows from `source`: its offset is exact.
            let start = v.get().as_ptr() as usize - self.source.as_ptr() as usize;
            out.push_str(&self.source[copied..start]);
            out.push_str(replace[i].1);
            copied = start + v.get().len();
        }
        let close = self.source.rfind('}').unwrap_or(self.source.len());
        out.push_str(&self.source[copied..close]);
        let mut empty = self.members.is_empty();
        for ((k, v), present) in replace.iter().zip(present) {
            if present {
                continue;
            }
            if !empty {
                out.push(',');
            }
            empty = false;
            push_json_str(&mut out, k);
            out.push(':');
            out.push_str(v);
        }
        out.push_str(&self.source[close..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn classifies() {
        let l = br#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#;
        let e = Envelope::parse(l).unwrap();
        assert_eq!(e.kind(), Kind::Request);
        assert_eq!(e.id.unwrap().get(), "\"a\"");
        let e = Envelope::parse(br#"{"method":"notifications/initialized"}"#).unwrap();
        assert_eq!(e.kind(), Kind::Notification);
        let e = Envelope::parse(br#"{"result":{},"jsonrpc":"2.0","id":3}"#).unwrap();
        assert_eq!(e.kind(), Kind::Response);
        assert_eq!(Envelope::parse(b"{}").unwrap().kind(), Kind::Invalid);
    }

    #[test]
    fn recovers_ids_from_truncated_lines() {
        assert_eq!(
            recover_id(br#"{"jsonrpc":"2.0","id":17,"method":"x","params":{"a":"xxxx"#).as_deref(),
            Some("17")
        );
        assert_eq!(
            recover_id(br#"{"id": "ab\"c", "params"#).as_deref(),
            Some(r#""ab\"c""#)
        );
        assert_eq!(recover_id(br#"{"params":{"x":"#), None);
    }

    #[test]
    fn a_null_result_is_still_a_response() {
        // Before, `"result": null` read as no result, so a child answering
        // null never answered its caller (who waited for request_timeout).
        let e = Envelope::parse(br#"{"jsonrpc":"2.0","id":3,"result":null}"#).unwrap();
        assert_eq!(e.kind(), Kind::Response);
        assert_eq!(e.result.map(RawValue::get), Some("null"));
        let e = Envelope::parse(br#"{"jsonrpc":"2.0","id":3,"error":null}"#).unwrap();
        assert_eq!(e.kind(), Kind::Response);
        let e = Envelope::parse(br#"{"jsonrpc":"2.0","id":3}"#).unwrap();
        assert_eq!(e.kind(), Kind::Invalid);
        assert!(e.result.is_none());
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            Envelope::parse(b"nope"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::parse(b"{\"a\":"),
            Err(ParseError::NotJson(_))
        ));
        assert_eq!(Envelope::parse(b"[1,2]").unwrap_err(), ParseError::Batch);
        assert_eq!(Envelope::parse(b"42").unwrap_err(), ParseError::NotObject);
        assert_eq!(
            Envelope::parse(b"{\"method\":5}").unwrap_err(),
            ParseError::NotObject
        );
        assert!(matches!(
            Envelope::parse(&[0xff, 0xfe]),
            Err(ParseError::NotJson(_))
        ));
        // Found by the envelope property test: a bad member followed by
        // trailing junk was "not an object" instead of "not JSON".
        assert!(matches!(
            Envelope::parse(b"{\"method\":false}:"),
            Err(ParseError::NotJson(_))
        ));
    }

    #[test]
    fn builders_produce_valid_json() {
        let v: Value = serde_json::from_str(&response("\"x\"", "{\"a\":1}")).unwrap();
        assert_eq!(v, json!({"jsonrpc":"2.0","id":"x","result":{"a":1}}));
        let v: Value = serde_json::from_str(&error_response(None, -32700, "bad", None)).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], -32700);
        let v: Value = serde_json::from_str(&request(7, "tools/call", Some("{}"))).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}})
        );
        let v: Value = serde_json::from_str(&notification("n\"x", None)).unwrap();
        assert_eq!(v["method"], "n\"x");
    }

    #[test]
    fn raw_object_rewrites_members_only() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"name":"a__b","arguments":{"x":[1, 2]},"_meta":{"k":1}}"#)
                .unwrap();
        let o = RawObject::parse(&raw).unwrap();
        assert_eq!(o.get_str("name").as_deref(), Some("a__b"));
        let out = o.to_string_with(&[("name", "\"b\"")]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"name":"b","arguments":{"x":[1,2]},"_meta":{"k":1}})
        );
        assert!(
            out.contains("[1, 2]"),
            "untouched members keep their bytes: {out}"
        );
        assert_eq!(
            out, r#"{"name":"b","arguments":{"x":[1, 2]},"_meta":{"k":1}}"#,
            "and their order; a replaced member stays in place"
        );
        let added = o.to_string_with(&[("extra", "1e999")]);
        assert!(added.ends_with(r#","extra":1e999}"#), "{added}");
        // Whitespace survives too, and an empty object takes an addition.
        let spaced: Box<RawValue> =
            serde_json::from_str("{ \"a\" : 1 , \"name\" : \"x\" }").unwrap();
        let o = RawObject::parse(&spaced).unwrap();
        assert_eq!(
            o.to_string_with(&[("name", "\"y\""), ("z", "2")]),
            "{ \"a\" : 1 , \"name\" : \"y\" ,\"z\":2}"
        );
        let empty: Box<RawValue> = serde_json::from_str("{ }").unwrap();
        let o = RawObject::parse(&empty).unwrap();
        assert_eq!(o.to_string_with(&[("k", "1")]), "{ \"k\":1}");
    }
}
