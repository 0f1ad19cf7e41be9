//! Supervision: crashes, hangs, slow starts, timeouts, stop and no leftovers.

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::*;

fn pid_of(d: &Daemon, server: &str) -> u32 {
    d.server_status(server)["pid"].as_u64().expect("pid") as u32
}

#[test]
fn a_child_killed_mid_call_fails_the_call_and_recovers() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nrestart_backoff = \"100ms\"\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let old = pid_of(&d, "alpha");
    let mut c = Client::initialized(&env.socket);
    c.send(&json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"alpha__sleep","arguments":{"ms":60000}}}));
    d.wait_status("a call in flight", |st| st["servers"][0]["in_flight"] == 1);
    signal(old, Signal::SIGKILL);
    let r = c.response(&json!("slow"));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    let st = d.wait_status("alpha back", |st| {
        let s = &st["servers"][0];
        s["state"] == "ready" && s["restarts"] == 1 && s["pid"].as_u64() != Some(u64::from(old))
    });
    assert!(
        st["servers"][0]["last_exit"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{st}"
    );
    assert_eq!(
        c.call_text("alpha__echo", json!({"text": "again"})),
        "again"
    );
}

#[test]
fn a_child_that_stops_answering_pings_is_restarted() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nhealth_interval = \"300ms\"\nhealth_timeout = \"300ms\"\nrestart_backoff = \"100ms\"\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let old = pid_of(&d, "alpha");
    let mut c = Client::initialized(&env.socket);
    assert_eq!(c.call_text("alpha__hang_pings", json!({})), "ok");
    d.log
        .wait_for(&["did not answer a health ping", "server=alpha"]);
    let st = d.wait_status("alpha restarted", |st| {
        let s = &st["servers"][0];
        s["state"] == "ready"
            && s["restarts"].as_u64() >= Some(1)
            && s["pid"].as_u64() != Some(u64::from(old))
    });
    assert!(!alive(old), "the hung child was killed");
    let _ = st;
    assert_eq!(
        c.call_text("alpha__echo", json!({"text": "alive"})),
        "alive"
    );
}

#[test]
fn a_child_that_exits_at_start_backs_off_with_growing_delays() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nrestart_backoff = \"50ms\"\nrestart_backoff_max = \"10s\"\n\n{}",
        fixture_server("alpha", &[("FIXTURE_EXIT_AT_START", "1")])
    );
    let d = env.start(&cfg);
    let mut delays = Vec::new();
    let mut from = 0;
    while delays.len() < 4 {
        let line = d
            .log
            .wait_for_from(from, &["restarting after backoff", "server=alpha"]);
        from = d.log.lines().iter().position(|l| *l == line).unwrap() + 1;
        let ms: u64 = line
            .split("retry_in_ms=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("retry_in_ms in the log line");
        delays.push(ms);
    }
    // 50ms x 2^n with +-20% jitter: strictly growing here.
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "{delays:?}");
    assert!(delays[3] >= 300, "{delays:?}");
    let st = d.wait_status("alpha in backoff", |st| {
        st["servers"][0]["state"] == "backoff"
    });
    let s = &st["servers"][0];
    assert!(s["restarts"].as_u64() >= Some(4), "{s}");
    assert!(s["next_attempt_unix"].is_u64(), "{s}");
    assert!(
        s["last_error"].as_str().unwrap().contains("exit status 1"),
        "{s}"
    );
    assert!(
        s["stderr_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("exiting at start")),
        "{s}"
    );
}

#[test]
fn grandchildren_die_with_their_group() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let g: u32 = c
        .call_text("alpha__spawn_grandchild", json!({}))
        .parse()
        .unwrap();
    assert!(alive(g));
    c.call("alpha__crash", json!({}));
    wait_gone(g);
}

fn daemon_with_grandchildren(env: &Env, extra: &str) -> (Daemon, Vec<u32>) {
    let cfg = format!(
        "{extra}\n{}\n{}",
        fixture_server("alpha", &[]),
        fixture_server("beta", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha", "beta"]);
    let mut c = Client::initialized(&env.socket);
    let mut pids = vec![pid_of(&d, "alpha"), pid_of(&d, "beta")];
    for s in ["alpha", "beta"] {
        pids.push(
            c.call_text(&format!("{s}__spawn_grandchild"), json!({}))
                .parse()
                .expect("grandchild pid"),
        );
    }
    for p in &pids {
        assert!(alive(*p));
    }
    (d, pids)
}

#[test]
fn sigterm_stops_everything_and_leaves_no_process() {
    let env = Env::new();
    let (mut d, pids) = daemon_with_grandchildren(&env, "");
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
    for p in pids {
        wait_gone(p);
    }
    assert!(!env.socket.exists(), "socket removed on exit");
}

#[test]
fn sigkill_of_the_daemon_leaves_no_process() {
    let env = Env::new();
    let (mut d, pids) = daemon_with_grandchildren(&env, "");
    signal(d.pid(), Signal::SIGKILL);
    let _ = d.child.wait();
    for p in pids {
        wait_gone(p);
    }
}

#[test]
fn stop_escalates_to_sigterm_and_sigkill_for_stubborn_children() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nstop_grace = \"200ms\"\n\n{}",
        fixture_server(
            "alpha",
            &[("FIXTURE_IGNORE_EOF", "1"), ("FIXTURE_IGNORE_SIGTERM", "1")]
        )
    );
    let mut d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let p = pid_of(&d, "alpha");
    assert_eq!(d.stop().code(), Some(0));
    wait_gone(p);
    assert!(d.log.contains("killed by SIGKILL"), "{:?}", d.log.lines());
}

#[test]
fn a_second_sigint_exits_at_once() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nstop_grace = \"10m\"\n\n{}",
        fixture_server(
            "alpha",
            &[("FIXTURE_IGNORE_EOF", "1"), ("FIXTURE_IGNORE_SIGTERM", "1")]
        )
    );
    let mut d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let p = pid_of(&d, "alpha");
    signal(d.pid(), Signal::SIGINT);
    d.log.wait_for(&["shutting down"]);
    d.log.wait_for(&["to=\"stopping\""]);
    signal(d.pid(), Signal::SIGINT);
    // The grace period is 10 minutes; the daemon must not wait for it.
    let st = wait_exit(&mut d.child, WAIT).expect("daemon exited after the second SIGINT");
    assert_eq!(st.code(), Some(130));
    wait_gone(p);
}

#[test]
fn requests_time_out_and_are_cancelled_upstream() {
    let env = Env::new();
    let cfg = format!(
        "[defaults]\nrequest_timeout = \"1s\"\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let r = c.call("alpha__sleep", json!({"ms": 30000}));
    assert_eq!(r["error"]["code"], -32004, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{r}"
    );
    let cancelled: Value =
        serde_json::from_str(&c.call_text("alpha__cancelled", json!({}))).unwrap();
    assert_eq!(
        cancelled.as_array().map(Vec::len),
        Some(1),
        "the child got notifications/cancelled: {cancelled}"
    );
}

#[test]
fn progress_reaches_only_its_requester_with_its_own_token_and_extends_the_timeout() {
    let env = Env::new();
    // Each progress step comes 400ms apart, longer in total than the 1s
    // request timeout: progress must keep the request alive.
    let cfg = format!(
        "[defaults]\nrequest_timeout = \"1s\"\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["alpha"]);
    let mut a = Client::initialized(&env.socket);
    let mut b = Client::initialized(&env.socket);
    let call = |steps: u64| json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__progress","arguments":{"steps":steps,"ms":400},"_meta":{"progressToken":1}}});
    a.send(&call(4));
    b.send(&call(2));
    let ra = a.response(&json!(1));
    let rb = b.response(&json!(1));
    assert_eq!(ra["result"]["content"][0]["text"], "done 4", "{ra}");
    assert_eq!(rb["result"]["content"][0]["text"], "done 2", "{rb}");
    for (c, n) in [(&mut a, 4), (&mut b, 2)] {
        let mut got = Vec::new();
        while let Some(v) = c.try_backlog(|v| v["method"] == "notifications/progress") {
            assert_eq!(v["params"]["progressToken"], 1, "{v}");
            got.push(v["params"]["progress"].clone());
        }
        assert_eq!(got.len(), n, "{got:?}");
    }
}

#[test]
fn cached_tools_are_listed_before_the_child_is_ready_and_calls_wait_for_it() {
    let env = Env::new();
    let mut d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    assert_eq!(d.stop().code(), Some(0));
    drop(d);
    // Same command, slow to start now.
    env.write_config(&format!(
        "[defaults]\nstartup_timeout = \"60s\"\n\n{}",
        fixture_server("alpha", &[("FIXTURE_STARTUP_DELAY_MS", "4000")])
    ));
    let d = Daemon::start(&env, &[]);
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    let st = d.server_status("alpha");
    assert_eq!(st["state"], "starting", "listed while starting: {st}");
    assert!(names.contains(&"alpha__echo".to_string()), "{names:?}");
    // A call made now waits for the server and succeeds.
    assert_eq!(
        c.call_text("alpha__echo", json!({"text": "waited"})),
        "waited"
    );
    assert_eq!(d.server_status("alpha")["state"], "ready");
}

#[test]
fn a_call_to_a_server_starting_for_the_first_time_waits_for_its_tools() {
    let env = Env::new();
    // Nothing cached: the server lists nothing until it is ready.
    let d = env.start(&fixture_server(
        "slow",
        &[("FIXTURE_STARTUP_DELAY_MS", "1500")],
    ));
    let mut c = Client::initialized(&env.socket);
    let st = d.server_status("slow");
    assert_eq!(st["state"], "starting", "{st}");
    assert_eq!(st["tools"], 0, "{st}");
    assert_eq!(c.call_text("slow__echo", json!({"text": "first"})), "first");
    // A name the server does not have is still unknown once it is ready.
    assert_eq!(c.call("slow__nope", json!({}))["error"]["code"], -32602);
}

/// The soft open-file limit in /proc/PID/limits.
fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    line.split_whitespace()
        .nth(3)
        .expect("soft")
        .parse()
        .expect("number")
}

#[test]
fn the_daemon_raises_its_fd_limit_and_children_keep_the_original() {
    let env = Env::new();
    env.write_config(&fixture_server("alpha", &[]));
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 512 && exec \"$0\" serve --config \"$1\" --socket \"$2\"")
        .arg(DAEMON)
        .arg(&env.config)
        .arg(&env.socket)
        .env("XDG_CACHE_HOME", env.path().join("cache"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = Log::default();
    log.collect(child.stderr.take().unwrap());
    log.wait_for(&["server ready", "alpha"]);
    let hard: u64 = {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let hard = line.split_whitespace().nth(4).unwrap();
        hard.parse().unwrap_or(u64::MAX)
    };
    let daemon = soft_nofile(child.id());
    assert!(
        daemon > 512 || hard <= 512,
        "daemon soft limit {daemon} (hard {hard})"
    );
    let mut c = Client::initialized(&env.socket);
    let pid: u32 = c
        .call_text("alpha__whoami", json!({}))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        soft_nofile(pid),
        512,
        "the child keeps the limit the daemon got"
    );
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    wait_exit(&mut child, WAIT).expect("daemon exit");
}
