//! One configured server: its child process across restarts, its state, and
//! the lists it last gave.
//!
//! An [`Upstream`] is driven by one lifecycle task ([`Upstream::run`], in
//! `lifecycle`) that alone owns the `Child`: it spawns it, runs the MCP
//! handshake (initialize, initialized, the lists) within `startup_timeout`,
//! publishes the [`Connection`] for routing once ready, refreshes a list on
//! its `list_changed`, and on a crash fails in-flight calls (the connection
//! does that), kills the process group and restarts after an exponential
//! backoff. Everyone else holds an `Arc<Upstream>` and only reads.
//!
//! The last known lists (tools, prompts, resources, templates) survive
//! restarts (and daemon restarts, through the on-disk [`ToolCache`]), so
//! clients keep seeing a server's items while it comes back; calls made
//! meanwhile wait for it ([`Upstream::wait_ready`]). What outlives one child
//! instance and is shared with each instance's connection (resource
//! subscriptions, roots, the session registry) lives in a [`Context`].
//! While ready, the child is pinged every `health_interval`; a child that does
//! not answer within `health_timeout` is killed and restarted like a crash.
//!
//! An `Upstream` is one *instance* of a server (docs/INSTANCES.md): the one
//! in the supervisor's map is the server itself (and, when shared, its only
//! instance); per-client and per-workspace instances live in its pool (see
//! `instances`). A lazy or idle-stopped instance waits in state `idle`, with
//! no process, until a call wants it.

mod era;
mod handshake;
mod instances;
mod lifecycle;
mod pinning;
mod process;

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

pub use instances::{supervise, InstanceRefusal, InstanceStatus};
pub use lifecycle::backoff_delay;
pub use process::{describe_exit, raise_fd_limit};

use crate::cache::{spec_key, CachedServer, ToolCache};
use crate::catalog::{Lists, Rendered};
use crate::config::{
    EffectiveInstances, EffectiveTimeouts, ServerConfig, Share, Start, ToolFilter,
};
use crate::loglevel::Level;
use crate::pins::{Held, PinStore};
use crate::pool::{InstanceKey, Pool};
use crate::reaper::Reaper;
use crate::stderr_ring::{StderrLogs, StderrRing};
use crate::wire::{Connection, Context, Registry, Reply};

/// Lines of a child's stderr kept for `status`.
const STDERR_TAIL: usize = 20;

/// Failed starts in a row after which calls fail at once instead of
/// waiting for the next attempt.
pub const FAIL_FAST_AFTER: u32 = 3;

/// Lifecycle state of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running, started by the next call (a lazy server, or one that
    /// was stopped for idleness).
    Idle,
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
            State::Idle => "idle",
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
    /// Prompts it contributes.
    pub prompts: usize,
    /// Resources it contributes.
    pub resources: usize,
    /// Resource templates it contributes.
    pub resource_templates: usize,
    /// Last failure, if any.
    pub last_error: Option<String>,
    /// When the last failure happened (unix seconds).
    pub last_error_at_unix: Option<u64>,
    /// When the running instance became ready (unix seconds).
    pub started_at_unix: Option<u64>,
    /// Starts that failed in a row; from [`FAIL_FAST_AFTER`] on, calls fail
    /// at once instead of waiting.
    pub failed_starts: u32,
    /// How the last instance ended.
    pub last_exit: Option<String>,
    /// When the next restart attempt is due (unix seconds).
    pub next_attempt_unix: Option<u64>,
    /// Requests waiting for the child.
    pub in_flight: usize,
    /// URIs with resource subscriptions.
    pub subscriptions: usize,
    /// The log level the child was set to (the most verbose any session
    /// that sees it asked for).
    pub log_level: Option<&'static str>,
    /// The last lines the child wrote to stderr.
    pub stderr_tail: Vec<String>,
    /// Tools held by pinning (`stdioproxy tools pending`).
    pub held_tools: Vec<String>,
    /// `share` (docs/INSTANCES.md).
    pub share: Share,
    /// `start`.
    pub start: Start,
    /// `idle_stop` in milliseconds (`None`: never).
    pub idle_stop_ms: Option<u64>,
    /// `max_instances` (`None`: no limit).
    pub max_instances: Option<usize>,
    /// The processes that run this server (for a shared one: its one
    /// instance, also when idle).
    pub instances: Vec<InstanceStatus>,
    /// The MCP era the child speaks (`legacy` or `modern`), once known.
    pub era: Option<&'static str>,
    /// How that is known: `config`, `cache`, `probe` or `handshake`.
    pub era_source: Option<&'static str>,
    /// Tools whose exposed name had to be shortened, with the original.
    pub shortened_tools: Vec<ShortenedName>,
}

/// An exposed name and the `<server>__<name>` it stands for.
#[derive(Clone, Debug, Serialize)]
pub struct ShortenedName {
    /// What clients see and call.
    pub name: String,
    /// `<server>__<name>` as the server named it.
    pub original: String,
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
    /// Starts that failed in a row, with no ready instance in between.
    failed_starts: u32,
    last_error: Option<String>,
    /// When `last_error` happened.
    last_error_at: Option<SystemTime>,
    /// When the current instance became ready.
    ready_since: Option<SystemTime>,
    last_exit: Option<String>,
    next_attempt: Option<SystemTime>,
    init: Option<InitInfo>,
    /// Tools held because their definition is not the pinned one.
    held: Vec<Held>,
    /// True once there are lists from the server (live or cached): before
    /// that, an empty tool list is no first use to pin.
    listed: bool,
    /// The level last sent to the live child with logging/setLevel.
    applied_level: Option<Level>,
    /// When the running child was spawned.
    started: Option<SystemTime>,
    /// True once the instance got ready since it was last woken.
    served: bool,
    /// The era the child speaks, and how that is known.
    era: Option<(crate::era::Era, era::EraSource)>,
    /// A modern child's cache hints for its lists (by kind).
    list_hints: [Option<crate::era::decorate::CacheHint>; 4],
}

/// What every upstream of a daemon shares.
pub struct Shared {
    /// Called (synchronously) whenever some server's lists changed, so the
    /// catalog is rebuilt before anyone learns of the change: a server is
    /// never `ready` with its tools missing from the catalog.
    pub lists_changed: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Kills process groups if the daemon dies hard.
    pub reaper: Option<Arc<Reaper>>,
    /// Lists across daemon restarts.
    pub cache: Option<Arc<ToolCache>>,
    /// Largest message accepted from a child (applies to the next child).
    pub max_message: std::sync::atomic::AtomicUsize,
    /// Every client session.
    pub registry: Arc<Registry>,
    /// Every server's recent stderr lines (`stdioproxy logs`).
    pub stderr: Arc<StderrLogs>,
    /// Pinned tool definitions (`pin_tools`).
    pub pins: Arc<Mutex<PinStore>>,
}

/// One configured server.
pub struct Upstream {
    /// Server name (also the prefix clients see).
    pub name: Arc<str>,
    spec: ArcSwap<ServerConfig>,
    cache_key: String,
    timeouts: RwLock<EffectiveTimeouts>,
    shared: Arc<Shared>,
    ctx: Arc<Context>,
    inner: Mutex<Inner>,
    conn: ArcSwapOption<Connection>,
    lists: ArcSwap<Lists>,
    /// `lists` as clients see them (prefixed, filtered), for the catalog.
    rendered: ArcSwap<Rendered>,
    state_tx: watch::Sender<State>,
    stop_tx: watch::Sender<bool>,
    /// Bumped by `stdioproxy restart`.
    restart_tx: watch::Sender<u64>,
    /// Start attempts so far (counted once each attempt is `starting`).
    attempts: std::sync::atomic::AtomicU64,
    /// This server's stderr lines (shared with its later replacements).
    stderr: Arc<StderrRing>,
    /// Who shares this instance (`Shared` for a server's own).
    key: InstanceKey,
    /// The server this is an instance of, for a per-client or
    /// per-workspace instance (which gives its lists to the server's).
    primary: Option<std::sync::Weak<Upstream>>,
    /// A per-client or per-workspace server's instances.
    pool: Pool<Upstream>,
    /// `share`, `start`, `idle_stop`, `max_instances`.
    settings: RwLock<EffectiveInstances>,
    /// Raised when the instance should run: a lazy or idle one waits for it.
    wanted: watch::Sender<bool>,
    /// Unix milliseconds of the last call (or session change) that used it.
    last_used: std::sync::atomic::AtomicU64,
    /// Its lists came from the on-disk cache: clients can see them before
    /// its first start is decided.
    from_cache: bool,
}

impl Upstream {
    /// A server that is not started yet; call [`Upstream::run`] in a task.
    /// Its lists start as the cached ones, if the cache has them for this
    /// command.
    pub fn new(
        name: &str,
        spec: Arc<ServerConfig>,
        timeouts: EffectiveTimeouts,
        settings: EffectiveInstances,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let cache_key = spec_key(&spec);
        let cached = shared.cache.as_ref().and_then(|c| c.get(name, &cache_key));
        let from_cache = cached.is_some();
        let mut inner = Inner::default();
        // Without a catalog a lazy or pooled server is started once to
        // learn it (docs/INSTANCES.md).
        let wanted = (settings.start == Start::Eager && !settings.is_pooled()) || cached.is_none();
        let lists = match cached {
            Some(CachedServer {
                lists,
                capabilities,
            }) => {
                tracing::info!(
                    server = name,
                    tools = lists.tools.len(),
                    prompts = lists.prompts.len(),
                    resources = lists.resources.len(),
                    "serving cached lists until the server is ready"
                );
                inner.init = Some(InitInfo {
                    capabilities,
                    ..InitInfo::default()
                });
                inner.listed = true;
                lists
            }
            None => Lists::default(),
        };
        let roots = spec.roots_result().or_else(|| {
            (settings.share == Share::PerWorkspace)
                .then(instances::probe_workspace)
                .flatten()
                .map(|w| w.roots_result())
        });
        let ctx = Arc::new(Context::new(
            name.into(),
            shared.registry.clone(),
            roots.map(Arc::from),
        ));
        let stderr = shared.stderr.ring(name);
        let up = Arc::new(Self {
            name: name.into(),
            rendered: ArcSwap::from_pointee(Rendered::empty(name.into())),
            spec: ArcSwap::new(spec),
            cache_key,
            timeouts: RwLock::new(timeouts),
            shared,
            ctx,
            inner: Mutex::new(inner),
            conn: ArcSwapOption::empty(),
            lists: ArcSwap::from_pointee(lists),
            state_tx: watch::channel(State::Starting).0,
            stop_tx: watch::channel(false).0,
            restart_tx: watch::channel(0).0,
            attempts: std::sync::atomic::AtomicU64::new(0),
            stderr,
            key: InstanceKey::Shared,
            primary: None,
            pool: Pool::default(),
            settings: RwLock::new(settings),
            wanted: watch::channel(wanted).0,
            last_used: std::sync::atomic::AtomicU64::new(instances::now_ms()),
            from_cache,
        });
        up.render(&up.lists());
        up
    }

    /// Effective timeouts.
    pub fn timeouts(&self) -> EffectiveTimeouts {
        *self.timeouts.read()
    }

    /// Applies a reload that needs no new process: timeouts, tool filters
    /// and the list of roots (the child is told its roots changed).
    pub fn update(&self, spec: Arc<ServerConfig>, timeouts: EffectiveTimeouts) {
        let conn = self.conn.load_full();
        if let Some(c) = &conn {
            c.set_request_timeout(timeouts.request_timeout);
        }
        let roots_changed = self.ctx.set_roots(self.roots_for(&spec));
        let filter_changed = self.spec().tools != spec.tools;
        let pinning_changed = self.timeouts.read().pin_tools != timeouts.pin_tools;
        *self.timeouts.write() = timeouts;
        self.spec.store(spec);
        if filter_changed || pinning_changed {
            // The caller rebuilds the catalog once for the whole reload.
            self.render(&self.lists());
        }
        if let (true, Some(c)) = (roots_changed, conn) {
            tokio::spawn(async move {
                let _ = c.notify("notifications/roots/list_changed", None).await;
            });
        }
        tracing::info!(server = %self.name, "options updated in place");
    }

    /// Lets in-flight calls finish (up to `drain_timeout`), then stops the
    /// server. Used when a reload removes or replaces it; it is no longer
    /// reachable for new calls by then.
    pub async fn drain_and_stop(&self) {
        let limit = self.timeouts().drain_timeout;
        let conn = self.conn.load_full();
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
    /// it starts or restarts). Fails at once when it is stopping or stopped,
    /// or when waiting is pointless ([`Upstream::hopeless`]).
    pub async fn wait_ready(&self, limit: Duration) -> Result<Arc<Connection>, Unavailable> {
        let mut rx = self.state_tx.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                match self.connection() {
                    Ok(c) => return Ok(c),
                    Err(u) if matches!(u.state, State::Stopping | State::Stopped) => return Err(u),
                    Err(u) if self.hopeless(limit) => return Err(u),
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
    pub fn spec(&self) -> Arc<ServerConfig> {
        self.spec.load_full()
    }

    /// Which tools clients see.
    pub fn tool_filter(&self) -> ToolFilter {
        self.spec().tools.clone()
    }

    /// The lists as clients see them, for the catalog.
    pub fn rendered(&self) -> Arc<Rendered> {
        self.rendered.load_full()
    }

    fn render(&self, lists: &Lists) {
        let held = self.pin_check(lists);
        let r = Rendered::with_held(self.name.clone(), lists, &self.spec().tools, &held);
        self.rendered.store(Arc::new(r));
    }

    /// What this server shares with its connections.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Current state.
    pub fn state(&self) -> State {
        *self.state_tx.borrow()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state_tx.subscribe()
    }

    /// The last lists the child gave.
    pub fn lists(&self) -> Arc<Lists> {
        self.lists.load_full()
    }

    /// The child's initialize result (live, or its capabilities from the
    /// cache before the first start), once there is one.
    pub fn init_info(&self) -> Option<InitInfo> {
        self.lock().init.clone()
    }

    /// The child's capabilities (`Null` when not known yet).
    pub fn capabilities(&self) -> Value {
        self.lock()
            .init
            .as_ref()
            .map_or(Value::Null, |i| i.capabilities.clone())
    }

    /// The live connection, or why there is none.
    pub fn connection(&self) -> Result<Arc<Connection>, Unavailable> {
        if let Some(c) = self.conn.load().as_ref() {
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

    /// A snapshot for `status`; `exposed` counts what the catalog shows of
    /// it (tools, prompts, resources, templates).
    pub fn status(&self, exposed: [usize; 4]) -> ServerStatus {
        let inner = self.lock();
        let conn = self.conn.load_full();
        ServerStatus {
            name: self.name.to_string(),
            state: self.state(),
            pid: inner.pid,
            restarts: inner.restarts,
            tools: exposed[0],
            prompts: exposed[1],
            resources: exposed[2],
            resource_templates: exposed[3],
            last_error: inner.last_error.clone(),
            last_error_at_unix: inner
                .last_error
                .as_ref()
                .and(inner.last_error_at)
                .and_then(unix_secs),
            started_at_unix: inner.ready_since.and_then(unix_secs),
            failed_starts: inner.failed_starts,
            last_exit: inner.last_exit.clone(),
            next_attempt_unix: inner.next_attempt.and_then(unix_secs),
            in_flight: conn.map_or(0, |c| c.in_flight()),
            subscriptions: self.ctx.subscriptions.len(),
            log_level: inner.applied_level.map(Level::as_str),
            held_tools: inner.held.iter().map(|h| h.tool.clone()).collect(),
            stderr_tail: self
                .stderr
                .last(STDERR_TAIL)
                .into_iter()
                .map(|l| l.text)
                .collect(),
            share: self.settings().share,
            start: self.settings().start,
            idle_stop_ms: self.settings().idle_stop.map(|d| d.as_millis() as u64),
            max_instances: self.settings().max_instances,
            instances: Vec::new(),
            era: inner.era.map(|(e, _)| e.as_str()),
            era_source: inner.era.map(|(_, s)| s.as_str()),
            shortened_tools: Vec::new(),
        }
    }

    /// Sets the child's log level to the most verbose level that a session
    /// seeing this server asked for, when that changed and the child
    /// declared logging. Called when a session sets its level or leaves, and
    /// when a new instance becomes ready.
    pub fn sync_log_level(self: &Arc<Self>) {
        let wanted = self
            .ctx
            .audience()
            .iter()
            .filter_map(|l| l.log_level())
            .min();
        let Some(wanted) = wanted else { return };
        let Ok(conn) = self.connection() else { return };
        if self.capabilities().get("logging").is_none() {
            return;
        }
        {
            let mut inner = self.lock();
            if inner.applied_level == Some(wanted) {
                return;
            }
            inner.applied_level = Some(wanted);
        }
        let timeout = self.timeouts().request_timeout;
        let name = self.name.clone();
        tokio::spawn(async move {
            let params = serde_json::json!({ "level": wanted.as_str() }).to_string();
            match conn
                .request("logging/setLevel", Some(&params), timeout)
                .await
            {
                Ok(Reply::Result(_)) => {
                    tracing::debug!(server = %name, level = wanted.as_str(), "server log level set");
                }
                Ok(Reply::Error(e)) => {
                    tracing::warn!(server = %name, "server refused logging/setLevel: {}", e.get());
                }
                Err(e) => tracing::debug!(server = %name, "cannot set the server's log level: {e}"),
            }
        });
    }

    /// Drops a departed session's subscriptions (unsubscribing the child
    /// from URIs nobody watches any more) and, when it had set a log level,
    /// lowers the child's level if that session wanted the most verbose one.
    pub async fn session_gone(self: &Arc<Self>, session: u64, had_level: bool) {
        if !self.ctx.subscriptions.is_empty() {
            let conn = self.connection().ok();
            self.ctx
                .subscriptions
                .remove_session(conn.as_deref(), session, self.timeouts().request_timeout)
                .await;
        }
        if had_level {
            self.sync_log_level();
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    fn set_state(&self, state: State) {
        let old = self.state_tx.send_replace(state);
        if old != state {
            tracing::info!(server = %self.name, from = old.as_str(), to = state.as_str(), "server state changed");
        }
    }

    fn set_conn(&self, conn: Option<Arc<Connection>>) {
        self.conn.store(conn);
    }

    /// Start attempts so far; one more is counted after each `starting`.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_lists(&self, lists: Lists) {
        self.lock().listed = true;
        if let Some(primary) = self.primary() {
            // The catalog is the server's: an instance's lists are its.
            self.lists.store(Arc::new(lists.clone()));
            return primary.adopt_lists(lists, self.init_info());
        }
        if let Some(cache) = &self.shared.cache {
            cache.put(&self.name, &self.cache_key, &lists, &self.capabilities());
        }
        self.render(&lists);
        self.lists.store(Arc::new(lists));
        if let Some(rebuild) = self.shared.lists_changed.get() {
            rebuild();
        }
    }

    fn push_stderr(&self, pid: u32, line: &str) {
        self.stderr.push(pid, line);
    }

    /// Restarts the child now (a new process at once, the backoff reset),
    /// as `stdioproxy restart` asks, and every per-client or per-workspace
    /// instance of the server; returns how many of those there were.
    pub fn restart(&self) -> usize {
        self.restart_tx.send_modify(|n| *n += 1);
        let members = self.pool.snapshot();
        for (_, m) in &members {
            m.restart_tx.send_modify(|n| *n += 1);
        }
        members.len()
    }
}

fn unix_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}
