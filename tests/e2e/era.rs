//! The 2026-07-28 (modern) era through the real daemon and shim: sessions
//! opened by `server/discover` or a `_meta`-carrying request, per-request
//! `_meta` validation, result decoration, `subscriptions/listen`, per-request
//! log levels, and the MRTR bridge to legacy children. Raw JSON-RPC clients,
//! so every byte the daemon owes a modern client is checked; the SDK clients
//! are in `era_interop`.

use serde_json::{json, Value};

use crate::support::*;

pub const MODERN: &str = "2026-07-28";

/// The `_meta` a modern request carries.
pub fn modern_meta(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "e2e-modern", "version": "1"},
    })
}

/// `params` with the modern `_meta` merged in.
pub fn modern(mut params: Value, capabilities: Value) -> Value {
    let meta = modern_meta(capabilities);
    match params.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(m) => m.extend(meta.as_object().cloned().unwrap_or_default()),
        None => params["_meta"] = meta,
    }
    params
}

fn server_info(result: &Value) -> &Value {
    &result["_meta"]["io.modelcontextprotocol/serverInfo"]
}

fn one_fixture(env: &Env) -> Daemon {
    let d = env.start(&fixture_server("fx", &[]));
    d.wait_ready(&["fx"]);
    d
}

#[test]
fn discover_opens_a_modern_session_with_decorated_results() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    let r = c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    let result = &r["result"];
    assert_eq!(result["supportedVersions"], json!([MODERN]), "{r}");
    assert_eq!(result["resultType"], "complete");
    assert_eq!(server_info(result)["name"], "stdioproxy");
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
    assert!(
        result["capabilities"].get("logging").is_none(),
        "no logging/setLevel: {r}"
    );
    assert!(
        result["ttlMs"].is_u64() && result["cacheScope"].is_string(),
        "{r}"
    );

    let r = c.request("tools/list", modern(json!({}), json!({})));
    let result = &r["result"];
    assert_eq!(result["resultType"], "complete", "{r}");
    assert_eq!(server_info(result)["name"], "stdioproxy");
    assert_eq!(result["ttlMs"], 0, "a legacy child gives no TTL: {r}");
    assert_eq!(result["cacheScope"], "private");
    let names: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"fx__echo"), "{names:?}");

    let r = c.request(
        "tools/call",
        modern(
            json!({"name": "fx__add", "arguments": {"a": 2, "b": 3}}),
            json!({}),
        ),
    );
    assert_eq!(r["result"]["content"][0]["text"], "5", "{r}");
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(server_info(&r["result"])["name"], "stdioproxy");
    // The child saw no modern envelope: it is legacy.
    let r = c.request(
        "tools/call",
        modern(
            json!({"name": "fx__client_capabilities", "arguments": {}}),
            json!({}),
        ),
    );
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
}

#[test]
fn a_request_with_modern_meta_opens_a_modern_session_without_discover() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    let r = c.request("tools/list", modern(json!({}), json!({})));
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    // A modern session cannot switch eras.
    let r = c.request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}),
    );
    assert_eq!(r["error"]["code"], -32600, "{r}");
}

#[test]
fn modern_requests_are_validated_one_by_one() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    // No _meta: -32602 naming both keys.
    let r = c.request("tools/list", json!({}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("io.modelcontextprotocol/protocolVersion"),
        "{msg}"
    );
    assert!(
        msg.contains("io.modelcontextprotocol/clientCapabilities"),
        "{msg}"
    );
    // One key missing: named.
    let r = c.request(
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}),
    );
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clientCapabilities"),
        "{r}"
    );
    // An unknown version: -32022 with the supported list.
    let r = c.request(
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "1900-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}),
    );
    assert_eq!(r["error"]["code"], -32022, "{r}");
    assert_eq!(r["error"]["data"]["supported"], json!([MODERN]));
    assert_eq!(r["error"]["data"]["requested"], "1900-01-01");
    // Legacy-only requests: -32600.
    for method in ["ping", "logging/setLevel", "resources/subscribe"] {
        let r = c.request(
            method,
            modern(json!({"level": "info", "uri": "x://y"}), json!({})),
        );
        assert_eq!(r["error"]["code"], -32600, "{method}: {r}");
    }
    // The session still serves.
    let r = c.request("tools/list", modern(json!({}), json!({})));
    assert!(r["result"]["tools"].is_array(), "{r}");
}

#[test]
fn a_legacy_session_cannot_switch_to_modern() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::initialized(&env.socket);
    let r = c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    assert_eq!(r["error"]["code"], -32600, "{r}");
    // And its results stay legacy-shaped.
    let r = c.request("tools/list", json!({}));
    assert!(r["result"].get("resultType").is_none(), "{r}");
    let r = c.request("ping", json!({}));
    assert_eq!(r["result"], json!({}));
}

#[test]
fn progress_and_cancellation_on_a_modern_session() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    let mut params = modern(
        json!({"name": "fx__progress", "arguments": {"steps": 3, "ms": 5}}),
        json!({}),
    );
    params["_meta"]["progressToken"] = json!("tok");
    let r = c.request("tools/call", params);
    assert_eq!(r["result"]["content"][0]["text"], "done 3", "{r}");
    let progress: Vec<Value> = c
        .received()
        .into_iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{progress:?}");
    assert!(progress
        .iter()
        .all(|p| p["params"]["progressToken"] == "tok"));

    let id = c.send_request(
        "tools/call",
        modern(
            json!({"name": "fx__sleep", "arguments": {"ms": 60000}}),
            json!({}),
        ),
    );
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "enough"}}));
    let r = c.request(
        "tools/call",
        modern(json!({"name": "fx__cancelled", "arguments": {}}), json!({})),
    );
    // The fixture lists the upstream ids it was told were cancelled.
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let cancelled: Vec<u64> = serde_json::from_str(text).unwrap_or_default();
    assert_eq!(cancelled.len(), 1, "the child got the cancellation: {r}");
    assert!(
        !c.received().iter().any(|m| m.get("id") == Some(&id)),
        "no answer to a cancelled request"
    );
}

#[test]
fn log_messages_follow_each_requests_log_level() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    // No logLevel: no log messages for this request.
    let r = c.request(
        "tools/call",
        modern(
            json!({"name": "fx__log", "arguments": {"level": "error", "data": "quiet"}}),
            json!({}),
        ),
    );
    assert!(r.get("result").is_some(), "{r}");
    // logLevel warning: an error passes, an info does not.
    let mut params = modern(
        json!({"name": "fx__log", "arguments": {"level": "error", "data": "loud"}}),
        json!({}),
    );
    params["_meta"]["io.modelcontextprotocol/logLevel"] = json!("warning");
    c.request("tools/call", params.clone());
    params["arguments"] = json!({"level": "info", "data": "chatty"});
    c.request("tools/call", params);
    let logs: Vec<String> = c
        .received()
        .into_iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["data"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        logs,
        vec!["loud"],
        "only the error of the request that asked for warning and above"
    );
}

#[test]
fn several_listens_per_session_get_tagged_list_changes() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    let tools = c.send_request(
        "subscriptions/listen",
        modern(
            json!({"notifications": {"toolsListChanged": true}}),
            json!({}),
        ),
    );
    let ack = c.notification("notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], tools,
        "{ack}"
    );
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    let both = c.send_request(
        "subscriptions/listen",
        modern(
            json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true}}),
            json!({}),
        ),
    );
    c.notification("notifications/subscriptions/acknowledged");
    c.request(
        "tools/call",
        modern(
            json!({"name": "fx__add_tool", "arguments": {"name": "fresh"}}),
            json!({}),
        ),
    );
    let mut tagged = Vec::new();
    for _ in 0..2 {
        let n = c.notification("notifications/tools/list_changed");
        tagged.push(n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].clone());
    }
    tagged.sort_by_key(|v| v.to_string());
    let mut want = vec![tools.clone(), both.clone()];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(tagged, want);
    // Cancelling one listen ends it: its request is answered, the other stays.
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": tools}}));
    let r = c.response(&tools);
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    c.request(
        "tools/call",
        modern(
            json!({"name": "fx__add_tool", "arguments": {"name": "fresher"}}),
            json!({}),
        ),
    );
    let n = c.notification("notifications/tools/list_changed");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        both
    );
    // A session that did not listen gets no list_changed at all.
    let mut quiet = Client::connect(&env.socket);
    quiet.request("tools/list", modern(json!({}), json!({})));
    c.request(
        "tools/call",
        modern(
            json!({"name": "fx__add_tool", "arguments": {"name": "third"}}),
            json!({}),
        ),
    );
    c.notification("notifications/tools/list_changed");
    quiet.request("tools/list", modern(json!({}), json!({})));
    assert!(
        !quiet
            .received()
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "no listen, no list_changed"
    );
}

/// Calls `fx__ask` (the fixture sends `method` to "the client" and answers
/// with the response it got) on a modern session declaring `caps`; returns
/// the first round's response.
fn ask(c: &mut Client, method: &str, caps: Value) -> (Value, Value) {
    let params = modern(
        json!({"name": "fx__ask", "arguments": {"method": method, "params": {"message": "name?", "requestedSchema": {"type": "object"}, "messages": [], "maxTokens": 5}}}),
        caps,
    );
    let r = c.request("tools/call", params.clone());
    (r, params)
}

fn retry(params: &Value, first: &Value, answer: Value) -> Value {
    let result = &first["result"];
    let key = result["inputRequests"]
        .as_object()
        .expect("inputRequests")
        .keys()
        .next()
        .expect("a key")
        .clone();
    let mut p = params.clone();
    p["inputResponses"] = json!({ key: answer });
    p["requestState"] = result["requestState"].clone();
    p
}

#[test]
fn mrtr_bridge_holds_a_legacy_childs_request_until_the_retry() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    let (first, params) = ask(&mut c, "elicitation/create", json!({"elicitation": {}}));
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let (_, req) = result["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(req["method"], "elicitation/create", "{first}");
    assert_eq!(req["params"]["message"], "name?");
    assert!(
        result["requestState"].as_str().unwrap().starts_with("sp1."),
        "{first}"
    );
    assert_eq!(server_info(result)["name"], "stdioproxy");
    let answer = json!({"action": "accept", "content": {"name": "Ada"}});
    let r = c.request("tools/call", retry(&params, &first, answer.clone()));
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let got: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        got["result"], answer,
        "the child got the client's answer: {r}"
    );
    // The same state again: the round is over.
    let r = c.request(
        "tools/call",
        retry(&params, &first, json!({"action": "decline"})),
    );
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

#[test]
fn mrtr_retries_with_forged_or_foreign_state_are_refused_and_logged() {
    let env = Env::new();
    let d = one_fixture(&env);
    let mut a = Client::connect(&env.socket);
    let mut b = Client::connect(&env.socket);
    let (first, params) = ask(&mut a, "sampling/createMessage", json!({"sampling": {}}));
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    // Another session replays a's state: foreign.
    let stolen = retry(
        &params,
        &first,
        json!({"role": "assistant", "content": {"type": "text", "text": "evil"}, "model": "m"}),
    );
    let r = b.request("tools/call", stolen);
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another session"),
        "{r}"
    );
    // An altered state: forged.
    let mut forged = retry(&params, &first, json!({}));
    forged["requestState"] = json!(format!("{}0", forged["requestState"].as_str().unwrap()));
    let r = a.request("tools/call", forged);
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not issued"),
        "{r}"
    );
    d.log.wait_for(&["refused a 2026-07-28 retry"]);
    // The rightful retry still works.
    let ok = retry(
        &params,
        &first,
        json!({"role": "assistant", "content": {"type": "text", "text": "fine"}, "model": "m"}),
    );
    let r = a.request("tools/call", ok);
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("fine") && !text.contains("evil"), "{r}");
}

#[test]
fn mrtr_without_the_capability_is_minus_32021_and_expiry_fails_the_childs_request() {
    let env = Env::new();
    let d = env.start(&format!(
        "{}request_timeout = \"1s\"\n",
        fixture_server("fx", &[])
    ));
    d.wait_ready(&["fx"]);
    let mut c = Client::connect(&env.socket);
    let (r, _) = ask(&mut c, "sampling/createMessage", json!({}));
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}}),
        "{r}"
    );
    // A round nobody retries expires: the child's request gets an error.
    let (first, _) = ask(&mut c, "elicitation/create", json!({"elicitation": {}}));
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    d.log.wait_for(&["did not retry in time"]);
    let r = c.request(
        "tools/call",
        modern(json!({"name": "fx__cancelled", "arguments": {}}), json!({})),
    );
    let cancelled: Vec<u64> =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    // Both calls were cancelled upstream: the one answered -32021 and the
    // parked one whose round expired.
    assert_eq!(cancelled.len(), 2, "{r}");
}

#[test]
fn cancelling_a_call_answered_input_required_fails_the_childs_request() {
    let env = Env::new();
    let _d = one_fixture(&env);
    let mut c = Client::connect(&env.socket);
    let (first, _) = ask(&mut c, "elicitation/create", json!({"elicitation": {}}));
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    // The client gives up instead of retrying.
    c.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": first["id"], "reason": "user closed the dialog"}}),
    );
    let r = c.request(
        "tools/call",
        modern(json!({"name": "fx__cancelled", "arguments": {}}), json!({})),
    );
    let cancelled: Vec<u64> =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        cancelled.len(),
        1,
        "the parked call was cancelled upstream: {r}"
    );
    // And the state of that round is dead.
    let (again, params) = ask(&mut c, "elicitation/create", json!({"elicitation": {}}));
    let stale = retry(&params, &first, json!({"action": "accept", "content": {}}));
    let r = c.request("tools/call", stale);
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert_eq!(again["result"]["resultType"], "input_required");
}
