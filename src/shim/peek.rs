//! Reading just enough of one JSON-RPC line to route it: its `id` and its
//! `method`, borrowed from the line (no copy, nothing re-encoded).
//!
//! The shim forwards the original bytes of every message; this is only how
//! it learns what a line is. A line that is not a JSON object (garbage, a
//! batch) is "unknown": forwarded as it is and left to the daemon to answer.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// What a line is, as far as the shim's bookkeeping cares.
#[derive(Debug)]
pub enum Line<'a> {
    /// A request: `id` and `method`.
    Request {
        id: &'a RawValue,
        method: Cow<'a, str>,
    },
    /// A notification: `method` and no `id`.
    Notification { method: Cow<'a, str> },
    /// A response: `id` and no `method`.
    Response { id: &'a RawValue },
    /// Anything else (not JSON, not an object, `id: null`, a batch).
    Unknown,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

impl<'a> Line<'a> {
    /// Classifies one line (its trailing newline may be included).
    pub fn peek(line: &'a [u8]) -> Line<'a> {
        match serde_json::from_slice::<Peek<'a>>(line) {
            Ok(Peek {
                id: Some(id),
                method: Some(method),
            }) => Line::Request { id, method },
            Ok(Peek {
                id: None,
                method: Some(method),
            }) => Line::Notification { method },
            Ok(Peek {
                id: Some(id),
                method: None,
            }) => Line::Response { id },
            _ => Line::Unknown,
        }
    }
}

/// The `params` of a message, raw.
#[derive(Deserialize)]
struct WithParams<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// The raw `params` text of a message, if it has one.
pub fn params(line: &[u8]) -> Option<String> {
    let p: WithParams<'_> = serde_json::from_slice(line).ok()?;
    p.params.map(|p| p.get().to_string())
}

#[derive(Deserialize)]
struct Uri {
    uri: String,
}

/// `params.uri` of a `resources/subscribe` or `unsubscribe` params text.
pub fn uri(params: &str) -> Option<String> {
    serde_json::from_slice::<Uri>(params.as_bytes())
        .ok()
        .map(|u| u.uri)
}

#[derive(Deserialize)]
struct Cancelled<'a> {
    #[serde(borrow, rename = "requestId")]
    request_id: &'a RawValue,
}

/// `params.requestId` (raw) of a `notifications/cancelled` line.
pub fn cancelled_id(line: &[u8]) -> Option<String> {
    let params = params(line)?;
    let c: Cancelled<'_> = serde_json::from_slice(params.as_bytes()).ok()?;
    Some(c.request_id.get().to_string())
}

/// Where `part` (a sub-slice borrowed from `line`) starts in `line`.
pub fn offset_in(line: &[u8], part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    (start + part.len() <= line.len()).then_some(start)
}

/// `line` with the bytes of `old` (a sub-slice of it) replaced by `new`.
pub fn splice(line: &[u8], old: &str, new: &str) -> Vec<u8> {
    let Some(at) = offset_in(line, old) else {
        return line.to_vec();
    };
    let mut out = Vec::with_capacity(line.len() + new.len());
    out.extend_from_slice(&line[..at]);
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&line[at + old.len()..]);
    out
}

#[derive(Deserialize)]
struct WithError<'a> {
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
}

/// The error message of a response, `None` when it is not an error.
pub fn error_message(line: &[u8]) -> Option<String> {
    let e = serde_json::from_slice::<WithError<'_>>(line).ok()?.error?;
    Some(
        serde_json::from_slice::<ErrorObject>(e.get().as_bytes())
            .map(|o| o.message)
            .unwrap_or_else(|_| e.get().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert!(matches!(
            Line::peek(br#"{"jsonrpc":"2.0","id":"a\"b","method":"x/y"}"#),
            Line::Request { id, method } if id.get() == r#""a\"b""# && method == "x/y"
        ));
        assert!(matches!(
            Line::peek(b"{\"method\":\"n\"}\n"),
            Line::Notification { .. }
        ));
        assert!(matches!(
            Line::peek(br#"{"id":7,"result":{}}"#),
            Line::Response { id } if id.get() == "7"
        ));
        assert!(matches!(
            Line::peek(br#"{"id":null,"error":{}}"#),
            Line::Unknown
        ));
        assert!(matches!(Line::peek(b"[1,2]"), Line::Unknown));
        assert!(matches!(Line::peek(b"nope"), Line::Unknown));
    }

    #[test]
    fn splices_the_id_only() {
        let line = br#"{"id" : 12,"method":"ping"}"#;
        let Line::Request { id, .. } = Line::peek(line) else {
            panic!("not a request")
        };
        assert_eq!(
            splice(line, id.get(), "\"x\""),
            br#"{"id" : "x","method":"ping"}"#.to_vec()
        );
    }

    #[test]
    fn reads_params() {
        let line = br#"{"method":"notifications/cancelled","params":{"requestId":"r1"}}"#;
        assert_eq!(cancelled_id(line).as_deref(), Some("\"r1\""));
        assert_eq!(
            uri(&params(br#"{"params":{"uri":"file:///a"}}"#).unwrap()).as_deref(),
            Some("file:///a")
        );
    }
}
