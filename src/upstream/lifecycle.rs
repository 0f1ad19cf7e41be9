//! The lifecycle task of one server: spawn, handshake, serve, and restart
//! with backoff, until stopped. It alone owns the `Child`.
//!
//! Handshake: `initialize` (as client `stdioproxy`, declaring `sampling` and
//! `elicitation`, which the daemon routes to a client, and `roots` only when
//! the daemon answers `roots/list`: configured roots, a per-workspace
//! instance's workspace, or a per-client instance's owner that declared
//! `roots`), `notifications/initialized`, then every
//! page of each list the server declares, all within `startup_timeout`.
//! Serving: a health `ping` every `health_interval`; a list refreshed when
//! the child says it changed (bursts coalesced); a crash (exit, closed
//! stdout, missed ping) fails in-flight calls, kills the process group and
//! goes to backoff. Idle: a lazy instance waits (state `idle`) until a call
//! wants it; a ready one that nobody used for `idle_stop` (nothing in
//! flight) is stopped gracefully and goes back to waiting, which is not a
//! failure (no backoff, no restart count). A pool member that goes idle
//! leaves its server's pool instead, so the next call makes a new one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::BufReader;
use tokio::sync::{mpsc, watch};

use super::process::{self, describe_exit};
use super::{State, Upstream, FAIL_FAST_AFTER};
use crate::catalog::{ListKind, RawItem};
use crate::config::EffectiveTimeouts;
use crate::era::decorate::CacheHint;
use crate::error::UpstreamError;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::RawObject;
use crate::wire::{Connection, Event, Reply};

/// A server that stayed up this long has its backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

enum InstanceEnd {
    Stopped,
    /// `stdioproxy restart`: the instance was stopped to start a new one.
    Restart,
    /// Stopped gracefully for idleness (or, for a server that only learns
    /// its catalog, once learnt): not a failure.
    Idle,
    /// It failed; `was_ready` when it had got ready before.
    Failed {
        error: String,
        ran_for: Duration,
        was_ready: bool,
    },
}

/// Why an instance did not get ready.
enum Started {
    /// A stop request came first; the child was stopped gracefully.
    Stopped,
    /// A restart request came first; the child was killed.
    Restart,
    /// It failed (the error to record).
    Failed(String),
}

/// Why a ready instance stopped serving.
enum Crash {
    /// Stopped on a restart request (not a failure).
    Restarted,
    /// Not a crash: stopped gracefully because nobody used it.
    Idle,
    Closed,
    Exited(Option<std::process::ExitStatus>),
    Unhealthy(String),
}

impl Upstream {
    /// True when a call should not wait for this server: it failed to start
    /// [`FAIL_FAST_AFTER`] times in a row with no ready instance in between,
    /// or its next attempt is further away than the call could wait (its
    /// `limit`, and never more than `startup_timeout`). Waiting makes sense
    /// for a server that is starting or recovering from a crash; not for
    /// one that cannot start (a wrong command, a missing token).
    pub fn hopeless(&self, limit: Duration) -> bool {
        let inner = self.lock();
        if inner.failed_starts >= FAIL_FAST_AFTER {
            return true;
        }
        let useful = limit.min(self.timeouts().startup_timeout);
        inner.next_attempt.is_some_and(|t| {
            t.duration_since(SystemTime::now())
                .is_ok_and(|away| away > useful)
        })
    }

    /// True when clients can list what this server offers: its lists came
    /// from the cache, or it is not in its first start (it has been ready
    /// or has failed at least once, or it is in any state but starting).
    pub fn is_known(&self) -> bool {
        if self.from_cache || self.state() != State::Starting {
            return true;
        }
        let inner = self.lock();
        inner.ready_since.is_some() || inner.last_error.is_some() || inner.restarts > 0
    }

    /// Waits until [`Upstream::is_known`].
    pub async fn wait_known(&self) {
        let mut rx = self.state_tx.subscribe();
        while !self.is_known() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The lifecycle: (wait until wanted,) start, serve, restart with
    /// backoff, stop when idle, until stopped.
    pub async fn run(self: Arc<Self>) {
        let mut stop_rx = self.stop_tx.subscribe();
        let mut restart_rx = self.restart_tx.subscribe();
        let mut wanted_rx = self.wanted.subscribe();
        let mut failures: u32 = 0;
        while !*stop_rx.borrow() {
            if !*wanted_rx.borrow_and_update() {
                self.set_state(State::Idle);
                tokio::select! {
                    w = wanted_rx.wait_for(|w| *w) => if w.is_err() { break },
                    _ = crate::flag::raised(&mut stop_rx) => break,
                }
            }
            self.set_state(State::Starting);
            // After `starting`, so that a watcher who sees the count grow
            // sees this attempt's states from then on.
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            restart_rx.borrow_and_update();
            match self.run_instance(&mut stop_rx, &mut restart_rx).await {
                InstanceEnd::Stopped => break,
                InstanceEnd::Restart => {
                    failures = 0;
                    let mut inner = self.lock();
                    inner.restarts += 1;
                    inner.ready_since = None;
                    inner.pid = None;
                }
                InstanceEnd::Idle => {
                    self.lock().pid = None;
                    if self.is_member() {
                        break;
                    }
                }
                InstanceEnd::Failed {
                    error,
                    ran_for,
                    was_ready,
                } => {
                    if ran_for >= STABLE_AFTER {
                        failures = 0;
                    }
                    let delay = backoff_delay(failures, &self.timeouts());
                    failures = failures.saturating_add(1);
                    tracing::warn!(server = %self.name, error = %error,
                        retry_in_ms = delay.as_millis() as u64, "server failed; restarting after backoff");
                    {
                        let mut inner = self.lock();
                        inner.last_error = Some(error);
                        inner.last_error_at = Some(SystemTime::now());
                        inner.ready_since = None;
                        inner.restarts += 1;
                        if was_ready {
                            inner.failed_starts = 0;
                        } else {
                            inner.failed_starts = inner.failed_starts.saturating_add(1);
                        }
                        inner.pid = None;
                        inner.next_attempt = Some(SystemTime::now() + delay);
                    }
                    self.set_state(State::Backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = crate::flag::raised(&mut stop_rx) => break,
                        _ = restart_rx.changed() => {
                            tracing::info!(server = %self.name, "restart requested: starting now, backoff reset");
                            failures = 0;
                        }
                    }
                    self.lock().next_attempt = None;
                }
            }
        }
        self.set_conn(None);
        self.lock().pid = None;
        self.set_state(State::Stopped);
    }

    async fn run_instance(
        self: &Arc<Self>,
        stop_rx: &mut watch::Receiver<bool>,
        restart_rx: &mut watch::Receiver<u64>,
    ) -> InstanceEnd {
        let started = Instant::now();
        // The era to speak (config, cache, or a probe in a throwaway spawn).
        self.child_era().await;
        let spec = self.spec();
        let workspace = self.workspace_dir();
        let mut spawned = match process::spawn(&spec, workspace.as_deref(), &self.instance_vars()) {
            Ok(s) => s,
            Err(error) => {
                return InstanceEnd::Failed {
                    error,
                    ran_for: started.elapsed(),
                    was_ready: false,
                }
            }
        };
        let pid = spawned.pid;
        {
            let mut inner = self.lock();
            inner.pid = Some(pid);
            inner.started = Some(SystemTime::now());
        }
        let reaper = self.shared.reaper.clone();
        if let Some(r) = &reaper {
            r.track(pid);
        }
        let end = self
            .serve_instance(&mut spawned, stop_rx, restart_rx, started)
            .await;
        if let Some(r) = &reaper {
            r.untrack(pid);
        }
        end
    }

    /// One child instance after its spawn: start it (pipes, connection,
    /// handshake) until ready, serve while it is ready, then reap it.
    async fn serve_instance(
        self: &Arc<Self>,
        spawned: &mut process::Spawned,
        stop_rx: &mut watch::Receiver<bool>,
        restart_rx: &mut watch::Receiver<u64>,
        started: Instant,
    ) -> InstanceEnd {
        let (conn, mut events) = match self.start_instance(spawned, stop_rx, restart_rx).await {
            Ok(ready) => ready,
            Err(Started::Stopped) => return InstanceEnd::Stopped,
            Err(Started::Restart) => return InstanceEnd::Restart,
            Err(Started::Failed(error)) => {
                return InstanceEnd::Failed {
                    error,
                    ran_for: started.elapsed(),
                    was_ready: false,
                }
            }
        };
        if self.learns_only() {
            // A per-client or per-workspace server's own process only
            // learns the catalog; its instances serve the calls.
            self.going_idle();
            self.stop_gracefully(&conn, spawned, "catalog learnt").await;
            return InstanceEnd::Idle;
        }
        match self
            .serve_ready(&conn, &mut events, spawned, stop_rx, restart_rx)
            .await
        {
            None => InstanceEnd::Stopped,
            Some(Crash::Restarted) => InstanceEnd::Restart,
            Some(Crash::Idle) => InstanceEnd::Idle,
            Some(crash) => InstanceEnd::Failed {
                error: self.reap(spawned, &conn, crash).await,
                ran_for: started.elapsed(),
                was_ready: true,
            },
        }
    }

    /// Connects to the child's pipes and runs the handshake within
    /// `startup_timeout`; on success publishes the connection and the lists
    /// and goes ready. A stop request meanwhile stops the child gracefully.
    async fn start_instance(
        self: &Arc<Self>,
        spawned: &mut process::Spawned,
        stop_rx: &mut watch::Receiver<bool>,
        restart_rx: &mut watch::Receiver<u64>,
    ) -> Result<(Arc<Connection>, mpsc::UnboundedReceiver<Event>), Started> {
        let pid = spawned.pid;
        tracing::info!(server = %self.name, pid, command = %self.spec().command.0, "server process started");
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            spawned.stdin.take(),
            spawned.stdout.take(),
            spawned.stderr.take(),
        ) else {
            return Err(Started::Failed("child pipes were not created".into()));
        };
        tokio::spawn(capture_stderr(self.clone(), stderr, pid));
        let (ev_tx, events) = mpsc::unbounded_channel();
        let conn = Connection::start(
            self.ctx.clone(),
            stdin,
            stdout,
            self.shared
                .max_message
                .load(std::sync::atomic::Ordering::Relaxed),
            self.timeouts().request_timeout,
            ev_tx,
        );
        if self.era() == Some(crate::era::Era::Modern) {
            conn.set_modern();
        }

        let handshake = tokio::select! {
            r = tokio::time::timeout(self.timeouts().startup_timeout, self.handshake(&conn)) => r,
            _ = crate::flag::raised(stop_rx) => {
                self.set_state(State::Stopping);
                conn.close_stdin();
                process::stop(&mut spawned.child, pid, self.timeouts().stop_grace).await;
                return Err(Started::Stopped);
            }
            _ = restart_rx.changed() => {
                tracing::info!(server = %self.name, pid, "restart requested while starting");
                conn.close_stdin();
                let exit = process::kill(&mut spawned.child, pid).await;
                self.lock().last_exit = Some(describe_exit(exit));
                return Err(Started::Restart);
            }
        };
        let (init, lists) = match handshake {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let exit = describe_exit(process::kill(&mut spawned.child, pid).await);
                self.lock().last_exit = Some(exit.clone());
                return Err(Started::Failed(format!("startup failed: {e} ({exit})")));
            }
            Err(_) => {
                process::kill(&mut spawned.child, pid).await;
                return Err(Started::Failed(format!(
                    "did not finish starting (initialize and its lists) within {:?}",
                    self.timeouts().startup_timeout
                )));
            }
        };
        let counts = (
            lists.tools.len(),
            lists.prompts.len(),
            lists.resources.len(),
        );
        {
            let mut inner = self.lock();
            inner.init = Some(init);
            inner.applied_level = None;
        }
        self.set_lists(lists);
        self.set_conn(Some(conn.clone()));
        {
            let mut inner = self.lock();
            inner.last_error = None;
            inner.failed_starts = 0;
            inner.ready_since = Some(SystemTime::now());
        }
        tracing::info!(server = %self.name, pid, tools = counts.0, prompts = counts.1,
            resources = counts.2, "server ready");
        self.lock().served = true;
        self.set_state(State::Ready);
        self.sync_log_level();
        if !self.ctx.subscriptions.is_empty() {
            let (up, conn) = (self.clone(), conn.clone());
            tokio::spawn(async move {
                up.ctx
                    .subscriptions
                    .resubscribe(&conn, up.timeouts().request_timeout)
                    .await;
            });
        }
        Ok((conn, events))
    }

    /// Serves a ready child: health pings, list refreshes, until it crashes
    /// (returned) or a stop request stops it gracefully (`None`).
    async fn serve_ready(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        events: &mut mpsc::UnboundedReceiver<Event>,
        spawned: &mut process::Spawned,
        stop_rx: &mut watch::Receiver<bool>,
        restart_rx: &mut watch::Receiver<u64>,
    ) -> Option<Crash> {
        let health = self.timeouts().health_interval;
        let mut next_ping = tokio::time::Instant::now() + health;
        loop {
            // Re-read each time: a reload may change idle_stop in place.
            let idle_stop = self.settings().idle_stop;
            let idle_check = tokio::time::Instant::now()
                + idle_stop.map_or(Duration::ZERO, |d| {
                    d.saturating_sub(self.idle_for())
                        .clamp(Duration::from_millis(20), Duration::from_secs(1))
                });
            tokio::select! {
                _ = tokio::time::sleep_until(idle_check), if idle_stop.is_some() => {
                    if conn.in_flight() > 0 {
                        self.touch();
                    } else if idle_stop.is_some_and(|d| self.idle_for() >= d) {
                        self.going_idle();
                        self.stop_gracefully(conn, spawned, "idle").await;
                        return Some(Crash::Idle);
                    }
                }
                _ = tokio::time::sleep_until(next_ping), if !health.is_zero() => {
                    // A modern child has no ping: discover is as cheap.
                    let ping = if conn.is_modern() { "server/discover" } else { "ping" };
                    match conn.request(ping, None, self.timeouts().health_timeout).await {
                        // An error reply still proves the child is responsive.
                        Ok(_) => next_ping = tokio::time::Instant::now() + health,
                        Err(UpstreamError::Timeout(t)) => {
                            return Some(Crash::Unhealthy(format!("did not answer a health ping within {t:?}")));
                        }
                        Err(_) => return Some(Crash::Closed),
                    }
                }
                ev = events.recv() => match ev {
                    Some(Event::ListChanged(kind)) => {
                        // Coalesce a burst (some servers send several in a row).
                        let mut kinds = BTreeSet::from([kind]);
                        let mut closed = false;
                        while let Ok(ev) = events.try_recv() {
                            match ev {
                                Event::ListChanged(k) => { kinds.insert(k); }
                                Event::Closed => closed = true,
                            }
                        }
                        self.refresh(conn, &kinds).await;
                        if closed {
                            return Some(Crash::Closed);
                        }
                    }
                    Some(Event::Closed) | None => return Some(Crash::Closed),
                },
                status = spawned.child.wait() => return Some(Crash::Exited(status.ok())),
                _ = crate::flag::raised(stop_rx) => {
                    self.stop_gracefully(conn, spawned, "stop requested").await;
                    return None;
                }
                _ = restart_rx.changed() => {
                    self.stop_gracefully(conn, spawned, "restart requested").await;
                    return Some(Crash::Restarted);
                }
            }
        }
    }

    /// Stops a ready child gracefully (stdin close, grace, SIGTERM,
    /// SIGKILL), routing nothing to it any more.
    async fn stop_gracefully(&self, conn: &Connection, spawned: &mut process::Spawned, why: &str) {
        let pid = spawned.pid;
        self.set_state(State::Stopping);
        self.set_conn(None);
        conn.close_stdin();
        let exit = process::stop(&mut spawned.child, pid, self.timeouts().stop_grace).await;
        tracing::info!(server = %self.name, instance = %self.key(), pid, reason = why,
            exit = %describe_exit(exit), "server stopped");
    }

    /// After a crash: stops routing to the child, makes sure its whole group
    /// is gone, and returns the error to record.
    async fn reap(
        &self,
        spawned: &mut process::Spawned,
        conn: &Connection,
        crash: Crash,
    ) -> String {
        let pid = spawned.pid;
        self.set_conn(None);
        conn.close_stdin();
        let (exit, unhealthy) = match crash {
            Crash::Restarted => (None, None),
            Crash::Exited(status) => {
                process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                (status, None)
            }
            Crash::Closed | Crash::Idle => (process::kill(&mut spawned.child, pid).await, None),
            Crash::Unhealthy(why) => {
                tracing::warn!(server = %self.name, pid, "{why}; killing it");
                (process::kill(&mut spawned.child, pid).await, Some(why))
            }
        };
        let exit = describe_exit(exit);
        self.lock().last_exit = Some(exit.clone());
        match unhealthy {
            Some(why) => format!("server {why} (killed: {exit})"),
            None => format!("server exited ({exit})"),
        }
    }

    /// Re-reads the lists that changed and publishes them.
    async fn refresh(&self, conn: &Connection, kinds: &BTreeSet<ListKind>) {
        let mut lists = (*self.lists()).clone();
        let timeout = self.timeouts().request_timeout;
        for &kind in kinds {
            match self.list_with_hint(conn, kind, timeout).await {
                Ok(items) => {
                    tracing::info!(server = %self.name, list = kind.method(), items = items.len(),
                        "server's list changed");
                    *lists.get_mut(kind) = items;
                }
                Err(e) => {
                    tracing::warn!(server = %self.name, list = kind.method(),
                        "cannot refresh the list after list_changed: {e}");
                }
            }
        }
        self.set_lists(lists);
    }

    /// Every page of a list; a modern child's cache hint for it is kept.
    pub(super) async fn list_with_hint(
        &self,
        conn: &Connection,
        kind: ListKind,
        timeout: Duration,
    ) -> Result<Vec<RawItem>, UpstreamError> {
        if !conn.is_modern() {
            return list_all(conn, kind, timeout, None).await;
        }
        let mut hint = CacheHint {
            ttl_ms: u64::MAX,
            scope: crate::era::decorate::Scope::Public,
        };
        let items = list_all(conn, kind, timeout, Some(&mut hint)).await?;
        self.set_list_hint(kind, hint);
        Ok(items)
    }
}

/// Exponential backoff with jitter: `base * 2^failures`, capped, +-20%.
pub fn backoff_delay(failures: u32, t: &EffectiveTimeouts) -> Duration {
    let exp = t
        .restart_backoff
        .saturating_mul(2u32.saturating_pow(failures.min(20)));
    let capped = exp.min(t.restart_backoff_max);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = 0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0);
    capped.mul_f64(jitter)
}

/// Pulls every page of one list. Items stay raw JSON.
/// A modern child's pages carry cache hints: `hint` ends as the combination
/// of every page's (pass `None` for a legacy child).
async fn list_all(
    conn: &Connection,
    kind: ListKind,
    timeout: Duration,
    mut hint: Option<&mut CacheHint>,
) -> Result<Vec<RawItem>, UpstreamError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let params = match &cursor {
            Some(c) => serde_json::json!({ "cursor": c }).to_string(),
            None => "{}".to_string(),
        };
        let raw = match conn.request(kind.method(), Some(&params), timeout).await? {
            Reply::Result(r) => r,
            Reply::Error(e) => return Err(UpstreamError::Rpc(e.get().to_string())),
        };
        if let Some(h) = hint.as_mut() {
            **h = h.combine(CacheHint::of_result(raw.get()).unwrap_or(CacheHint::UNKNOWN));
        }
        let protocol =
            |what: &str| UpstreamError::Protocol(format!("{} result {what}", kind.method()));
        let page = RawObject::parse(&raw).ok_or_else(|| protocol("is not an object"))?;
        let list = page
            .get(kind.result_key())
            .and_then(|a| serde_json::from_str::<Vec<RawItem>>(a.get()).ok())
            .ok_or_else(|| protocol(&format!("has no {} array", kind.result_key())))?;
        items.extend(list);
        match page.get_str("nextCursor") {
            Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
            _ => return Ok(items),
        }
    }
    Err(UpstreamError::Protocol(format!(
        "{} never ended",
        kind.method()
    )))
}

/// Logs each stderr line of a child under its server name, and keeps it in
/// the server's ring (`status`, `stdioproxy logs`) with the instance's pid.
async fn capture_stderr(upstream: Arc<Upstream>, stderr: tokio::process::ChildStderr, pid: u32) {
    let name = upstream.name.clone();
    let mut reader = LineReader::new(BufReader::new(stderr), 64 * 1024);
    loop {
        match reader.next_frame().await {
            Ok(Frame::Line(line)) => {
                let text = String::from_utf8_lossy(&line).into_owned();
                tracing::info!(target: "stdioproxy::child", server = %name, "{text}");
                upstream.push_stderr(pid, &text);
            }
            Ok(Frame::TooLong { prefix }) => {
                let text = format!("{}... (truncated)", String::from_utf8_lossy(&prefix));
                tracing::info!(target: "stdioproxy::child", server = %name, "{text}");
                upstream.push_stderr(pid, &text);
            }
            Ok(Frame::Eof) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Timeouts;

    #[test]
    fn backoff_grows_and_caps() {
        let t = Timeouts::default().resolve(&Timeouts::default());
        let d0 = backoff_delay(0, &t);
        assert!(
            d0 >= Duration::from_millis(800) && d0 <= Duration::from_millis(1200),
            "{d0:?}"
        );
        let d3 = backoff_delay(3, &t);
        assert!(
            d3 >= Duration::from_millis(6400) && d3 <= Duration::from_millis(9600),
            "{d3:?}"
        );
        let d30 = backoff_delay(30, &t);
        assert!(d30 <= Duration::from_secs(72), "{d30:?}");
    }
}
