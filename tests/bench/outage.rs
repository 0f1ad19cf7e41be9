//! The outage scenario: how long a client's call waits when the daemon dies
//! under it (issue 12). One client session through the shim stays open
//! across every repetition: the daemon is SIGKILLed, a call is sent during
//! the outage (the shim queues it), and a new daemon starts on the same
//! socket with the catalog cache the first one wrote (warm). Figures, each a
//! median over `outage_reps`:
//!
//! - `listen_to_answer_ms`: from the new daemon's "listening" log line to
//!   the call's answer: the shim's backoff tick, its replay, the call (which
//!   waits for the new daemon's child to start).
//! - `listen_to_resumed_ms`: the same to the answer of a `ping` queued just
//!   before the call (the daemon answers it itself): when the session is
//!   back.
//! - `kill_to_listen_ms`, `kill_to_answer_ms`: for context.

use std::time::{Duration, Instant};

use super::client::{echo_tool, is_ok, Call, Conn};
use super::{log, server_toml, shim_bin, spawn_daemon, start_daemon, Ctx, Res, DEFAULTS, T};

pub fn outage(ctx: &mut Ctx) -> Res<()> {
    let g = "outage";
    let name = "daemon-outage";
    let config = format!(
        "{DEFAULTS}{}",
        server_toml(
            "echo",
            &[
                super::python(),
                format!("{}/tests/bench/echo_server.py", super::REPO)
            ],
            &[],
        )
    );
    log("outage: kill the daemon under a live session");
    let mut d = start_daemon(ctx, name, &config, 1)?;
    let argv = vec![
        shim_bin(),
        "--socket".into(),
        d.socket.display().to_string(),
        "--reconnect-timeout".into(),
        "60s".into(),
    ];
    let mut c = Conn::spawn(&argv, &[], &ctx.errlog, "outage")?;
    let hs = c.handshake(T)?;
    let tool = echo_tool(&hs.tools).ok_or("outage: no echo tool")?;
    let call = Call::new(&tool, "across the outage");
    let mut kill_to_listen = Vec::new();
    let mut listen_to_answer = Vec::new();
    let mut kill_to_answer = Vec::new();
    let mut listen_to_resumed = Vec::new();
    for _ in 0..ctx.p.outage_reps {
        // The daemon is gone before the call is written, so it is queued.
        let _ = d.proc.child.kill();
        let _ = d.proc.child.wait();
        let killed = Instant::now();
        let ping = c.new_id();
        let id = c.new_id();
        let mut req =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{ping},\"method\":\"ping\"}}\n").into_bytes();
        call.render(id, &mut req);
        c.write(&req)?;
        d = spawn_daemon(ctx, name, &config)?;
        d.proc
            .log
            .wait_for(0, "stdioproxy listening", T)
            .map_err(|e| format!("outage: {e}"))?;
        let listening = Instant::now();
        let (mut pinged, mut answered) = (None, None);
        while answered.is_none() || pinged.is_none() {
            let (t, line) = c.next_line(killed + T)?;
            let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
            if v.get("method").is_some() {
                continue;
            }
            if !is_ok(&line) && v.get("error").is_some() {
                return Err(format!("outage: a request failed: {v}"));
            }
            match v["id"].as_u64() {
                Some(i) if i == ping => pinged = Some(t),
                Some(i) if i == id => answered = Some(t),
                _ => {}
            }
        }
        let (Some(pinged), Some(answered)) = (pinged, answered) else {
            return Err("outage: no answer".into());
        };
        listen_to_resumed.push(pinged.saturating_duration_since(listening));
        kill_to_listen.push(listening - killed);
        listen_to_answer.push(answered.saturating_duration_since(listening));
        kill_to_answer.push(answered - killed);
        // Let the new daemon's server come up before the next kill.
        d.proc
            .log
            .wait_for(0, "ready status=", T)
            .map_err(|e| format!("outage: {e}"))?;
    }
    for (metric, values) in [
        ("kill_to_listen_ms", &kill_to_listen),
        ("listen_to_answer_ms", &listen_to_answer),
        ("listen_to_resumed_ms", &listen_to_resumed),
        ("kill_to_answer_ms", &kill_to_answer),
    ] {
        for v in values {
            ctx.res.add(g, "stdioproxy", metric, ms(*v));
        }
    }
    c.close(Duration::from_millis(300));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
