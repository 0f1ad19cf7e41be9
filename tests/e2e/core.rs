//! Core behaviour: aggregation, sharing, id remapping, errors, safety.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn two_servers_are_aggregated_with_prefixes() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut c = Client::initialized(&env.socket);
    let tools = c.list_tools();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for want in ["alpha__echo", "beta__echo", "alpha__whoami", "beta__sleep"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(!names.contains(&"echo"), "unprefixed names leak: {names:?}");
    // Every other field of a tool passes through verbatim.
    let echo = tools
        .iter()
        .find(|t| t["name"] == "alpha__echo")
        .expect("alpha__echo");
    assert_eq!(echo["x-fixture-extra"], json!({"kept": true}));
    assert_eq!(echo["annotations"], json!({"readOnlyHint": true}));
    assert_eq!(echo["title"], "Echo");
    assert!(echo["outputSchema"].is_object());
    // Calls are routed to the owning child under the original name.
    assert!(c
        .call_text("alpha__whoami", json!({}))
        .starts_with("alpha "));
    assert!(c.call_text("beta__whoami", json!({})).starts_with("beta "));
    let r = c.call("beta__echo", json!({"text": "hi"}));
    assert_eq!(r["result"]["structuredContent"], json!({"text": "hi"}));
    assert_eq!(r["result"]["_meta"], json!({"fixture/server": "beta"}));
}

#[test]
fn initialize_negotiates_versions_and_names_the_daemon() {
    let env = Env::new();
    let _d = env.start(&fixture_server(
        "alpha",
        &[("FIXTURE_INSTRUCTIONS", "Use alpha wisely.")],
    ));
    _d.wait_ready(&["alpha"]);
    for (asked, expect) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut c = Client::connect(&env.socket);
        let r = c.request(
            "initialize",
            json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        );
        let res = &r["result"];
        assert_eq!(res["protocolVersion"], expect, "asked {asked}: {r}");
        assert_eq!(res["serverInfo"]["name"], "stdioproxy");
        assert_eq!(res["capabilities"]["tools"]["listChanged"], true);
        let instr = res["instructions"].as_str().unwrap_or_default();
        assert!(
            instr.contains("alpha") && instr.contains("Use alpha wisely."),
            "{r}"
        );
        assert!(c.request("ping", json!({}))["result"].is_object());
    }
}

#[test]
fn clients_share_one_child_process() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    let st = d.wait_ready(&["alpha"]);
    let pid = st["servers"][0]["pid"].as_u64().expect("pid");
    let mut a = Client::initialized(&env.socket);
    let mut b = Client::initialized(&env.socket);
    let pa = a.call_text("alpha__whoami", json!({}));
    let pb = b.call_text("alpha__whoami", json!({}));
    assert_eq!(pa, format!("alpha {pid}"));
    assert_eq!(pb, format!("alpha {pid}"));
    // Exactly one fixture process named alpha exists.
    let count = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == b"FIXTURE_NAME=alpha"))
                .unwrap_or(false)
                && std::fs::read_link(e.path().join("exe"))
                    .map(|p| p.to_string_lossy().contains("stdioproxy-fixture-server"))
                    .unwrap_or(false)
        })
        .filter(|e| {
            // Only processes of this test's daemon.
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_string));
            ppid.as_deref() == Some(&d.pid().to_string())
        })
        .count();
    assert_eq!(count, 1, "expected one shared child");
    assert_eq!(d.status()["sessions"], 2);
}

#[test]
fn ids_keep_their_type_and_same_ids_from_two_clients_do_not_cross() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut a = Client::initialized(&env.socket);
    let mut b = Client::initialized(&env.socket);
    // Same id value 7 from both clients at once, on the same child; the slow
    // one is sent first.
    a.send(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__sleep","arguments":{"ms":300}}}));
    b.send(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"from b"}}}));
    // String id "7" on a too: must come back as a string.
    a.send(&json!({"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"string id"}}}));
    let rb = b.response(&json!(7));
    assert_eq!(rb["result"]["content"][0]["text"], "from b");
    let ra_str = a.response(&json!("7"));
    assert_eq!(ra_str["result"]["content"][0]["text"], "string id");
    let ra_num = a.response(&json!(7));
    assert_eq!(ra_num["result"]["content"][0]["text"], "slept 300");
    // Odd but legal ids survive verbatim.
    for id in [
        json!(0),
        json!(-5),
        json!(9007199254740993u64),
        json!("with \"quotes\" and ünïcode"),
        json!(1.5),
    ] {
        a.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"beta__add","arguments":{"a":1,"b":2}}}));
        let r = a.response(&id);
        assert_eq!(r["result"]["content"][0]["text"], "3", "id {id}: {r}");
    }
}

#[test]
fn a_slow_call_does_not_block_a_fast_one() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut a = Client::initialized(&env.socket);
    let mut b = Client::initialized(&env.socket);
    a.send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__sleep","arguments":{"ms":3000}}}));
    a.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"fast"}}}));
    b.send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"other client"}}}));
    b.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"beta__echo","arguments":{"text":"other server"}}}));
    // Ordering, not timing: the fast answers arrive while the slow call is
    // still running.
    let first = a.next_response();
    assert_eq!(
        first["id"], 2,
        "fast call on the same session and child answered first: {first}"
    );
    assert_eq!(
        b.response(&json!(1))["result"]["content"][0]["text"],
        "other client"
    );
    assert_eq!(
        b.response(&json!(2))["result"]["content"][0]["text"],
        "other server"
    );
    let slow = a.next_response();
    assert_eq!(slow["id"], 1);
    assert_eq!(slow["result"]["content"][0]["text"], "slept 3000");
}

#[test]
fn parse_errors_and_invalid_messages_keep_the_session_open() {
    let env = Env::new();
    let _d = env.start(&fixture_server("alpha", &[]));
    let mut c = Client::initialized(&env.socket);
    c.send_raw("this is not json");
    let r = c.next_response();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(r["id"], Value::Null);
    c.send_raw(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
    assert_eq!(c.next_response()["error"]["code"], -32600);
    c.send_raw("42");
    assert_eq!(c.next_response()["error"]["code"], -32600);
    c.send_raw(r#"{"jsonrpc":"2.0","id":5}"#);
    let r = c.next_response();
    assert_eq!(
        (r["error"]["code"].clone(), r["id"].clone()),
        (json!(-32600), json!(5))
    );
    c.send_raw(r#"{"jsonrpc":"2.0","id":6,"method":"no/such"}"#);
    assert_eq!(c.next_response()["error"]["code"], -32601);
    c.send_raw("{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}\r");
    assert_eq!(c.response(&json!("p"))["result"], json!({}));
}

#[test]
fn unknown_tools_and_bad_calls_get_errors_naming_them() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let r = c.call("alpha__nope", json!({}));
    assert_eq!(r["error"]["code"], -32602);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alpha__nope"),
        "{r}"
    );
    let r = c.call("echo", json!({}));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<server>__<tool>"),
        "{r}"
    );
    let r = c.request("tools/call", json!({"arguments": {}}));
    assert_eq!(r["error"]["code"], -32602);
    // Errors from the child pass through unchanged.
    let r = c.call("alpha__add", json!({"a": "x"}));
    assert!(r.get("result").is_some() || r.get("error").is_some(), "{r}");
}

#[test]
fn long_and_odd_tool_names_are_valid_and_map_back() {
    let env = Env::new();
    let long = "a_really_long_tool_name_that_goes_on_and_on_well_past_the_sixty_four_limit";
    let names = format!("weird.name/x,{long}");
    let d = env.start(&fixture_server("alpha", &[("FIXTURE_TOOL_NAMES", &names)]));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let tools = c.tool_names();
    let valid = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    for n in &tools {
        assert!(
            valid(n),
            "exposed name {n:?} is not ^[A-Za-z0-9_-]{{1,64}}$"
        );
    }
    let weird = tools
        .iter()
        .find(|n| n.starts_with("alpha__weird_name_x"))
        .expect("weird");
    assert_eq!(c.call_text(weird, json!({})), "called weird.name/x");
    let l = tools
        .iter()
        .find(|n| n.starts_with("alpha__a_really_long"))
        .expect("long");
    assert_eq!(l.len(), 64);
    assert_eq!(c.call_text(l, json!({})), format!("called {long}"));
    // Deterministic across daemons.
    drop(c);
    drop(d);
    let env2 = Env::new();
    let d2 = env2.start(&fixture_server("alpha", &[("FIXTURE_TOOL_NAMES", &names)]));
    d2.wait_ready(&["alpha"]);
    let again = Client::initialized(&env2.socket).tool_names();
    assert_eq!(tools, again);
}

#[test]
fn long_lists_are_paginated_with_opaque_cursors() {
    let env = Env::new();
    let cfg = format!(
        "[daemon]\npage_size = 7\n\n{}\n{}",
        fixture_server(
            "alpha",
            &[("FIXTURE_EXTRA_TOOLS", "20"), ("FIXTURE_PAGE_SIZE", "6")]
        ),
        fixture_server("beta", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha", "beta"]);
    let mut c = Client::initialized(&env.socket);
    let first = c.request("tools/list", json!({}));
    assert_eq!(first["result"]["tools"].as_array().unwrap().len(), 7);
    assert!(first["result"]["nextCursor"].is_string());
    let names = c.tool_names();
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no duplicates across pages");
    // alpha: 22 fixture tools + 20 extra (pulled from the child's own pages), beta: 22.
    assert_eq!(names.len(), 64, "{names:?}");
    let r = c.request("tools/list", json!({"cursor": "not-a-cursor"}));
    assert_eq!(r["error"]["code"], -32602);
}

#[test]
fn shim_without_a_daemon_says_how_to_start_one() {
    let env = Env::new();
    let out = Command::new(SHIM)
        .arg("--socket")
        .arg(&env.socket)
        .output()
        .expect("run shim");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&env.socket.display().to_string()), "{err}");
    assert!(
        err.contains("stdioproxy serve") && err.contains("systemctl --user start stdioproxy"),
        "{err}"
    );
}

#[test]
fn unsafe_or_invalid_configs_are_refused_at_start() {
    let env = Env::new();
    env.write_config(&fixture_server("alpha", &[]));
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o664)).unwrap();
    let out = env.serve_and_exit();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by group or others")
            && err.contains(&env.config.display().to_string()),
        "{err}"
    );
    assert!(!env.socket.exists(), "nothing was started");

    env.write_config("[servers.alpha]\ncommand = \"x\"\n\n[servers.beta]\ncomand = \"y\"\n");
    let out = env.serve_and_exit();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:5:1", env.config.display())),
        "file:line:col in {err}"
    );
    assert!(err.contains("comand"), "{err}");

    // `check` reports the same.
    let out = Command::new(DAEMON)
        .args(["check", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":5:1"));
}

#[test]
fn socket_is_private_stale_sockets_are_replaced_and_live_ones_kept() {
    let env = Env::new();
    // A stale socket: bound, then its owner went away.
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        env.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());
    let d = env.start(&fixture_server("alpha", &[]));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.socket), 0o600);
    // The directory is ours and dedicated to nothing else here ("run"), so it
    // is left as is; a directory we create is 0700:
    let env2 = Env::new();
    let d2 = env2.start("");
    assert_eq!(mode(env2.socket.parent().unwrap()), 0o700);
    drop(d2);

    // A second daemon on the live socket exits with a clear message.
    let out = env.serve_and_exit();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first one still serves.
    let mut c = Client::initialized(&env.socket);
    d.wait_ready(&["alpha"]);
    assert!(c
        .call_text("alpha__echo", json!({"text": "still here"}))
        .contains("still here"));
}

#[test]
fn connections_from_other_users_are_refused() {
    if !can_switch_user() {
        return;
    }
    let env = Env::new();
    // Let another user reach the socket file, so only the uid check stands.
    let dir = env.socket.parent().unwrap().to_path_buf();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = env.start(&fixture_server("alpha", &[]));
    std::fs::set_permissions(&env.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            SHIM,
            "--socket",
        ])
        .arg(&env.socket)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    d.log
        .wait_for(&["refused a connection from another user", "peer_uid=65534"]);
}

#[test]
fn plain_socket_clients_work_without_the_shim_hello() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let mut s = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"alpha__add\",\"arguments\":{\"a\":2,\"b\":2}}}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "4");
}

#[test]
fn env_is_expanded_cwd_tilde_expanded_and_secrets_stay_out_of_logs_and_status() {
    let env = Env::new();
    let home = env.path().join("home");
    std::fs::create_dir_all(home.join("work")).unwrap();
    let cfg = format!(
        "[servers.alpha]\ncommand = \"{FIXTURE}\"\ncwd = \"~/work\"\nenv = {{ FIXTURE_NAME = \"alpha\", API_TOKEN = \"tok-${{SP_TEST_SECRET}}\" }}\n"
    );
    env.write_config(&cfg);
    let d = Daemon::start(
        &env,
        &[
            ("SP_TEST_SECRET", "hunter2"),
            ("HOME", home.to_str().unwrap()),
            ("NOTIFY_SOCKET", "/nonexistent"),
            ("LISTEN_FDS", "3"),
        ],
    );
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    assert_eq!(
        c.call_text("alpha__env", json!({"name": "API_TOKEN"})),
        "tok-hunter2"
    );
    assert_eq!(
        c.call_text("alpha__env", json!({"name": "NOTIFY_SOCKET"})),
        "<unset>"
    );
    assert_eq!(
        c.call_text("alpha__env", json!({"name": "LISTEN_FDS"})),
        "<unset>"
    );
    let cwd = c.call_text("alpha__cwd", json!({}));
    assert_eq!(
        std::path::Path::new(&cwd),
        home.join("work").canonicalize().unwrap()
    );
    let status = d.status().to_string();
    assert!(!status.contains("hunter2"), "status leaks the secret");
    assert!(
        !d.log.lines().join("\n").contains("hunter2"),
        "log leaks the secret"
    );
}

#[test]
fn child_stderr_is_logged_under_its_server_name() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    d.log.wait_for(&["fixture alpha started", "server=alpha"]);
    let mut c = Client::initialized(&env.socket);
    c.call_text("alpha__stderr", json!({"text": "a line for the journal"}));
    d.log.wait_for(&["a line for the journal", "server=alpha"]);
    let st = d.server_status("alpha");
    assert!(
        st["stderr_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "a line for the journal"),
        "{st}"
    );
}

#[test]
fn a_crash_fails_in_flight_calls_at_once() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nrestart_backoff = \"30s\"\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let mut a = Client::initialized(&env.socket);
    let mut b = Client::initialized(&env.socket);
    a.send(&json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"alpha__sleep","arguments":{"ms":60000}}}));
    // Make sure the slow call reached the child before it crashes.
    d.wait_status("a call in flight", |st| st["servers"][0]["in_flight"] == 1);
    let r = b.call("alpha__crash", json!({}));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    let r = a.response(&json!("slow"));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("alpha"),
        "{r}"
    );
}

#[test]
fn a_server_that_stays_unavailable_gets_a_clear_error() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nrestart_backoff = \"60s\"\nrequest_timeout = \"1s\"\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let mut b = Client::initialized(&env.socket);
    assert_eq!(b.call("alpha__crash", json!({}))["error"]["code"], -32003);
    d.wait_status("alpha in backoff", |st| {
        st["servers"][0]["state"] == "backoff"
    });
    // The tools stay listed; a call waits up to request_timeout, then says
    // which server and what state.
    assert!(b.tool_names().contains(&"alpha__echo".to_string()));
    let r = b.call("alpha__echo", json!({"text": "x"}));
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("alpha") && msg.contains("backoff"), "{msg}");
    assert_eq!(r["error"]["data"]["state"], "backoff");
}
