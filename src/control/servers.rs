//! Control verbs about one server: `restart`, `logs` (with `--follow`),
//! `tools-pending` and `tools-approve` (pinning).
//!
//! Each names its server in the hello's `args`; a name the config does not
//! have is refused with the list of servers that exist, which the CLI
//! prints before exiting 1. `logs --follow` is the one control request
//! whose answer is more than one line: the connection stays open and gets
//! a line per batch of new stderr lines until the client or the daemon
//! goes away.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::Control;
use crate::stderr_ring::StderrLine;
use crate::upstream::{State, Upstream};

/// Most lines `logs -n` returns (the ring holds at most this many anyway).
const MAX_LINES: usize = crate::stderr_ring::MAX_LINES;

impl Control {
    /// The upstream named by `args.server`, or the refusal.
    fn named(&self, args: &Value) -> Result<std::sync::Arc<Upstream>, Value> {
        let Some(name) = args.get("server").and_then(Value::as_str) else {
            return Err(json!({ "ok": false, "error": "name a server" }));
        };
        self.supervisor
            .upstream(name)
            .ok_or_else(|| json!({ "ok": false, "error": self.unknown_server(name) }))
    }

    fn unknown_server(&self, name: &str) -> String {
        let names: Vec<String> = self
            .supervisor
            .upstreams()
            .iter()
            .map(|u| u.name.to_string())
            .collect();
        let disabled = self.supervisor.disabled();
        let mut msg = if disabled.iter().any(|d| d == name) {
            format!("server {name:?} is disabled in the config")
        } else {
            format!("no server named {name:?} is running")
        };
        msg.push_str(&format!(
            "; servers: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
        msg
    }

    /// `restart`: a new instance now, backoff reset; answers once it is
    /// ready (or failed to start).
    pub(super) async fn restart(&self, args: &Value) -> Value {
        let up = match self.named(args) {
            Ok(up) => up,
            Err(e) => return e,
        };
        if up.settings().is_pooled() {
            // The server's own process only learns the catalog; its
            // instances (one per client or workspace) are what runs.
            let n = up.restart();
            return json!({
                "ok": true,
                "message": format!("restarting {n} instance(s) of {} now (each with its backoff reset)", up.name),
            });
        }
        let before = up.status([0; 4]).pid;
        let attempts = up.attempts();
        let mut rx = up.watch_state();
        up.restart();
        let t = up.timeouts();
        let limit = t.stop_grace + t.startup_timeout + Duration::from_secs(5);
        // Settled: a new attempt began and came to an end state.
        let settled = tokio::time::timeout(
            limit,
            rx.wait_for(|s| {
                up.attempts() > attempts
                    && matches!(s, State::Ready | State::Backoff | State::Stopped)
            }),
        )
        .await
        .map(|_| ());
        let st = up.status([0; 4]);
        let pid = |p: Option<u32>| p.map_or("-".to_string(), |p| p.to_string());
        match (settled, st.state) {
            (Ok(()), State::Ready) => json!({
                "ok": true,
                "message": format!("restarted {} (pid {} -> {})", up.name, pid(before), pid(st.pid)),
                "pid": st.pid,
            }),
            (Ok(()), _) => json!({
                "ok": false,
                "error": format!("restarted {}, but it did not start: {}", up.name,
                    st.last_error.unwrap_or_else(|| st.state.as_str().to_string())),
            }),
            (Err(_), _) => json!({
                "ok": false,
                "error": format!("restarted {}, but it is still {} after {limit:?}", up.name, st.state.as_str()),
            }),
        }
    }

    /// `tools-pending`: every held tool, with the trusted and offered text.
    pub(super) fn tools_pending(&self) -> Value {
        let held: Vec<_> = self
            .supervisor
            .upstreams()
            .iter()
            .flat_map(|u| u.held())
            .collect();
        let store = self.supervisor.pins().lock();
        json!({
            "ok": true,
            "held": held,
            "store": store.path().display().to_string(),
            "store_error": store.error(),
        })
    }

    /// `tools-approve`: trusts the held tools of one server (or one tool);
    /// clients get `list_changed` from the catalog rebuild.
    pub(super) fn tools_approve(&self, args: &Value) -> Value {
        let up = match self.named(args) {
            Ok(up) => up,
            Err(e) => return e,
        };
        let tool = args.get("tool").and_then(Value::as_str);
        match up.approve(tool) {
            Ok(approved) => {
                self.supervisor.rebuild_catalog();
                json!({ "ok": true, "approved": approved })
            }
            Err(e) => json!({ "ok": false, "error": e }),
        }
    }

    /// `logs`: the last `args.lines` stderr lines of a server; with
    /// `args.follow`, then every new line until the peer or the daemon
    /// goes away.
    pub async fn logs<W: AsyncWrite + Unpin>(
        &self,
        request: &crate::proto::Hello,
        write: &mut W,
        mut shutdown: watch::Receiver<bool>,
        peer_gone: impl std::future::Future<Output = ()>,
    ) {
        let args = request.args.as_ref().unwrap_or(&Value::Null);
        let name = args
            .get("server")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ring = match self.supervisor.upstream(name) {
            Some(_) => self.supervisor.stderr_logs().ring(name),
            None => {
                let e = json!({ "ok": false, "error": self.unknown_server(name) });
                let _ = write.write_all(format!("{e}\n").as_bytes()).await;
                return;
            }
        };
        let n = args
            .get("lines")
            .and_then(Value::as_u64)
            .map_or(100, |n| (n as usize).min(MAX_LINES));
        let mut newest = ring.subscribe();
        let lines = ring.last(n);
        let mut seen = lines.last().map_or(*newest.borrow_and_update(), |l| l.seq);
        let first = json!({ "ok": true, "lines": render(&lines) });
        if write
            .write_all(format!("{first}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
        if !args.get("follow").and_then(Value::as_bool).unwrap_or(false) {
            return;
        }
        tokio::pin!(peer_gone);
        loop {
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { return },
                _ = crate::flag::raised(&mut shutdown) => return,
                _ = &mut peer_gone => return,
            }
            let (lines, missed) = ring.since(seen);
            if let Some(last) = lines.last() {
                seen = last.seq;
            }
            let batch = json!({ "lines": render(&lines), "missed": missed });
            if write
                .write_all(format!("{batch}\n").as_bytes())
                .await
                .is_err()
                || write.flush().await.is_err()
            {
                return;
            }
        }
    }
}

fn render(lines: &[StderrLine]) -> Vec<String> {
    lines.iter().map(StderrLine::render).collect()
}
