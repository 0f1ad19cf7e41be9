//! The wire shapes of multi round-trip requests (MRTR), both ways.
//!
//! A modern server that needs input answers `tools/call`, `prompts/get` or
//! `resources/read` with
//! `{"resultType":"input_required","inputRequests":{"<key>":{"method":…,"params":…}},"requestState"?:…}`;
//! the client fulfils each embedded request and retries the call under a
//! new id with `inputResponses: {"<key>": <bare result>}` and the
//! `requestState` echoed byte for byte. These functions read and build
//! those shapes; who holds what between the rounds is elsewhere
//! ([`super::held`] for a legacy child's requests, the session for a modern
//! child's rounds).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::jsonrpc::{self, RawObject};

/// Methods a call may be answered `input_required` for.
pub fn may_require_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// Methods an embedded input request may have.
pub fn is_input_method(method: &str) -> bool {
    matches!(
        method,
        "sampling/createMessage" | "elicitation/create" | "roots/list"
    )
}

/// One embedded input request.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRequest {
    /// The server's key for it.
    pub key: String,
    /// `sampling/createMessage`, `elicitation/create` or `roots/list`.
    pub method: String,
    /// Its params (raw JSON), if any.
    pub params: Option<String>,
}

/// An `input_required` result, read.
#[derive(Clone, Debug)]
pub struct InputRequired {
    /// The embedded requests, in key order.
    pub requests: Vec<InputRequest>,
    /// The server's state to echo, raw JSON (a string), if any.
    pub request_state: Option<Box<RawValue>>,
}

/// Reads a result as `input_required`; `None` when it is another kind of
/// result (or not an object).
pub fn input_required(result: &str) -> Option<Result<InputRequired, String>> {
    let obj = RawObject::parse_str(result)?;
    if obj.get_str("resultType").as_deref() != Some("input_required") {
        return None;
    }
    let mut requests = Vec::new();
    if let Some(raw) = obj.get("inputRequests") {
        let Ok(map) = serde_json::from_str::<Map<String, Value>>(raw.get()) else {
            return Some(Err("inputRequests is not an object".into()));
        };
        for (key, req) in map {
            let Some(method) = req.get("method").and_then(Value::as_str) else {
                return Some(Err(format!("input request {key:?} has no method")));
            };
            if !is_input_method(method) {
                return Some(Err(format!(
                    "input request {key:?} has method {method:?}, which is not an input request"
                )));
            }
            requests.push(InputRequest {
                key,
                method: method.to_string(),
                params: req.get("params").map(Value::to_string),
            });
        }
    }
    let request_state = obj.get("requestState").map(|r| r.to_owned());
    if requests.is_empty() && request_state.is_none() {
        return Some(Err(
            "input_required result with neither inputRequests nor requestState".into(),
        ));
    }
    requests.sort_by(|a, b| a.key.cmp(&b.key));
    Some(Ok(InputRequired {
        requests,
        request_state,
    }))
}

/// Builds an `input_required` result embedding `requests` with `state`.
pub fn input_required_result(requests: &[InputRequest], state: &str) -> String {
    let mut map = String::from("{");
    for (i, r) in requests.iter().enumerate() {
        if i > 0 {
            map.push(',');
        }
        jsonrpc::push_json_str(&mut map, &r.key);
        map.push_str(":{\"method\":");
        jsonrpc::push_json_str(&mut map, &r.method);
        if let Some(p) = &r.params {
            map.push_str(",\"params\":");
            map.push_str(p);
        }
        map.push('}');
    }
    map.push('}');
    let mut out = String::from("{\"resultType\":\"input_required\",\"inputRequests\":");
    out.push_str(&map);
    out.push_str(",\"requestState\":");
    jsonrpc::push_json_str(&mut out, state);
    out.push('}');
    out
}

/// What a retry carries besides the call itself.
#[derive(Debug, Default)]
pub struct Retry {
    /// `inputResponses`, by key (raw JSON values).
    pub responses: Vec<(String, Box<RawValue>)>,
    /// `requestState`, decoded.
    pub state: Option<String>,
}

impl Retry {
    /// The response for `key`.
    pub fn response(&self, key: &str) -> Option<&RawValue> {
        self.responses
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }
}

/// Reads a call's `inputResponses` and `requestState`; `None` when it has
/// neither (a first round).
pub fn retry(params: Option<&RawValue>) -> Option<Result<Retry, String>> {
    let obj = params.and_then(RawObject::parse)?;
    let responses = obj.get("inputResponses");
    let state = obj.get("requestState");
    if responses.is_none() && state.is_none() {
        return None;
    }
    let mut retry = Retry::default();
    if let Some(raw) = responses {
        let Some(map) = RawObject::parse(raw) else {
            return Some(Err("inputResponses must be an object".into()));
        };
        let Ok(members) = serde_json::from_str::<Map<String, Value>>(raw.get()) else {
            return Some(Err("inputResponses must be an object".into()));
        };
        for key in members.keys() {
            if let Some(v) = map.get(key) {
                retry.responses.push((key.clone(), v.to_owned()));
            }
        }
    }
    if let Some(raw) = state {
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) => retry.state = Some(s),
            Err(_) => return Some(Err("requestState must be a string".into())),
        }
    }
    Some(Ok(retry))
}

/// [`retry`] of params held as text.
pub fn retry_of(params: &str) -> Option<Result<Retry, String>> {
    if !params.contains("inputResponses") && !params.contains("requestState") {
        return None;
    }
    let raw = serde_json::from_str::<&RawValue>(params).ok()?;
    retry(Some(raw))
}

/// The params of a retry of `original` (the first round's params) with
/// `responses` and the server's `state` echoed raw, for a modern child.
pub fn retry_params(
    original: &str,
    responses: &[(String, Box<RawValue>)],
    state: Option<&RawValue>,
) -> String {
    let Some(obj) = RawObject::parse_str(original) else {
        return original.to_string();
    };
    let mut map = String::from("{");
    for (i, (k, v)) in responses.iter().enumerate() {
        if i > 0 {
            map.push(',');
        }
        jsonrpc::push_json_str(&mut map, k);
        map.push(':');
        map.push_str(v.get());
    }
    map.push('}');
    let mut members: Vec<(&str, &str)> = vec![("inputResponses", &map)];
    if let Some(s) = state {
        members.push(("requestState", s.get()));
    }
    obj.to_string_with(&members)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"resultType":"input_required","inputRequests":{"llm":{"method":"sampling/createMessage","params":{"messages":[],"maxTokens":50}}},"_meta":{}}"#;

    #[test]
    fn reads_input_required_results() {
        let ir = input_required(SAMPLE).unwrap().unwrap();
        assert_eq!(ir.requests.len(), 1);
        assert_eq!(ir.requests[0].key, "llm");
        assert_eq!(ir.requests[0].method, "sampling/createMessage");
        assert!(ir.requests[0]
            .params
            .as_deref()
            .unwrap()
            .contains("maxTokens"));
        assert!(ir.request_state.is_none());
        assert!(input_required(r#"{"content":[]}"#).is_none());
        assert!(input_required(r#"{"resultType":"complete"}"#).is_none());
        assert!(input_required(r#"{"resultType":"input_required"}"#)
            .unwrap()
            .is_err());
        assert!(input_required(
            r#"{"resultType":"input_required","inputRequests":{"a":{"method":"tools/call"}}}"#
        )
        .unwrap()
        .is_err());
        let only_state = input_required(r#"{"resultType":"input_required","requestState":"s1"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(only_state.request_state.unwrap().get(), "\"s1\"");
    }

    #[test]
    fn builds_what_it_reads() {
        let reqs = vec![InputRequest {
            key: "sp-1".into(),
            method: "elicitation/create".into(),
            params: Some(r#"{"message":"m"}"#.into()),
        }];
        let out = input_required_result(&reqs, "sp1.1.1.1.1.ab");
        let back = input_required(&out).unwrap().unwrap();
        assert_eq!(back.requests, reqs);
        assert_eq!(back.request_state.unwrap().get(), "\"sp1.1.1.1.1.ab\"");
    }

    #[test]
    fn reads_and_builds_retries() {
        let p: Box<RawValue> = serde_json::from_str(r#"{"name":"x","inputResponses":{"a":{"action":"accept","content":{"n": 1}}},"requestState":"st"}"#).unwrap();
        let r = retry(Some(&p)).unwrap().unwrap();
        assert_eq!(r.state.as_deref(), Some("st"));
        assert_eq!(
            r.response("a").unwrap().get(),
            r#"{"action":"accept","content":{"n": 1}}"#
        );
        assert!(r.response("b").is_none());
        let first: Box<RawValue> = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert!(retry(Some(&first)).is_none());
        let bad: Box<RawValue> = serde_json::from_str(r#"{"requestState":5}"#).unwrap();
        assert!(retry(Some(&bad)).unwrap().is_err());

        let state: Box<RawValue> = serde_json::from_str(r#""opaque\u0041""#).unwrap();
        let out = retry_params(r#"{"name":"t","arguments":{}}"#, &r.responses, Some(&state));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["inputResponses"]["a"]["action"], "accept");
        assert!(
            out.contains(r#""requestState":"opaque\u0041""#),
            "echoed byte for byte: {out}"
        );
        assert_eq!(v["name"], "t");
    }
}
