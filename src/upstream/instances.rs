//! The instances of a server (docs/INSTANCES.md): which one a session's call
//! goes to, starting lazy and idle ones on demand, the per-client and
//! per-workspace instances in the server's [`Pool`], and what `status`
//! shows of them.
//!
//! A server's own [`Upstream`] (the one in the supervisor's map) holds its
//! catalog lists, its cache entry and its settings. For a shared server it
//! is also the one instance. For a per-client or per-workspace server it
//! runs only to learn the catalog when nothing is cached, and its pool holds
//! the instances that serve calls: each an [`Upstream`] of its own (own
//! child, lifecycle, backoff, health pings, context with an owner) that hands
//! its lists to the server's.
//!
//! [`Pool`]: crate::pool::Pool

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::{InitInfo, Inner, State, Upstream};
use crate::catalog::Lists;
use crate::config::{EffectiveInstances, EffectiveTimeouts, ServerConfig, Share};
use crate::pool::{Entry, InstanceKey, LimitReached, Pool};
use crate::wire::{Context, Owner, SessionLink};

/// Unix time in milliseconds.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a session's call gets no instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceRefusal {
    /// `max_instances` instances run already.
    Limit {
        /// The server.
        server: String,
        /// Its `max_instances`.
        max: usize,
        /// Its mode.
        share: Share,
    },
    /// A per-workspace server, and the session has no workspace.
    NoWorkspace {
        /// The server.
        server: String,
    },
}

impl InstanceRefusal {
    /// A sentence for the client.
    pub fn message(&self) -> String {
        match self {
            InstanceRefusal::Limit { server, max, share } => format!(
                "server '{server}' already runs max_instances = {max} instances (one per {}); close another {} or raise max_instances in the config",
                if *share == Share::PerClient { "client" } else { "workspace" },
                if *share == Share::PerClient { "client session" } else { "workspace's clients" },
            ),
            InstanceRefusal::NoWorkspace { server } => format!(
                "server '{server}' runs one instance per workspace, and this session has no workspace: connect through stdioproxy-shim (it sends its working directory, or --workspace DIR)"
            ),
        }
    }
}

/// One instance in `status`.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceStatus {
    /// `shared`, `session:<id>`, `workspace:"<path>"`.
    pub key: String,
    /// `{"session", "client"}`, `{"workspace"}`, or null for a shared one.
    pub owner: Value,
    /// Its state.
    pub state: State,
    /// Its child's pid, while one runs.
    pub pid: Option<u32>,
    /// Restarts after failures (idle stops are not counted).
    pub restarts: u64,
    /// When its running child was spawned (unix seconds).
    pub started_unix: Option<u64>,
    /// When a call (or a session of its workspace) last used it.
    pub last_used_unix: u64,
    /// Calls in flight.
    pub in_flight: usize,
    /// Its last failure.
    pub last_error: Option<String>,
}

impl Upstream {
    /// The instance settings.
    pub fn settings(&self) -> EffectiveInstances {
        *self.settings.read()
    }

    /// Applies changed `idle_stop` and `max_instances` in place, to the
    /// server and its instances.
    pub fn set_settings(&self, settings: EffectiveInstances) {
        *self.settings.write() = settings;
        for (_, m) in self.pool.snapshot() {
            *m.settings.write() = settings;
        }
    }

    /// Who shares this instance.
    pub fn key(&self) -> &InstanceKey {
        &self.key
    }

    pub(super) fn primary(&self) -> Option<Arc<Upstream>> {
        self.primary.as_ref().and_then(Weak::upgrade)
    }

    /// True for an instance in a server's pool.
    pub fn is_member(&self) -> bool {
        self.primary.is_some()
    }

    /// True for a per-client or per-workspace server's own upstream, which
    /// only learns the catalog.
    pub(super) fn learns_only(&self) -> bool {
        !self.is_member() && self.settings().is_pooled()
    }

    /// Before an idle stop: a call from now on starts the instance again (a
    /// pooled one: makes a new instance for its key).
    pub(super) fn going_idle(self: &Arc<Self>) {
        self.lock().served = false;
        if self.is_member() {
            self.leave_pool();
        }
        self.wanted.send_replace(false);
    }

    /// Marks the instance used now.
    pub fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// How long nobody used it.
    pub(super) fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_used.load(Ordering::Relaxed)))
    }

    /// Starts a lazy or idle instance (a call needs it).
    pub fn wake(&self) {
        self.touch();
        if !*self.wanted.borrow() {
            tracing::info!(server = %self.name, instance = %self.key, "starting on demand");
            self.wanted.send_replace(true);
        }
    }

    /// The instance a call of `link`'s goes to, created (and started) when
    /// it has none yet; a lazy or idle one is woken.
    pub fn instance_for(
        self: &Arc<Self>,
        link: &SessionLink,
    ) -> Result<Arc<Upstream>, InstanceRefusal> {
        let settings = self.settings();
        let key = match settings.share {
            Share::Shared => {
                self.wake();
                return Ok(self.clone());
            }
            Share::PerClient => InstanceKey::Session(link.id),
            Share::PerWorkspace => match link.workspace() {
                Some(w) => InstanceKey::Workspace(w.clone()),
                None => {
                    return Err(InstanceRefusal::NoWorkspace {
                        server: self.name.to_string(),
                    })
                }
            },
        };
        let entry = self
            .pool
            .get_or_insert(&key, settings.max_instances, || {
                self.new_member(key.clone())
            })
            .map_err(|LimitReached { max }| InstanceRefusal::Limit {
                server: self.name.to_string(),
                max,
                share: settings.share,
            })?;
        match entry {
            Entry::Existing(m) => {
                m.touch();
                Ok(m)
            }
            Entry::Created(m) => {
                let owner = match &key {
                    InstanceKey::Session(id) => format!("session {id}"),
                    other => other.to_string(),
                };
                tracing::info!(server = %self.name, instance = %key, "new instance for {owner}");
                tokio::spawn(super::supervise(m.clone()));
                Ok(m)
            }
        }
    }

    /// [`Upstream::sync_log_level`] for the server and every instance.
    pub fn sync_log_level_all(self: &Arc<Self>) {
        for (_, m) in self.pool.snapshot() {
            m.sync_log_level();
        }
        self.sync_log_level();
    }

    /// True while a call to this lazy or pooled instance waits for its
    /// first start since it was woken (bounded by `startup_timeout`, not
    /// `request_timeout`).
    pub fn is_cold(&self) -> bool {
        (self.is_member() || self.settings().start == crate::config::Start::Lazy)
            && matches!(self.state(), State::Idle | State::Starting)
            && !self.lock().served
    }

    /// What this instance answers `roots/list` with under `spec`: the
    /// configured roots, else (per-workspace) exactly its workspace.
    pub(super) fn roots_for(&self, spec: &ServerConfig) -> Option<Arc<str>> {
        spec.roots_result()
            .or_else(|| match self.key.workspace() {
                Some(w) => Some(w.roots_result()),
                None if self.learns_only() && self.settings().share == Share::PerWorkspace => {
                    probe_workspace().map(|w| w.roots_result())
                }
                None => None,
            })
            .map(Arc::from)
    }

    /// The server and every instance in its pool.
    pub fn with_instances(self: &Arc<Self>) -> Vec<Arc<Upstream>> {
        let mut all: Vec<_> = self.pool.snapshot().into_iter().map(|(_, m)| m).collect();
        all.push(self.clone());
        all
    }

    /// The running instance for `key`, if any.
    pub fn member(&self, key: &InstanceKey) -> Option<Arc<Upstream>> {
        self.pool.get(key)
    }

    /// A new instance of this server for `key`, not started yet.
    fn new_member(self: &Arc<Self>, key: InstanceKey) -> Arc<Upstream> {
        let spec = self.spec();
        // A per-workspace instance is told its workspace as its only root,
        // unless the server configures roots.
        let roots = spec
            .roots_result()
            .map(Arc::<str>::from)
            .or_else(|| key.workspace().map(|w| Arc::<str>::from(w.roots_result())));
        let owner = match &key {
            InstanceKey::Shared => Owner::Anyone,
            InstanceKey::Session(id) => Owner::Session(*id),
            InstanceKey::Workspace(w) => Owner::Workspace(w.clone()),
        };
        let ctx = Context::owned(
            self.name.clone(),
            self.shared.registry.clone(),
            roots,
            owner,
        );
        let lists = self.lists();
        Arc::new(Upstream {
            name: self.name.clone(),
            spec: ArcSwap::new(spec),
            cache_key: self.cache_key.clone(),
            timeouts: RwLock::new(self.timeouts()),
            shared: self.shared.clone(),
            ctx: Arc::new(ctx),
            // The era the server speaks is the server's, known once.
            inner: Mutex::new(Inner {
                era: self.lock().era,
                ..Inner::default()
            }),
            conn: ArcSwapOption::empty(),
            rendered: ArcSwap::new(self.rendered()),
            lists: ArcSwap::new(lists),
            state_tx: watch::channel(State::Starting).0,
            stop_tx: watch::channel(false).0,
            from_cache: self.from_cache,
            key,
            primary: Some(Arc::downgrade(self)),
            pool: Pool::default(),
            settings: RwLock::new(self.settings()),
            wanted: watch::channel(true).0,
            last_used: std::sync::atomic::AtomicU64::new(now_ms()),
            restart_tx: watch::channel(0).0,
            attempts: std::sync::atomic::AtomicU64::new(0),
            // One ring per server: `stdioproxy logs` shows every
            // instance's lines, each with its pid.
            stderr: self.stderr.clone(),
        })
    }

    /// An instance's lists (and its initialize result) become the server's.
    pub(super) fn adopt_lists(&self, lists: Lists, init: Option<InitInfo>) {
        if let Some(init) = init {
            self.lock().init = Some(init);
        }
        self.set_lists(lists);
    }

    /// An instance ended for good: it leaves its server's pool (unless a
    /// newer one took its key meanwhile).
    pub(super) fn leave_pool(self: &Arc<Self>) {
        if let Some(p) = self.primary() {
            p.pool.remove_exact(&self.key, self);
        }
    }

    /// Where the child runs when the server sets no `cwd`: a per-workspace
    /// instance in its workspace; a per-workspace server learning its
    /// catalog in an empty private directory (also its only root), so it
    /// neither sees a real project nor lacks a root.
    pub(super) fn workspace_dir(&self) -> Option<std::path::PathBuf> {
        match self.key.workspace() {
            Some(w) => Some(w.path().to_path_buf()),
            None if self.learns_only() && self.settings().share == Share::PerWorkspace => {
                probe_workspace().map(|w| w.path().to_path_buf())
            }
            None => None,
        }
    }

    /// The env an instance's child gets (and its config may use).
    pub(super) fn instance_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![("STDIOPROXY_INSTANCE", self.key.env_id())];
        if let Some(w) = self.key.workspace() {
            vars.push((
                "STDIOPROXY_WORKSPACE",
                w.path().to_string_lossy().into_owned(),
            ));
        }
        vars
    }

    /// A session closed: its per-client instance drains and stops; the
    /// per-workspace instance of its workspace counts it as use (its idle
    /// stop runs from now); every instance forgets its subscriptions.
    pub async fn session_closed(self: &Arc<Self>, link: &SessionLink, had_level: bool) {
        if self.settings().share == Share::PerClient {
            if let Some(m) = self.pool.remove(&InstanceKey::Session(link.id)) {
                tracing::info!(server = %self.name, session = link.id, "the session closed; stopping its instance");
                tokio::spawn(async move { m.drain_and_stop().await });
            }
        }
        if let Some(w) = link.workspace() {
            if let Some(m) = self.pool.get(&InstanceKey::Workspace(w.clone())) {
                m.touch();
            }
        }
        for (_, m) in self.pool.snapshot() {
            m.session_gone(link.id, had_level).await;
        }
        self.session_gone(link.id, had_level).await;
    }

    /// Applies an in-place reload to the server and every instance.
    pub fn update_all(
        &self,
        spec: Arc<ServerConfig>,
        timeouts: EffectiveTimeouts,
        settings: EffectiveInstances,
    ) {
        for (_, m) in self.pool.snapshot() {
            m.update(spec.clone(), timeouts);
        }
        self.update(spec, timeouts);
        self.set_settings(settings);
    }

    /// The instance keys that run now (a reload starts their replacements).
    pub fn running_keys(&self) -> Vec<InstanceKey> {
        self.pool
            .snapshot()
            .into_iter()
            .filter(|(_, m)| m.state() != State::Idle)
            .map(|(k, _)| k)
            .collect()
    }

    /// Starts the replacement of instance `key` (a reload, blue-green).
    pub fn prestart(self: &Arc<Self>, key: InstanceKey) -> Arc<Upstream> {
        let m = self.new_member(key.clone());
        self.pool.insert(key, m.clone());
        tokio::spawn(super::supervise(m.clone()));
        m
    }

    /// Stops the server and every instance (drained first).
    pub async fn drain_and_stop_all(&self) {
        let stops: Vec<_> = self
            .pool
            .drain()
            .into_iter()
            .map(|(_, m)| tokio::spawn(async move { m.drain_and_stop().await }))
            .collect();
        self.drain_and_stop().await;
        for stop in stops {
            let _ = stop.await;
        }
    }

    /// Asks the server and every instance to stop, and waits.
    pub async fn stop_all(&self) {
        let members = self.pool.drain();
        for (_, m) in &members {
            m.request_stop();
        }
        self.request_stop();
        for (_, m) in &members {
            m.stopped().await;
        }
        self.stopped().await;
    }

    /// `status` of the server with its instances.
    pub fn server_status(&self, exposed: [usize; 4]) -> super::ServerStatus {
        let mut s = self.status(exposed);
        s.instances = if self.settings().is_pooled() {
            self.pool
                .snapshot()
                .iter()
                .map(|(_, m)| m.instance_status())
                .collect()
        } else {
            vec![self.instance_status()]
        };
        s
    }

    fn instance_status(&self) -> InstanceStatus {
        let owner = match &self.key {
            InstanceKey::Shared => Value::Null,
            InstanceKey::Session(id) => serde_json::json!({
                "session": id,
                "client": self.shared.registry.get(*id).and_then(|l| l.client_name()).as_deref(),
            }),
            InstanceKey::Workspace(w) => serde_json::json!({ "workspace": w.lossy() }),
        };
        let inner = self.lock();
        InstanceStatus {
            key: self.key.label(),
            owner,
            state: self.state(),
            pid: inner.pid,
            restarts: inner.restarts,
            started_unix: inner
                .started
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            last_used_unix: self.last_used.load(Ordering::Relaxed) / 1000,
            in_flight: self.conn.load().as_ref().map_or(0, |c| c.in_flight()),
            last_error: inner.last_error.clone(),
        }
    }
}

/// The empty directory a per-workspace server learns its catalog in.
pub(super) fn probe_workspace() -> Option<crate::workspace::Workspace> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = crate::paths::cache_dir().join("probe-workspace");
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        tracing::warn!(dir = %dir.display(), "cannot create the catalog probe's workspace: {e}");
        return None;
    }
    crate::workspace::Workspace::resolve(&dir).ok()
}

/// Runs an upstream's lifecycle; if it panics (a bug), logs it and runs it
/// again, so one server's bug never leaves it dead or takes the daemon down.
/// The panicked task's `Child` is dropped with it, which kills the process.
pub async fn supervise(up: Arc<Upstream>) {
    loop {
        match tokio::spawn(up.clone().run()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                tracing::error!(server = %up.name, "server lifecycle task panicked; restarting it");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return,
        }
    }
}
