//! The official TypeScript SDK client through the client-fitting shim modes
//! (tests/interop/ts_fit.mjs), with npm server-everything as the child:
//! `--server everything` must look exactly like running server-everything
//! directly, and `--tools search` must find and call its tools.

use serde_json::Value;

use crate::interop::{everything_and_fixture, run_ts_client_with};
use crate::support::*;

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn typescript_sdk_sees_server_everythings_own_names_through_server_flag() {
    let env = Env::new();
    let Some(_d) = everything_and_fixture(&env) else {
        return;
    };
    let v = run_ts_client_with(
        "ts_fit.mjs",
        &["direct"],
        &env.socket,
        &["--server", "everything"],
    );
    let show = |k: &str| format!("{k}: {}", v[k]);
    let tools = strs(&v["tools"]);
    for want in [
        "echo",
        "get-sum",
        "trigger-sampling-request",
        "trigger-long-running-operation",
        "get-structured-content",
    ] {
        assert!(tools.contains(&want), "{want}: {}", show("tools"));
    }
    assert!(
        tools.iter().all(|t| !t.contains("__")),
        "no prefix, no other server: {}",
        show("tools")
    );
    let prompts = strs(&v["prompts"]);
    assert!(prompts.contains(&"simple-prompt"), "{}", show("prompts"));
    assert_ne!(
        v["serverInfo"]["name"],
        "stdioproxy",
        "server-everything's own serverInfo: {}",
        show("serverInfo")
    );
    assert_eq!(
        v["echo"]["content"][0]["text"],
        "Echo: hello direct",
        "{}",
        show("echo")
    );
    let sampling = v["sampling"]["text"].as_str().unwrap_or("");
    assert!(sampling.contains("canned answer"), "{}", show("sampling"));
    assert_eq!(v["sampling"]["handlerCalls"], 1, "{}", show("sampling"));
    // See interop.rs: the TS SDK may drop the last progress that shares a
    // read with the result.
    let progress = v["progress"]["progress"].as_array().map_or(0, Vec::len);
    assert!((2..=3).contains(&progress), "{}", show("progress"));
}

#[test]
fn typescript_sdk_finds_and_calls_echo_in_search_mode() {
    let env = Env::new();
    let Some(_d) = everything_and_fixture(&env) else {
        return;
    };
    let v = run_ts_client_with(
        "ts_fit.mjs",
        &["search"],
        &env.socket,
        &["--tools", "search"],
    );
    let show = |k: &str| format!("{k}: {}", v[k]);
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(tools, ["search_tools", "call_tool"], "{}", show("tools"));
    let description = v["tools"][0]["description"].as_str().unwrap_or("");
    assert!(
        description.contains("everything") && description.contains("fixture"),
        "{}",
        show("tools")
    );
    let hits = strs(&v["hits"]);
    assert!(
        hits.first().is_some_and(|h| h.ends_with("__echo")) && hits.contains(&"everything__echo"),
        "{}",
        show("hits")
    );
    assert!(
        v["target"]["inputSchema"]["properties"]["message"].is_object(),
        "{}",
        show("target")
    );
    assert_eq!(
        v["echo"]["content"][0]["text"],
        "Echo: hello search",
        "{}",
        show("echo")
    );
    let progress = v["progress"]["progress"].as_array().map_or(0, Vec::len);
    assert!((2..=3).contains(&progress), "{}", show("progress"));
}
