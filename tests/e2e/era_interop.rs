//! Every pairing of eras through the real daemon and shim, with clients and
//! servers nobody here wrote: the TS SDK v2 client (pinned to 2026-07-28,
//! and in auto mode), the Python SDK 2.x client (modern mode), the TS SDK v1
//! client and a raw legacy client, against server-everything (legacy), a
//! `serveStdio(factory, { legacy: 'reject' })` TS SDK v2 server
//! (modern-only, tests/interop/modern_server.mjs) and mcp-server-time
//! (dual-era). Needs `npm ci --prefix tests/interop` and the venv of
//! tests/interop/requirements.txt (.ci/run makes both).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::interop::{
    assert_echo_and_sum, interop_dir, require_node_modules, require_python_sdk, run_client,
};
use crate::support::*;

/// How long a Python child may take to be ready here: two interpreter
/// starts (the era probe, then the server) on a loaded 2-core machine.
const SLOW_START: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether the interop packages and the venv are installed: under `CI` a
/// missing one fails the test, elsewhere it is skipped with one line on
/// stderr (see `support::unavailable`).
fn prerequisites() -> bool {
    require_node_modules().is_some() && require_python_sdk().is_some()
}

fn everything() -> PathBuf {
    require_node_modules().expect("checked by prerequisites()")
}

fn python() -> PathBuf {
    require_python_sdk().expect("checked by prerequisites()")
}

/// The two children every client is tried against: server-everything as
/// `legacy`, the TS SDK v2 modern-only server as `modern`.
fn pair_config() -> String {
    format!(
        "[servers.legacy]\ncommand = \"node\"\nargs = [\"{}\"]\n\n[servers.modern]\ncommand = \"node\"\nargs = [\"{}\"]\n",
        everything().display(),
        modern_server().display()
    )
}

/// A daemon with the one node child `[servers.NAME]` running `script`,
/// waited for until NAME is ready.
fn start_node_server(env: &Env, name: &str, script: &Path) -> Daemon {
    let d = env.start(&format!(
        "[servers.{name}]\ncommand = \"node\"\nargs = [\"{}\"]\n",
        script.display()
    ));
    d.wait_ready(&[name]);
    d
}

fn modern_server() -> PathBuf {
    interop_dir().join("modern_server.mjs")
}

fn start_pair(env: &Env) -> Daemon {
    let d = env.start(&pair_config());
    d.wait_ready(&["legacy", "modern"]);
    d
}

fn run(program: &Path, script: &str, args: &[&str], socket: &Path) -> Value {
    run_client(program, script, args, socket, &[])
}

/// [`run`], the script picking tools of server `prefer` first.
fn run_preferring(
    program: &Path,
    script: &str,
    args: &[&str],
    socket: &Path,
    prefer: Option<&str>,
) -> Value {
    match prefer {
        Some(p) => run_client(program, script, args, socket, &[("ERA_PREFER", p)]),
        None => run(program, script, args, socket),
    }
}

fn node() -> PathBuf {
    PathBuf::from("node")
}

fn ts2(mode: &str, steps: &str, socket: &Path) -> Value {
    run(&node(), "ts2_client.mjs", &[mode, steps], socket)
}

/// The progress a TS SDK v2 client saw of a 3-step call. All three reach it
/// before the result (the wire shows it), but its `onprogress` for the last
/// one sometimes runs after the call resolved, so 2 or 3 are recorded.
/// The steps `echo,progress,cancel,sample` of ts2_client.mjs: an echo,
/// progress, a cancelled call and the call after it, and sampling through
/// MRTR (the child's sampling/createMessage came back to the client inside
/// an input_required result, and its answer reached the child).
fn assert_call_steps(r: &Value, v: &Value, who: &str) {
    assert_eq!(r["echo"], "Echo: hello era", "{who}: {v}");
    assert_progress(&r["progress"]["progress"], v);
    assert_eq!(r["cancel"], "aborted", "{who}: {v}");
    assert_eq!(r["afterCancel"], "Echo: after cancel", "{who}: {v}");
    assert_eq!(r["sample"]["asked"], 1, "{who}: {v}");
    assert!(
        r["sample"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("canned reply")),
        "{who}: {v}"
    );
}

fn assert_progress(progress: &Value, v: &Value) {
    let p: Vec<u64> = serde_json::from_value(progress.clone()).unwrap_or_default();
    assert!(
        (2..=3).contains(&p.len()) && p.windows(2).all(|w| w[0] < w[1]) && p[0] == 1,
        "{v}"
    );
}

fn check_modern_child_results(v: &Value) {
    let r = &v["results"];
    assert_eq!(r["echo"], "Echo: hello era", "{v}");
    assert_eq!(r["progress"]["text"], "done after 3 steps", "{v}");
    assert_progress(&r["progress"]["progress"], v);
    assert_eq!(r["sample"]["text"], "model said: canned reply", "{v}");
    assert_eq!(r["elicit"]["text"], "Hello, Ada!", "{v}");
}

#[test]
fn ts_v2_pinned_client_against_a_legacy_child() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let _d = start_node_server(&env, "legacy", &everything());
    let v = ts2("pin", "list,echo,progress,cancel,sample", &env.socket);
    assert_eq!(v["era"], "2026-07-28", "{v}");
    assert_eq!(v["serverInfo"]["name"], "stdioproxy", "{v}");
    let r = &v["results"];
    assert!(
        r["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "legacy__echo"),
        "{v}"
    );
    assert_call_steps(r, &v, "legacy");
}

#[test]
fn ts_v2_pinned_client_against_a_modern_only_child() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let d = start_node_server(&env, "modern", &modern_server());
    assert_eq!(d.server_status("modern")["era"], "modern");
    let v = ts2(
        "pin",
        "list,echo,progress,cancel,sample,elicit,prompt,read",
        &env.socket,
    );
    assert_eq!(v["era"], "2026-07-28", "{v}");
    check_modern_child_results(&v);
    assert_eq!(d.server_status("modern")["era_source"], "probe");
    let out = std::process::Command::new(DAEMON)
        .args(["status", "--socket"])
        .arg(&env.socket)
        .output()
        .expect("stdioproxy status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("modern") && l.contains("(MCP 2026-07-28)")),
        "{text}"
    );
    assert_eq!(v["results"]["cancel"], "aborted", "{v}");
    assert_eq!(v["results"]["prompt"], json!(["Say hello to Ada"]), "{v}");
    assert_eq!(
        v["results"]["read"],
        json!(["a note from a modern server"]),
        "{v}"
    );
}

#[test]
fn ts_v2_auto_client_against_both_children() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let _d = start_pair(&env);
    let v = ts2("auto", "list,echo", &env.socket);
    // The daemon answers server/discover, so auto mode picks modern.
    assert_eq!(v["era"], "2026-07-28", "{v}");
    let list = v["results"]["list"].as_array().unwrap();
    for want in ["legacy__echo", "modern__echo", "modern__ask-name"] {
        assert!(list.iter().any(|t| t == want), "{want}: {v}");
    }
    // Calls, progress, cancellation and sampling, on each child.
    for server in ["legacy", "modern"] {
        let v = run_preferring(
            &node(),
            "ts2_client.mjs",
            &["auto", "echo,progress,cancel,sample"],
            &env.socket,
            Some(server),
        );
        let r = &v["results"];
        assert_call_steps(r, &v, server);
    }
}

#[test]
fn python_sdk_modern_client_against_both_children() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let _d = start_pair(&env);
    let py = python();
    let steps = "list,echo,progress,sample,elicit";
    let v = run_preferring(
        &py,
        "py_era_client.py",
        &["2026-07-28", steps],
        &env.socket,
        Some("modern"),
    );
    assert_eq!(v["version"], "2026-07-28", "{v}");
    let list = v["results"]["list"].as_array().unwrap();
    assert!(
        list.iter().any(|t| t == "legacy__echo") && list.iter().any(|t| t == "modern__sample"),
        "{v}"
    );
    assert_eq!(v["results"]["echo"], "Echo: hello era", "{v}");
    assert_eq!(
        v["results"]["progress"]["text"], "done after 3 steps",
        "{v}"
    );
    assert_eq!(v["results"]["sample"], "model said: canned reply", "{v}");
    assert_eq!(v["results"]["elicit"], "Hello, Ada!", "{v}");
    // The legacy child: sampling and elicitation through the MRTR bridge.
    let v = run_preferring(
        &py,
        "py_era_client.py",
        &["2026-07-28", steps],
        &env.socket,
        Some("legacy"),
    );
    let r = &v["results"];
    assert_eq!(r["echo"], "Echo: hello era", "{v}");
    assert_eq!(
        r["progress"]["progress"].as_array().map(Vec::len),
        Some(3),
        "{v}"
    );
    assert!(
        r["sample"].as_str().unwrap().contains("canned reply"),
        "{v}"
    );
    assert!(r["elicit"].as_str().unwrap().contains("Ada"), "{v}");
}

#[test]
fn legacy_clients_against_a_modern_only_child() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let _d = start_node_server(&env, "modern", &modern_server());
    // TS SDK v1 (legacy only).
    let v = run(&node(), "ts_client.mjs", &[], &env.socket);
    assert_echo_and_sum(&v);
    assert!(
        v["echo"].get("resultType").is_none(),
        "legacy results carry no resultType: {v}"
    );

    // A raw legacy client answers the modern child's MRTR elicitation as a
    // real elicitation/create request.
    let mut c = Client::connect(&env.socket);
    c.initialize_with(json!({"elicitation": {}}));
    let id = c.send_request(
        "tools/call",
        json!({"name": "modern__ask-name", "arguments": {}}),
    );
    let ask = c.incoming_request("elicitation/create");
    assert_eq!(ask["params"]["message"], "What is your name?", "{ask}");
    c.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"name": "Grace"}}}));
    let r = c.response(&id);
    assert_eq!(r["result"]["content"][0]["text"], "Hello, Grace!", "{r}");
    assert!(r["result"].get("resultType").is_none(), "{r}");

    // A legacy client without the capability gets an error, not a hang.
    let mut bare = Client::initialized(&env.socket);
    let r = bare.call("modern__ask-name", json!({}));
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "{r}"
    );
}

#[test]
fn mcp_server_time_is_detected_as_modern() {
    if !prerequisites() {
        return;
    }
    let env = Env::new();
    let py = python();
    let d = env.start(&format!(
        "[servers.time]\ncommand = \"{}\"\nargs = [\"-m\", \"mcp_server_time\", \"--local-timezone\", \"UTC\"]\n",
        py.display()
    ));
    d.wait_ready_within(SLOW_START, &["time"]);
    assert_eq!(
        d.server_status("time")["era"],
        "modern",
        "{}",
        d.server_status("time")
    );
    let mut c = Client::initialized(&env.socket);
    let text = c.call_text("time__get_current_time", json!({"timezone": "UTC"}));
    assert!(text.contains("UTC"), "{text}");
    // And a modern client, through the same modern child.
    let mut m = Client::connect(&env.socket);
    let r = m.request(
        "tools/call",
        crate::era::modern(
            json!({"name": "time__get_current_time", "arguments": {"timezone": "UTC"}}),
            json!({}),
        ),
    );
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "stdioproxy",
        "{r}"
    );
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("UTC"),
        "{r}"
    );
    drop(m);
    // The verdict is cached: a restarted daemon does not probe again.
    drop(c);
    let mut d = d;
    d.stop();
    let d = env.start(&format!(
        "[servers.time]\ncommand = \"{}\"\nargs = [\"-m\", \"mcp_server_time\", \"--local-timezone\", \"UTC\"]\n",
        py.display()
    ));
    d.wait_ready_within(SLOW_START, &["time"]);
    assert_eq!(d.server_status("time")["era"], "modern");
    assert_eq!(
        d.server_status("time")["era_source"],
        "cache",
        "{}",
        d.server_status("time")
    );
}

#[test]
fn list_cache_hints_are_the_minimum_over_children() {
    if !prerequisites() {
        return;
    }
    use crate::era::{modern, modern_meta};
    let env = Env::new();
    let modern_child = |name: &str, ttl: u64| {
        format!(
            "[servers.{name}]\ncommand = \"node\"\nargs = [\"{}\"]\nenv = {{ MODERN_TOOLS_TTL_MS = \"{ttl}\" }}\n",
            modern_server().display()
        )
    };
    let d = env.start(&format!(
        "{}{}",
        modern_child("long", 60000),
        modern_child("short", 5000)
    ));
    d.wait_ready(&["long", "short"]);
    let mut c = Client::connect(&env.socket);
    c.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    let r = c.request("tools/list", modern(json!({}), json!({})));
    assert_eq!(r["result"]["ttlMs"], 5000, "the shortest: {r}");
    assert_eq!(r["result"]["cacheScope"], "public", "{r}");
    // A session that sees only one of them gets that one's hint.
    let mut only = Client::connect_with(&env.socket, &["--servers", "long"]);
    let r = only.request("tools/list", modern(json!({}), json!({})));
    assert_eq!(r["result"]["ttlMs"], 60000, "{r}");
    // A legacy child among them makes it stale at once and private.
    env.write_config(&format!(
        "{}{}{}",
        modern_child("long", 60000),
        modern_child("short", 5000),
        fixture_server("fx", &[])
    ));
    // Ready means listed: the catalog is rebuilt before a server is ready.
    d.wait_ready(&["long", "short", "fx"]);
    let r = c.request("tools/list", modern(json!({}), json!({})));
    assert_eq!(r["result"]["ttlMs"], 0, "{r}");
    assert_eq!(r["result"]["cacheScope"], "private", "{r}");
}

#[test]
fn resource_updates_of_a_modern_child_reach_subscribers_of_both_eras() {
    if !prerequisites() {
        return;
    }
    use crate::era::{modern, modern_meta};
    let env = Env::new();
    let _d = start_node_server(&env, "modern", &modern_server());
    let updates = |c: &mut Client| {
        c.received()
            .iter()
            .filter(|m| m["method"] == "notifications/resources/updated")
            .count()
    };
    // A legacy client: resources/subscribe (a listen upstream).
    let mut legacy = Client::initialized(&env.socket);
    let r = legacy.request("resources/subscribe", json!({"uri": "modern://note"}));
    assert_eq!(r["result"], json!({}), "{r}");
    // A modern client: a listen with the URI.
    let mut m = Client::connect(&env.socket);
    m.request("server/discover", json!({"_meta": modern_meta(json!({}))}));
    let listen = m.send_request(
        "subscriptions/listen",
        modern(
            json!({"notifications": {"resourceSubscriptions": ["modern://note"]}}),
            json!({}),
        ),
    );
    let ack = m.notification("notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["modern://note"]),
        "{ack}"
    );
    // The child's update reaches both: the touch's result comes after it.
    let r = legacy.call_text("modern__touch", json!({}));
    assert_eq!(r, "touched");
    let n = legacy.notification("notifications/resources/updated");
    assert_eq!(n["params"]["uri"], "modern://note", "{n}");
    let n = m.notification("notifications/resources/updated");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], listen,
        "{n}"
    );
    // Both leave: the child's listen is cancelled, no more updates.
    legacy.request("resources/unsubscribe", json!({"uri": "modern://note"}));
    m.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": listen}}));
    m.response(&listen);
    let (before_l, before_m) = (updates(&mut legacy), updates(&mut m));
    assert_eq!(legacy.call_text("modern__touch", json!({})), "touched");
    m.request("tools/list", modern(json!({}), json!({})));
    assert_eq!(
        updates(&mut legacy),
        before_l,
        "no update after unsubscribe"
    );
    assert_eq!(
        updates(&mut m),
        before_m,
        "no update after the listen ended"
    );
}
