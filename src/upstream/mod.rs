//! One configured server: its child process across restarts, its state, and
//! the tools it last listed.
//!
//! An [`Upstream`] is driven by one lifecycle task ([`Upstream::run`]) that
//! alone owns the `Child`: it spawns it, runs the MCP handshake (initialize,
//! initialized, tools/list) within `startup_timeout`, publishes the
//! [`Connection`] for routing once ready, refreshes the tool list on
//! `list_changed`, and on a crash fails in-flight calls (the connection does
//! that), kills the process group and restarts after an exponential backoff.
//! Everyone else holds an `Arc<Upstream>` and only reads.
//!
//! The last known tool list survives restarts (and daemon restarts, through
//! the on-disk [`ToolCache`]), so clients keep seeing a server's tools while
//! it comes back; calls made meanwhile wait for it ([`Upstream::wait_ready`]).
//! While ready, the child is pinged every `health_interval`; a child that does
//! not answer within `health_timeout` is killed and restarted like a crash.

mod connection;
mod process;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::io::BufReader;
use tokio::sync::{mpsc, watch, Notify};

pub use connection::{Connection, Event, Reply};
pub use process::describe_exit;

use crate::cache::{spec_key, ToolCache};
use crate::config::{EffectiveTimeouts, ServerConfig};
use crate::error::UpstreamError;
use crate::framing::{Frame, LineReader};
use crate::reaper::Reaper;

/// Protocol version the daemon asks children for.
pub const CHILD_PROTOCOL_VERSION: &str = "2025-11-25";
/// Lines of a child's stderr kept for `status`.
const STDERR_TAIL: usize = 20;
/// A server that stayed up this long has its backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Lifecycle state of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Spawning or handshaking.
    Starting,
    /// Serving calls.
    Ready,
    /// Waiting before the next restart attempt.
    Backoff,
    /// Being stopped.
    Stopping,
    /// Stopped for good.
    Stopped,
}

impl State {
    /// Lower-case name, as in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }
}

/// What a child said about itself in its initialize result.
#[derive(Clone, Debug, Default)]
pub struct InitInfo {
    /// Negotiated protocol version.
    pub protocol_version: String,
    /// The child's capabilities.
    pub capabilities: Value,
    /// The child's `serverInfo`.
    pub server_info: Value,
    /// The child's `instructions`.
    pub instructions: Option<String>,
}

/// A snapshot for `status`.
#[derive(Clone, Debug, Serialize)]
pub struct ServerStatus {
    /// Server name.
    pub name: String,
    /// Lifecycle state.
    pub state: State,
    /// Pid of the running child.
    pub pid: Option<u32>,
    /// How many times it was restarted after a failure.
    pub restarts: u64,
    /// Tools it contributes.
    pub tools: usize,
    /// Last failure, if any.
    pub last_error: Option<String>,
    /// How the last instance ended.
    pub last_exit: Option<String>,
    /// When the next restart attempt is due (unix seconds).
    pub next_attempt_unix: Option<u64>,
    /// Requests waiting for the child.
    pub in_flight: usize,
    /// The last lines the child wrote to stderr.
    pub stderr_tail: Vec<String>,
}

/// Why a server cannot take a call right now.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// Server name.
    pub server: String,
    /// Its state.
    pub state: State,
    /// Its last error.
    pub last_error: Option<String>,
}

impl Unavailable {
    /// A sentence for the client.
    pub fn message(&self) -> String {
        let mut m = format!(
            "server '{}' is not ready (state: {})",
            self.server,
            self.state.as_str()
        );
        if let Some(e) = &self.last_error {
            m.push_str(&format!("; last error: {e}"));
        }
        m
    }
}

#[derive(Default)]
struct Inner {
    pid: Option<u32>,
    restarts: u64,
    last_error: Option<String>,
    last_exit: Option<String>,
    next_attempt: Option<SystemTime>,
    stderr_tail: VecDeque<String>,
    init: Option<InitInfo>,
}

/// What every upstream of a daemon shares.
pub struct Shared {
    /// Notified whenever some server's tools may have changed.
    pub catalog_dirty: Arc<Notify>,
    /// Kills process groups if the daemon dies hard.
    pub reaper: Option<Arc<Reaper>>,
    /// Tool lists across daemon restarts.
    pub cache: Option<Arc<ToolCache>>,
    /// Largest message accepted from a child (applies to the next child).
    pub max_message: std::sync::atomic::AtomicUsize,
}

/// One configured server.
pub struct Upstream {
    /// Server name (also the tool prefix).
    pub name: Arc<str>,
    spec: Arc<ServerConfig>,
    cache_key: String,
    timeouts: RwLock<EffectiveTimeouts>,
    shared: Arc<Shared>,
    inner: Mutex<Inner>,
    conn: RwLock<Option<Arc<Connection>>>,
    tools: RwLock<Arc<Vec<Value>>>,
    state_tx: watch::Sender<State>,
    stop_tx: watch::Sender<bool>,
}

enum InstanceEnd {
    Stopped,
    Failed { error: String, ran_for: Duration },
}

/// Why a ready instance stopped serving.
enum Crash {
    Closed,
    Exited(Option<std::process::ExitStatus>),
    Unhealthy(String),
}

impl Upstream {
    /// A server that is not started yet; call [`Upstream::run`] in a task.
    /// Its tools start as the cached list, if the cache has one for this
    /// command.
    pub fn new(
        name: &str,
        spec: Arc<ServerConfig>,
        timeouts: EffectiveTimeouts,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let cache_key = spec_key(&spec);
        let cached = shared.cache.as_ref().and_then(|c| c.get(name, &cache_key));
        if let Some(t) = &cached {
            tracing::info!(
                server = name,
                tools = t.len(),
                "serving cached tools until the server is ready"
            );
        }
        Arc::new(Self {
            name: name.into(),
            spec,
            cache_key,
            timeouts: RwLock::new(timeouts),
            shared,
            inner: Mutex::new(Inner::default()),
            conn: RwLock::new(None),
            tools: RwLock::new(Arc::new(cached.unwrap_or_default())),
            state_tx: watch::channel(State::Starting).0,
            stop_tx: watch::channel(false).0,
        })
    }

    /// Effective timeouts.
    pub fn timeouts(&self) -> EffectiveTimeouts {
        *self.timeouts.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies new timeouts in place (a reload that needs no new process).
    pub fn set_timeouts(&self, timeouts: EffectiveTimeouts) {
        *self.timeouts.write().unwrap_or_else(|e| e.into_inner()) = timeouts;
        if let Some(c) = self.conn.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            c.set_request_timeout(timeouts.request_timeout);
        }
        tracing::info!(server = %self.name, "timeouts updated in place");
    }

    /// Lets in-flight calls finish (up to `drain_timeout`), then stops the
    /// server. Used when a reload removes or replaces it; it is no longer
    /// reachable for new calls by then.
    pub async fn drain_and_stop(&self) {
        let limit = self.timeouts().drain_timeout;
        let conn = self.conn.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(conn) = conn {
            let n = conn.in_flight();
            if n > 0 {
                tracing::info!(server = %self.name, in_flight = n, "draining in-flight calls before stopping");
                if tokio::time::timeout(limit, conn.wait_idle()).await.is_err() {
                    tracing::warn!(server = %self.name, in_flight = conn.in_flight(),
                        "drain timeout ({limit:?}) reached; stopping with calls in flight");
                }
            }
        }
        self.request_stop();
        self.stopped().await;
    }

    /// Waits up to `limit` for the server to be ready (for calls made while
    /// it starts or restarts). Fails at once when it is stopping or stopped.
    pub async fn wait_ready(&self, limit: Duration) -> Result<Arc<Connection>, Unavailable> {
        let mut rx = self.state_tx.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                match self.connection() {
                    Ok(c) => return Ok(c),
                    Err(u) if matches!(u.state, State::Stopping | State::Stopped) => return Err(u),
                    Err(_) => {}
                }
                if rx.changed().await.is_err() {
                    return self.connection();
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| self.connection())
    }

    /// The config this upstream runs.
    pub fn spec(&self) -> &Arc<ServerConfig> {
        &self.spec
    }

    /// Current state.
    pub fn state(&self) -> State {
        *self.state_tx.borrow()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state_tx.subscribe()
    }

    /// The last tool list the child gave.
    pub fn tools(&self) -> Arc<Vec<Value>> {
        self.tools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The child's initialize result, once it has one.
    pub fn init_info(&self) -> Option<InitInfo> {
        self.lock().init.clone()
    }

    /// The live connection, or why there is none.
    pub fn connection(&self) -> Result<Arc<Connection>, Unavailable> {
        if let Some(c) = self.conn.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        Err(Unavailable {
            server: self.name.to_string(),
            state: self.state(),
            last_error: self.lock().last_error.clone(),
        })
    }

    /// Asks the lifecycle task to stop the child gracefully and end.
    pub fn request_stop(&self) {
        self.stop_tx.send_replace(true);
    }

    /// Waits until the lifecycle task has ended.
    pub async fn stopped(&self) {
        let mut rx = self.state_tx.subscribe();
        let _ = rx.wait_for(|s| *s == State::Stopped).await;
    }

    /// A snapshot for `status`.
    pub fn status(&self, tools_exposed: usize) -> ServerStatus {
        let inner = self.lock();
        let conn = self.conn.read().unwrap_or_else(|e| e.into_inner()).clone();
        ServerStatus {
            name: self.name.to_string(),
            state: self.state(),
            pid: inner.pid,
            restarts: inner.restarts,
            tools: tools_exposed,
            last_error: inner.last_error.clone(),
            last_exit: inner.last_exit.clone(),
            next_attempt_unix: inner.next_attempt.and_then(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            }),
            in_flight: conn.map_or(0, |c| c.in_flight()),
            stderr_tail: inner.stderr_tail.iter().cloned().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: State) {
        let old = self.state_tx.send_replace(state);
        if old != state {
            tracing::info!(server = %self.name, from = old.as_str(), to = state.as_str(), "server state changed");
        }
    }

    fn set_conn(&self, conn: Option<Arc<Connection>>) {
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    fn set_tools(&self, tools: Vec<Value>) {
        if let Some(cache) = &self.shared.cache {
            cache.put(&self.name, &self.cache_key, &tools);
        }
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tools);
        self.shared.catalog_dirty.notify_one();
    }

    /// The lifecycle: start, serve, restart with backoff, until stopped.
    pub async fn run(self: Arc<Self>) {
        let mut stop_rx = self.stop_tx.subscribe();
        let mut failures: u32 = 0;
        while !*stop_rx.borrow() {
            self.set_state(State::Starting);
            match self.run_instance(&mut stop_rx).await {
                InstanceEnd::Stopped => break,
                InstanceEnd::Failed { error, ran_for } => {
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
                        inner.restarts += 1;
                        inner.pid = None;
                        inner.next_attempt = Some(SystemTime::now() + delay);
                    }
                    self.set_state(State::Backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = crate::flag::raised(&mut stop_rx) => break,
                    }
                    self.lock().next_attempt = None;
                }
            }
        }
        self.set_conn(None);
        self.lock().pid = None;
        self.set_state(State::Stopped);
    }

    async fn run_instance(self: &Arc<Self>, stop_rx: &mut watch::Receiver<bool>) -> InstanceEnd {
        let started = Instant::now();
        let failed = |error: String| InstanceEnd::Failed {
            error,
            ran_for: started.elapsed(),
        };
        let mut spawned = match process::spawn(&self.spec) {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let pid = spawned.pid;
        self.lock().pid = Some(pid);
        let reaper = self.shared.reaper.clone();
        if let Some(r) = &reaper {
            r.track(pid);
        }
        let end = self.serve_instance(&mut spawned, stop_rx, started).await;
        if let Some(r) = &reaper {
            r.untrack(pid);
        }
        end
    }

    async fn serve_instance(
        self: &Arc<Self>,
        spawned: &mut process::Spawned,
        stop_rx: &mut watch::Receiver<bool>,
        started: Instant,
    ) -> InstanceEnd {
        let failed = |error: String| InstanceEnd::Failed {
            error,
            ran_for: started.elapsed(),
        };
        let pid = spawned.pid;
        tracing::info!(server = %self.name, pid, command = %self.spec.command.0, "server process started");
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            spawned.stdin.take(),
            spawned.stdout.take(),
            spawned.stderr.take(),
        ) else {
            return failed("child pipes were not created".into());
        };
        tokio::spawn(capture_stderr(self.clone(), stderr));
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let conn = Connection::start(
            self.name.clone(),
            stdin,
            stdout,
            self.shared
                .max_message
                .load(std::sync::atomic::Ordering::Relaxed),
            self.timeouts().request_timeout,
            ev_tx,
        );

        let handshake = tokio::select! {
            r = tokio::time::timeout(self.timeouts().startup_timeout, self.handshake(&conn)) => r,
            _ = crate::flag::raised(stop_rx) => {
                self.set_state(State::Stopping);
                conn.close_stdin();
                process::stop(&mut spawned.child, pid, self.timeouts().stop_grace).await;
                return InstanceEnd::Stopped;
            }
        };
        let (init, tools) = match handshake {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let exit = describe_exit(process::kill(&mut spawned.child, pid).await);
                self.lock().last_exit = Some(exit.clone());
                return failed(format!("startup failed: {e} ({exit})"));
            }
            Err(_) => {
                process::kill(&mut spawned.child, pid).await;
                return failed(format!(
                    "did not finish starting (initialize and tools/list) within {:?}",
                    self.timeouts().startup_timeout
                ));
            }
        };
        let tool_count = tools.len();
        self.lock().init = Some(init);
        self.set_tools(tools);
        self.set_conn(Some(conn.clone()));
        self.lock().last_error = None;
        tracing::info!(server = %self.name, pid, tools = tool_count, "server ready");
        self.set_state(State::Ready);

        let health = self.timeouts().health_interval;
        let mut next_ping = tokio::time::Instant::now() + health;
        let end = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_ping), if !health.is_zero() => {
                    match conn.request("ping", None, self.timeouts().health_timeout).await {
                        // An error reply still proves the child is responsive.
                        Ok(_) => next_ping = tokio::time::Instant::now() + health,
                        Err(UpstreamError::Timeout(t)) => {
                            break Crash::Unhealthy(format!("did not answer a health ping within {t:?}"));
                        }
                        Err(_) => break Crash::Closed,
                    }
                }
                ev = events.recv() => match ev {
                    Some(Event::ToolsChanged) => {
                        // Coalesce a burst (some servers send several in a row).
                        while let Ok(Event::ToolsChanged) = events.try_recv() {}
                        match list_all_tools(&conn, self.timeouts().request_timeout).await {
                            Ok(tools) => {
                                tracing::info!(server = %self.name, tools = tools.len(), "server's tool list changed");
                                self.set_tools(tools);
                            }
                            Err(e) => tracing::warn!(server = %self.name, "cannot refresh tools after list_changed: {e}"),
                        }
                    }
                    Some(Event::Closed) | None => break Crash::Closed,
                },
                status = spawned.child.wait() => break Crash::Exited(status.ok()),
                _ = crate::flag::raised(stop_rx) => {
                    self.set_state(State::Stopping);
                    self.set_conn(None);
                    conn.close_stdin();
                    let exit = process::stop(&mut spawned.child, pid, self.timeouts().stop_grace).await;
                    tracing::info!(server = %self.name, pid, exit = %describe_exit(exit), "server stopped");
                    return InstanceEnd::Stopped;
                }
            }
        };
        // Crash: stop routing to it, make sure the whole group is gone.
        self.set_conn(None);
        conn.close_stdin();
        let (exit, unhealthy) = match end {
            Crash::Exited(status) => {
                process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                (status, None)
            }
            Crash::Closed => (process::kill(&mut spawned.child, pid).await, None),
            Crash::Unhealthy(why) => {
                tracing::warn!(server = %self.name, pid, "{why}; killing it");
                (process::kill(&mut spawned.child, pid).await, Some(why))
            }
        };
        let exit = describe_exit(exit);
        self.lock().last_exit = Some(exit.clone());
        match unhealthy {
            Some(why) => failed(format!("server {why} (killed: {exit})")),
            None => failed(format!("server exited ({exit})")),
        }
    }

    async fn handshake(&self, conn: &Connection) -> Result<(InitInfo, Vec<Value>), UpstreamError> {
        let params = serde_json::json!({
            "protocolVersion": CHILD_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") },
        })
        .to_string();
        // The outer startup timeout bounds the whole handshake.
        let forever = Duration::from_secs(24 * 3600);
        let result = match conn.request("initialize", Some(&params), forever).await? {
            Reply::Result(r) => r,
            Reply::Error(e) => return Err(UpstreamError::Rpc(e.get().to_string())),
        };
        let v: Value = serde_json::from_str(result.get())
            .map_err(|e| UpstreamError::Protocol(format!("initialize result: {e}")))?;
        let init = InitInfo {
            protocol_version: v["protocolVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            capabilities: v.get("capabilities").cloned().unwrap_or(Value::Null),
            server_info: v.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: v
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if !crate::session::SUPPORTED_VERSIONS.contains(&init.protocol_version.as_str()) {
            tracing::warn!(server = %self.name, version = %init.protocol_version,
                "server answered with a protocol version stdioproxy does not know; continuing");
        }
        conn.notify("notifications/initialized", None).await?;
        let tools = if init.capabilities.get("tools").is_some() {
            list_all_tools(conn, forever).await?
        } else {
            Vec::new()
        };
        Ok((init, tools))
    }

    fn push_stderr(&self, line: String) {
        let mut inner = self.lock();
        if inner.stderr_tail.len() == STDERR_TAIL {
            inner.stderr_tail.pop_front();
        }
        inner.stderr_tail.push_back(line);
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

/// Pulls every page of `tools/list`.
async fn list_all_tools(conn: &Connection, timeout: Duration) -> Result<Vec<Value>, UpstreamError> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let params = match &cursor {
            Some(c) => serde_json::json!({ "cursor": c }).to_string(),
            None => "{}".to_string(),
        };
        let raw = match conn.request("tools/list", Some(&params), timeout).await? {
            Reply::Result(r) => r,
            Reply::Error(e) => return Err(UpstreamError::Rpc(e.get().to_string())),
        };
        let mut page: Value = serde_json::from_str(raw.get())
            .map_err(|e| UpstreamError::Protocol(format!("tools/list result: {e}")))?;
        match page.get_mut("tools").map(Value::take) {
            Some(Value::Array(items)) => tools.extend(items),
            _ => {
                return Err(UpstreamError::Protocol(
                    "tools/list result has no tools array".into(),
                ))
            }
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_string()),
            _ => return Ok(tools),
        }
    }
    Err(UpstreamError::Protocol("tools/list never ended".into()))
}

/// Logs each stderr line of a child under its server name, and keeps the last
/// few for `status`.
async fn capture_stderr(upstream: Arc<Upstream>, stderr: tokio::process::ChildStderr) {
    let name = upstream.name.clone();
    let mut reader = LineReader::new(BufReader::new(stderr), 64 * 1024);
    loop {
        match reader.next_frame().await {
            Ok(Frame::Line(line)) => {
                let text = String::from_utf8_lossy(&line).into_owned();
                tracing::info!(target: "stdioproxy::child", server = %name, "{text}");
                upstream.push_stderr(text);
            }
            Ok(Frame::TooLong { prefix }) => {
                let text = format!("{}... (truncated)", String::from_utf8_lossy(&prefix));
                tracing::info!(target: "stdioproxy::child", server = %name, "{text}");
                upstream.push_stderr(text);
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
