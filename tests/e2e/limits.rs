//! Limits through the real binaries: message size in both directions, the
//! number of sessions, the first-line timeout, and memory that stays bounded.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

const SMALL: usize = 64 * 1024;

fn small_limit_daemon(env: &Env, extra: &str) -> Daemon {
    let d = env.start(&format!(
        "[daemon]\nmax_message_size = {SMALL}\n{extra}\n[defaults]\nrestart_backoff = \"100ms\"\n\n{}",
        fixture_server("alpha", &[])
    ));
    d.wait_ready(&["alpha"]);
    d
}

fn rss(d: &Daemon) -> u64 {
    d.status()["daemon"]["rss_bytes"]
        .as_u64()
        .expect("status has daemon.rss_bytes")
}

#[test]
fn an_oversized_client_message_gets_its_id_back_and_the_session_goes_on() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "");
    let mut c = Client::initialized(&env.socket);
    // The id comes before the payload: the error names it.
    let big = "x".repeat(SMALL + 10);
    c.send(&json!({"jsonrpc":"2.0","id":"big-1","method":"tools/call",
        "params":{"name":"alpha__echo","arguments":{"text": big}}}));
    let r = c.response(&json!("big-1"));
    assert_eq!(r["error"]["code"], -32005, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&SMALL.to_string()),
        "{r}"
    );
    // The id comes after the payload: it cannot be recovered, the error says
    // null, and there is still exactly one answer.
    c.send_raw(&format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{{\"name\":\"alpha__echo\",\"arguments\":{{\"text\":\"{big}\"}}}},\"id\":\"late\"}}"
    ));
    let r = c.next_response();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (Value::Null, json!(-32005))
    );
    // Just under the limit passes, and the session is intact (echo answers
    // the text twice, so its answer stays under the limit too).
    let n = SMALL / 2 - 300;
    assert_eq!(
        c.call_text("alpha__echo", json!({"text": "y".repeat(n)}))
            .len(),
        n
    );
    d.log
        .wait_for(&["client sent a message larger than the limit"]);
    assert_eq!(d.server_status("alpha")["restarts"], 0);
}

#[test]
fn an_endless_client_line_is_never_buffered() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "");
    let before = rss(&d);
    let mut raw = RawConn::connect(&env.socket);
    raw.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(raw.read_json()["id"], 1);
    // 64 MiB without a newline, in 1 MiB writes: the daemon keeps 4 KiB of it.
    raw.send_bytes(br#"{"jsonrpc":"2.0","id":"endless","method":"tools/call","params":{"x":""#);
    let chunk = vec![b'z'; 1 << 20];
    for _ in 0..64 {
        raw.send_bytes(&chunk);
    }
    raw.send_bytes(b"\"}}\n");
    let r = raw.read_json();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!("endless"), json!(-32005))
    );
    let after = rss(&d);
    assert!(
        after < before + 16 * 1024 * 1024,
        "the daemon grew from {before} to {after} bytes reading one oversized line"
    );
    raw.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(raw.read_json()["id"], 2);
}

#[test]
fn an_oversized_message_from_a_child_restarts_it_and_fails_only_that_call() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "");
    let pid = d.server_status("alpha")["pid"].as_u64().unwrap();
    let mut c = Client::initialized(&env.socket);
    let r = c.call("alpha__big", json!({"bytes": SMALL * 2}));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("oversized"),
        "{r}"
    );
    d.log
        .wait_for(&["server sent a message larger than", "server=alpha"]);
    let st = d.wait_status("alpha restarted", |st| {
        st["servers"][0]["state"] == "ready" && st["servers"][0]["pid"].as_u64() != Some(pid)
    });
    assert_eq!(st["servers"][0]["restarts"], 1);
    assert_eq!(c.call_text("alpha__echo", json!({"text": "back"})), "back");
    // Just under the limit is delivered whole.
    let n = SMALL - 500;
    assert_eq!(c.call_text("alpha__big", json!({"bytes": n})).len(), n);
}

#[test]
fn sessions_past_max_sessions_are_refused_clearly_and_control_still_works() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "max_sessions = 2");
    let mut a = Client::initialized(&env.socket);
    let _b = Client::initialized(&env.socket);
    d.wait_status("two sessions", |st| st["sessions"] == 2);

    // A shim past the limit: one line on stderr, exit 1, nothing on stdout.
    let mut c = Client::connect(&env.socket);
    c.send(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
    let st = c.wait();
    assert_eq!(st.code(), Some(1));
    let err = c.stderr.wait_for(&["too many client sessions"]);
    assert!(err.contains("max_sessions") && err.contains('2'), "{err}");
    // Its request is answered (nothing is left hanging), with the reason;
    // nothing else (no hello reply) reached its stdout.
    let got = c.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["id"], 1, "{got:?}");
    let msg = got[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("too many client sessions"), "{got:?}");
    drop(c);

    // A plain client past the limit: a JSON-RPC error naming its id, then EOF.
    let mut raw = RawConn::connect(&env.socket);
    raw.send_line(r#"{"jsonrpc":"2.0","id":"first","method":"initialize","params":{}}"#);
    let r = raw.read_json();
    assert_eq!(r["id"], "first", "{r}");
    assert_eq!(r["error"]["code"], -32006, "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_sessions"));
    raw.expect_eof();
    d.log.wait_for(&["refused a session", "max_sessions=2"]);

    // Control requests are not sessions: status works at the limit.
    assert_eq!(d.status()["sessions"], 2);
    // The open sessions are untouched.
    assert!(a.request("ping", json!({}))["result"].is_object());

    // A reload that raises the limit applies to the next connection.
    env.write_config(&format!(
        "[daemon]\nmax_message_size = {SMALL}\nmax_sessions = 3\n[defaults]\nrestart_backoff = \"100ms\"\n\n{}",
        fixture_server("alpha", &[])
    ));
    let out = Command::new(DAEMON)
        .args(["reload", "--socket"])
        .arg(&env.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut third = Client::initialized(&env.socket);
    assert!(third.request("ping", json!({}))["result"].is_object());

    // Closing a session frees its slot.
    drop(a);
    d.wait_status("two sessions again", |st| st["sessions"] == 2);
    let mut fourth = admitted(&env);
    fourth.send_line(r#"{"jsonrpc":"2.0","id":"again","method":"ping"}"#);
    assert_eq!(fourth.read_json()["id"], "again");
}

/// Connects a plain client, retrying while the daemon refuses for the limit:
/// the slot of a session that just ended is released a moment after
/// `status` stops counting it. Each retry follows a refusal (an event), and
/// there are few.
fn admitted(env: &Env) -> RawConn {
    for _ in 0..50 {
        let mut c = RawConn::connect(&env.socket);
        c.send_line(r#"{"jsonrpc":"2.0","id":"probe","method":"ping"}"#);
        let r = c.read_json();
        if r.get("result").is_some() {
            return c;
        }
        assert_eq!(r["error"]["code"], -32006, "{r}");
    }
    panic!("never admitted after a session closed");
}

#[test]
fn a_connection_that_stays_silent_is_dropped_after_handshake_timeout() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "handshake_timeout = \"1s\"");
    let mut good = RawConn::connect(&env.socket);
    good.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(good.read_json()["id"], 1);

    let mut silent = RawConn::connect(&env.socket);
    let mut partial = RawConn::connect(&env.socket);
    partial.send_bytes(br#"{"jsonrpc":"2.0","id":1,"#);
    silent.expect_eof();
    partial.expect_eof();
    d.log
        .wait_for(&["dropped a connection that sent no first line within 1s"]);

    // A session that sent its first line in time is not subject to it.
    good.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(good.read_json()["id"], 2);
}

#[test]
fn an_oversized_first_line_of_a_plain_client_is_answered_like_any_other() {
    // Found by the routing property test: the listener dropped a plain
    // connection whose very first line was too long, where any later line
    // gets -32005 and the session goes on.
    let env = Env::new();
    let _d = small_limit_daemon(&env, "");
    let mut raw = RawConn::connect(&env.socket);
    raw.send_line(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":\"first\",\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(SMALL + 1)
    ));
    let r = raw.read_json();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!("first"), json!(-32005))
    );
    raw.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(raw.read_json()["id"], 2);
}

#[test]
fn connections_racing_for_the_last_session_slots_never_exceed_max_sessions() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "max_sessions = 3");
    // 12 clients connect at once; all that are admitted stay connected.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(12));
    let racers: Vec<_> = (0..12)
        .map(|i| {
            let (socket, barrier) = (env.socket.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = RawConn::connect(&socket);
                barrier.wait();
                c.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#));
                let r = c.read_json();
                (r.get("result").is_some(), c)
            })
        })
        .collect();
    let outcomes: Vec<(bool, RawConn)> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let admitted = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(admitted, 3, "exactly max_sessions admitted");
    assert_eq!(d.status()["sessions"], 3);
}

#[test]
fn connections_waiting_for_their_first_line_are_bounded_too() {
    let env = Env::new();
    let d = small_limit_daemon(&env, "max_sessions = 2\nhandshake_timeout = \"3s\"");
    // max_sessions + 64 may wait for their first line at once.
    let mut silent: Vec<RawConn> = (0..66).map(|_| RawConn::connect(&env.socket)).collect();
    // Each accepted connection is reading by the time a later one is
    // dropped: make sure the daemon has taken all 66 (a ping on the last
    // one would spend it, so look at the refusals instead).
    let mut extra = RawConn::connect(&env.socket);
    extra.expect_eof();
    d.log
        .wait_for(&["too many connections are waiting to send their first line"]);
    // Once the silent ones time out, connections are accepted again.
    d.log
        .wait_for_count(0, &["dropped a connection that sent no first line"], 66);
    for c in &mut silent {
        c.expect_eof();
    }
    let mut ok = RawConn::connect(&env.socket);
    ok.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(ok.read_json()["id"], 1);
}
