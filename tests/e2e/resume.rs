//! A client's session outlives the daemon: the shim reconnects to a new
//! daemon on the same socket and resumes (issue 12). Real daemons, real
//! shims, real fixture children; every wait is on a message or a log line.

use std::collections::HashMap;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::*;

/// One fixture server, `alpha`.
fn alpha(env: &Env) -> Daemon {
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    d
}

/// Kills the daemon at once (no shutdown of its own) and reaps it.
fn sigkill(d: &mut Daemon) {
    signal(d.pid(), Signal::SIGKILL);
    let _ = d.child.wait();
}

fn call_line(id: &Value, tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

/// Every response the client got, by id text; panics on an answer to an id
/// it never used or on a second answer to one.
fn responses_by_id(c: &mut Client, sent: &[Value]) -> HashMap<String, Value> {
    let mut seen = HashMap::new();
    for m in c.received() {
        let Some(id) = m.get("id") else { continue };
        if m.get("method").is_some() {
            continue; // a request to the client
        }
        assert!(
            sent.contains(id),
            "a response the client never asked for: {m}"
        );
        assert!(
            seen.insert(id.to_string(), m.clone()).is_none(),
            "two responses to {id}: {m}"
        );
    }
    seen
}

fn assert_in_flight_error(r: &Value) {
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("in flight") && msg.contains("may or may not have run"),
        "{r}"
    );
}

/// The scenario of both restart tests: a call in flight when the daemon
/// goes (`kill` ends it), a call during the outage, a new daemon on the
/// same socket.
fn restart_keeps_the_session(kill: impl FnOnce(&mut Daemon)) {
    let env = Env::new();
    let mut d = alpha(&env);
    let mut c = Client::connect_with(&env.socket, &["--reconnect-timeout", "60s"]);
    c.initialize_with(json!({"roots": {}}));
    let pid = c.child.id();
    let mut sent = vec![json!(1001)];
    // Two calls in flight (a string and a number id), made sure to have
    // reached the daemon by a quick call answered after them.
    let slow_s = json!("slow-1");
    let slow_n = json!(41);
    c.send(&call_line(&slow_s, "alpha__sleep", json!({"ms": 60000})));
    c.send(&call_line(&slow_n, "alpha__sleep", json!({"ms": 60000})));
    let quick = json!("quick");
    c.send(&call_line(&quick, "alpha__echo", json!({"text": "before"})));
    assert_eq!(c.response(&quick)["result"]["content"][0]["text"], "before");
    sent.extend([slow_s.clone(), slow_n.clone(), quick]);

    kill(&mut d);
    // Sent the moment the daemon is gone, maybe before the shim noticed:
    // it never reached a daemon, so it is queued, not failed.
    let early = json!(55);
    c.send(&call_line(&early, "alpha__echo", json!({"text": "early"})));
    sent.push(early.clone());
    // Answered at once, while there is no daemon at all.
    assert_in_flight_error(&c.response(&slow_s));
    assert_in_flight_error(&c.response(&slow_n));
    c.stderr.wait_for(&["reconnecting to", "session is kept"]);

    // Calls during the outage: queued, answered by the new daemon.
    let q_n = json!(77);
    let q_s = json!("during");
    c.send(&call_line(&q_n, "alpha__echo", json!({"text": "queued 1"})));
    c.send(&call_line(&q_s, "alpha__echo", json!({"text": "queued 2"})));
    sent.extend([q_n.clone(), q_s.clone()]);
    drop(d);

    let d2 = Daemon::start(&env, &[]);
    let r = c.response(&early);
    assert_eq!(r["result"]["content"][0]["text"], "early", "{r}");
    let r = c.response(&q_n);
    assert_eq!(r["result"]["content"][0]["text"], "queued 1", "{r}");
    let r = c.response(&q_s);
    assert_eq!(r["result"]["content"][0]["text"], "queued 2", "{r}");
    c.notification("notifications/tools/list_changed");
    c.stderr.wait_for(&["session is resumed"]);

    // The same shim, the same session: no new initialize, and it goes on.
    assert_eq!(c.child.id(), pid);
    assert!(matches!(c.child.try_wait(), Ok(None)), "the shim exited");
    let after = json!("after");
    c.send(&call_line(&after, "alpha__echo", json!({"text": "after"})));
    assert_eq!(c.response(&after)["result"]["content"][0]["text"], "after");
    sent.push(after);
    let by_id = responses_by_id(&mut c, &sent);
    assert!(
        !by_id.keys().any(|k| k.contains("stdioproxy-shim")),
        "the shim's own replay leaked: {by_id:?}"
    );
    d2.log.wait_for(&["session resumed", "e2e"]);
    assert_eq!(d2.status()["resumed_sessions"], 1);
}

#[test]
fn sigkill_with_a_call_in_flight_keeps_the_session() {
    restart_keeps_the_session(sigkill);
}

#[test]
fn sigterm_and_restart_keep_the_session() {
    restart_keeps_the_session(|d| {
        assert_eq!(d.stop().code(), Some(0));
    });
}

#[test]
fn log_level_subscriptions_and_client_requests_survive_a_restart() {
    let env = Env::new();
    let mut d = alpha(&env);
    let mut c = Client::connect(&env.socket);
    c.initialize_with(json!({"sampling": {}}));
    let uri = "fixture://alpha/readme";
    let r = c.request("resources/subscribe", json!({"uri": uri}));
    assert!(r.get("result").is_some(), "{r}");
    let r = c.request("logging/setLevel", json!({"level": "warning"}));
    assert!(r.get("result").is_some(), "{r}");
    // A request from the server to the client, still unanswered when the
    // daemon goes.
    let ask = c.send_request("tools/call", json!({"name": "alpha__ask", "arguments": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}}));
    let old = c.incoming_request("sampling/createMessage");

    sigkill(&mut d);
    assert_in_flight_error(&c.response(&ask));
    let cancelled = c.notification("notifications/cancelled");
    assert_eq!(cancelled["params"]["requestId"], old["id"], "{cancelled}");
    drop(d);

    let d2 = Daemon::start(&env, &[]);
    c.notification("notifications/tools/list_changed");
    // The new daemon's child got the replayed subscription and level (once
    // both are answered, the shim says so).
    c.stderr.wait_for(&[
        "session is resumed",
        "the log level, 1 resource subscription",
    ]);
    let subs = c.call_text("alpha__subscriptions", json!({}));
    assert!(
        subs.contains(uri),
        "subscriptions after the restart: {subs}; shim: {:?}",
        c.stderr.lines()
    );
    let level = c.call_text("alpha__log_level", json!({}));
    assert!(
        level.contains("warning") || level.contains('4'),
        "level after the restart: {level}"
    );

    // The client's late answer to the old daemon's request goes nowhere;
    // the new daemon's request (whatever its id) gets the new answer.
    let ask = c.send_request("tools/call", json!({"name": "alpha__ask", "arguments": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}}));
    let new = c.incoming_request("sampling/createMessage");
    let answer = |text: &str| json!({"role": "assistant", "model": "m", "content": {"type": "text", "text": text}});
    c.send(&json!({"jsonrpc":"2.0","id":old["id"],"result":answer("from the old one")}));
    c.send(&json!({"jsonrpc":"2.0","id":new["id"],"result":answer("from the new one")}));
    let r = c.response(&ask);
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("from the new one") && !text.contains("from the old one"),
        "{r}"
    );
    drop(d2);
}

#[test]
fn reconnect_timeout_expiry_fails_pending_calls_and_names_the_socket() {
    let env = Env::new();
    let mut d = alpha(&env);
    let mut c = Client::connect_with(&env.socket, &["--reconnect-timeout", "300ms"]);
    c.initialize();
    sigkill(&mut d);
    c.stderr.wait_for(&["reconnecting to"]);
    let id = c.send_request(
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"text": "x"}}),
    );
    let r = c.response(&id);
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let socket = env.socket.display().to_string();
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&socket),
        "{r}"
    );
    let status = c.wait();
    assert_eq!(status.code(), Some(1));
    let line = c.stderr.wait_for(&["did not come back within 300ms"]);
    assert!(line.contains(&socket), "{line}");
}

#[test]
fn reconnect_timeout_zero_turns_resuming_off() {
    let env = Env::new();
    let mut d = alpha(&env);
    // The variable, not the flag: both are read.
    let mut cmd = std::process::Command::new(SHIM);
    cmd.env("STDIOPROXY_RECONNECT_TIMEOUT", "0");
    let mut c = Client::spawn(cmd, &env.socket, &[]);
    c.initialize();
    let id = c.send_request(
        "tools/call",
        json!({"name": "alpha__sleep", "arguments": {"ms": 60000}}),
    );
    let quick = c.request("ping", json!({}));
    assert!(quick.get("result").is_some());
    sigkill(&mut d);
    assert_in_flight_error(&c.response(&id));
    assert_eq!(c.wait().code(), Some(1));
    c.stderr.wait_for(&["reconnecting is off"]);
}

/// An SDK client script (tests/interop/resume_*.{mjs,py}) driving the shim:
/// it prints `{"phase":"ready"}` after its first call, waits for a line on
/// stdin, calls again on the same session and prints its report.
struct Script {
    child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Log,
}

impl Script {
    fn start(program: &std::path::Path, script: &str, socket: &std::path::Path) -> Script {
        use std::process::{Command, Stdio};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(script);
        let mut child = KillOnDrop(
            Command::new(program)
                .arg(path)
                .arg(SHIM)
                .arg("--socket")
                .arg(socket)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the SDK client"),
        );
        let stderr = Log::default();
        stderr.collect(child.0.stderr.take().expect("stderr"));
        let stdout = child.0.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Script {
            child,
            lines,
            stderr,
        }
    }

    fn next(&self, what: &str) -> Value {
        let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "the SDK client printed no {what} within {WAIT:?}; its stderr: {:?}",
                self.stderr.lines()
            )
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    fn go(&mut self) {
        use std::io::Write;
        let stdin = self.child.0.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write to the SDK client");
        stdin.flush().expect("flush");
    }
}

/// One SDK client session across a SIGKILL of the daemon and a new daemon.
fn sdk_client_keeps_its_session(program: &std::path::Path, script: &str) {
    let env = Env::new();
    let mut d = alpha(&env);
    let mut client = Script::start(program, script, &env.socket);
    assert_eq!(client.next("ready line")["phase"], "ready");
    sigkill(&mut d);
    client.stderr.wait_for(&["reconnecting to"]);
    drop(d);
    let d2 = Daemon::start(&env, &[]);
    client.go();
    let report = client.next("report");
    assert_eq!(report["phase"], "done", "{report}");
    assert_eq!(report["before"], "before", "{report}");
    assert_eq!(report["after"], "after", "{report}");
    assert!(
        report["listChanged"].as_u64() >= Some(1),
        "told nothing changed: {report}"
    );
    let status = wait_exit(&mut client.child.0, WAIT).expect("the SDK client did not exit");
    assert!(status.success(), "{:?}", client.stderr.lines());
    d2.log.wait_for(&["session resumed", "resume-"]);
}

#[test]
fn typescript_sdk_client_keeps_one_session_across_a_restart() {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop/node_modules/@modelcontextprotocol/sdk");
    let Some(node) = ci_tool("node", "nodejs") else {
        return;
    };
    assert!(
        modules.exists(),
        "interop packages are missing: run `npm ci --prefix tests/interop` first (see README)"
    );
    sdk_client_keeps_its_session(&node, "resume_ts.mjs");
}

#[test]
fn python_sdk_client_keeps_one_session_across_a_restart() {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/.venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must create tests/interop/.venv (.ci/run)"
        );
        eprintln!("skipped: tests/interop/.venv is missing (python -m venv tests/interop/.venv && tests/interop/.venv/bin/python -m pip install -r tests/interop/requirements.txt)");
        return;
    }
    sdk_client_keeps_its_session(&python, "resume_py.py");
}

#[test]
fn a_new_daemon_that_refuses_the_session_fails_what_is_queued() {
    let env = Env::new();
    let mut d = alpha(&env);
    let mut a = Client::connect(&env.socket);
    a.initialize();
    sigkill(&mut d);
    a.stderr.wait_for(&["reconnecting to"]);
    let queued = a.send_request(
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"text": "x"}}),
    );
    // Queued (the shim says so), then held still while another client
    // takes the new daemon's only slot.
    a.stderr.wait_for(&["messages wait in a queue"]);
    signal(a.child.id(), Signal::SIGSTOP);
    drop(d);
    env.write_config(&format!(
        "[daemon]\nmax_sessions = 1\n\n{}",
        fixture_server("alpha", &[])
    ));
    let d2 = Daemon::start(&env, &[]);
    let _b = Client::initialized(&env.socket);
    d2.wait_status("one session", |st| st["sessions"] == 1);
    signal(a.child.id(), Signal::SIGCONT);
    let r = a.response(&queued);
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("too many client sessions"),
        "{r}"
    );
    assert_eq!(a.wait().code(), Some(1));
    a.stderr
        .wait_for(&["refused the session", "too many client sessions"]);
}
