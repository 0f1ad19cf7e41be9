//! The set of upstreams, and the catalog built from their lists.
//!
//! The supervisor is the only place that changes which servers exist: it
//! starts them from the config, applies reloads and stops them at shutdown.
//! Every upstream calls back when its lists changed, and the catalog is
//! rebuilt and published through a `watch` channel before the upstream goes
//! on, so a server is never ready with its items missing from the catalog,
//! and readers always see a whole snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use std::time::Duration;

use tokio::sync::watch;

use crate::builtin::SERVER as BUILTIN_SERVER;
use crate::catalog::{Catalog, ListKind, Lists, RawItem, Rendered};
use crate::config::{Config, ConfigDiff};
use crate::upstream::{supervise, InstanceRefusal, ServerStatus, Shared, State, Upstream};
use crate::wire::SessionLink;

/// Owns the upstreams.
pub struct Supervisor {
    upstreams: RwLock<BTreeMap<String, Arc<Upstream>>>,
    catalog_tx: watch::Sender<Arc<Catalog>>,
    shared: Arc<Shared>,
    generation: AtomicU64,
    rebuild: parking_lot::Mutex<()>,
    /// The daemon's own tools (listed first, under the prefix `stdioproxy`).
    builtin: ArcSwap<Rendered>,
    /// Servers the config has but disables (to say so to a shim asking for
    /// one with `--server`).
    disabled: RwLock<Vec<String>>,
}

impl Supervisor {
    /// A supervisor with no servers. `shared` is handed to every upstream;
    /// its `lists_changed` hook is set here to rebuild the catalog.
    pub fn new(shared: Shared) -> Arc<Self> {
        let sup = Arc::new(Self {
            upstreams: RwLock::new(BTreeMap::new()),
            catalog_tx: watch::channel(Arc::new(Catalog::default())).0,
            shared: Arc::new(shared),
            generation: AtomicU64::new(0),
            rebuild: parking_lot::Mutex::new(()),
            builtin: ArcSwap::from_pointee(Rendered::empty(BUILTIN_SERVER.into())),
            disabled: RwLock::new(Vec::new()),
        });
        let weak: Weak<Supervisor> = Arc::downgrade(&sup);
        let _ = sup.shared.lists_changed.set(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.rebuild_catalog();
            }
        }));
        sup
    }

    /// Starts every enabled server of `config`.
    pub fn start(&self, config: &Config) {
        self.set_disabled(config);
        {
            let mut map = self.write();
            for (name, spec) in config.enabled_servers() {
                let timeouts = spec.timeouts().resolve(&config.defaults);
                let up = Upstream::new(
                    name.as_str(),
                    Arc::new(spec.clone()),
                    timeouts,
                    spec.instances(&config.defaults),
                    self.shared.clone(),
                );
                tokio::spawn(supervise(up.clone()));
                map.insert(name.as_str().to_string(), up);
            }
        }
        // Publish cached tool lists at once.
        self.rebuild_catalog();
    }

    /// Applies a reload: starts added servers and new instances of replaced
    /// ones, waits until each has been attempted (ready, or failed into
    /// backoff), then swaps the whole set at once and publishes one catalog,
    /// so clients see the reload as a single change. Removed and replaced
    /// instances drain their in-flight calls and stop in the background.
    /// Unchanged servers are not touched. A replaced per-client or
    /// per-workspace server gets a new instance for every key that runs
    /// (blue-green per instance) unless its `share` changed.
    pub async fn apply(&self, new: &Config, diff: &ConfigDiff) {
        self.set_disabled(new);
        let spec_of = |name: &str| {
            new.servers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, s)| {
                    (
                        Arc::new(s.clone()),
                        s.timeouts().resolve(&new.defaults),
                        s.instances(&new.defaults),
                    )
                })
        };
        for name in &diff.updated {
            if let (Some(up), Some((spec, t, i))) = (self.upstream(name), spec_of(name)) {
                up.update_all(spec, t, i);
            }
        }
        let mut fresh = Vec::new();
        let mut waits = Vec::new();
        for name in diff.added.iter().chain(&diff.replaced) {
            let Some((spec, timeouts, settings)) = spec_of(name) else {
                continue;
            };
            let up = Upstream::new(name, spec, timeouts, settings, self.shared.clone());
            tokio::spawn(supervise(up.clone()));
            if let Some(old) = self.upstream(name) {
                if old.settings().share == settings.share && settings.is_pooled() {
                    for key in old.running_keys() {
                        waits.push(up.prestart(key));
                    }
                }
            }
            waits.push(up.clone());
            fresh.push(up);
        }
        for up in &waits {
            let mut rx = up.watch_state();
            let limit = up.timeouts().startup_timeout + Duration::from_secs(1);
            let attempted =
                tokio::time::timeout(limit, rx.wait_for(|s| *s != State::Starting)).await;
            if attempted.is_err() {
                tracing::warn!(server = %up.name, "new instance still starting; switching to it anyway");
            }
        }
        let retired: Vec<Arc<Upstream>> = {
            let mut map = self.write();
            let mut retired: Vec<_> = diff.removed.iter().filter_map(|n| map.remove(n)).collect();
            for up in fresh {
                if let Some(old) = map.insert(up.name.to_string(), up) {
                    retired.push(old);
                }
            }
            retired
        };
        self.rebuild_catalog();
        // Stderr of servers no longer configured is dropped with them.
        let configured: std::collections::HashSet<String> = self.read().keys().cloned().collect();
        self.shared.stderr.retain(|n| configured.contains(n));
        for old in retired {
            tracing::info!(server = %old.name, "retiring the previous instances");
            tokio::spawn(async move { old.drain_and_stop_all().await });
        }
    }

    fn set_disabled(&self, config: &Config) {
        *self.disabled.write() = config
            .servers
            .iter()
            .filter(|(_, s)| !s.enabled)
            .map(|(n, _)| n.to_string())
            .collect();
    }

    /// Every server's recent stderr lines.
    pub fn stderr_logs(&self) -> &Arc<crate::stderr_ring::StderrLogs> {
        &self.shared.stderr
    }

    /// The pin store.
    pub fn pins(&self) -> &Arc<parking_lot::Mutex<crate::pins::PinStore>> {
        &self.shared.pins
    }

    /// The servers the config disables.
    pub fn disabled(&self) -> Vec<String> {
        self.disabled.read().clone()
    }

    /// Sets the daemon's own tools; they show in the next catalog rebuild.
    pub fn set_builtin_tools(&self, tools: Vec<serde_json::Value>) {
        let lists = Lists {
            tools: tools.iter().map(RawItem::from_value).collect(),
            ..Lists::default()
        };
        let r = Rendered::new(BUILTIN_SERVER.into(), &lists, &Default::default());
        self.builtin.store(Arc::new(r));
    }

    /// Changes the message size limit for children started from now on.
    pub fn set_max_message(&self, max: usize) {
        self.shared.max_message.store(max, Ordering::Relaxed);
    }

    /// The upstream for a server name.
    pub fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.read().get(name).cloned()
    }

    /// All upstreams, in name order.
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.read().values().cloned().collect()
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog_tx.borrow().clone()
    }

    /// A receiver that sees every new catalog.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog_tx.subscribe()
    }

    /// Rebuilds and publishes the catalog from every upstream's lists.
    ///
    /// Reading the upstream set and publishing happen under one lock, so the
    /// last catalog published is always built from the latest set (a rebuild
    /// racing a reload's swap can never publish a stale set after it).
    pub fn rebuild_catalog(&self) {
        let _serial = self.rebuild.lock();
        let builtin = self.builtin.load_full();
        let ups = self.upstreams();
        let servers = std::iter::once(builtin).chain(ups.iter().map(|u| u.rendered()));
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let catalog = Catalog::build(generation, servers);
        // Publishing an identical catalog would only invalidate the cursors
        // of listings in progress.
        let all = |_: &str| true;
        let previous = self.catalog();
        if previous.server_count() == catalog.server_count()
            && previous.view_fingerprint(&ListKind::ALL, all)
                == catalog.view_fingerprint(&ListKind::ALL, all)
        {
            return;
        }
        self.generation.store(generation, Ordering::SeqCst);
        tracing::debug!(generation, tools = catalog.len(), "catalog rebuilt");
        self.catalog_tx.send_replace(Arc::new(catalog));
    }

    /// Waits until every server has been attempted once (ready, or failed
    /// into backoff), bounded by `limit`.
    pub async fn wait_attempted(&self, limit: Duration) {
        let wait_all = async {
            for up in self.upstreams() {
                let mut rx = up.watch_state();
                let _ = rx.wait_for(|s| *s != State::Starting).await;
            }
        };
        let _ = tokio::time::timeout(limit, wait_all).await;
    }

    /// Status of every server.
    pub fn status(&self) -> Vec<ServerStatus> {
        let catalog = self.catalog();
        self.upstreams()
            .iter()
            .map(|u| {
                let mut s = u.server_status(ListKind::ALL.map(|k| catalog.count(k, &u.name)));
                s.shortened_tools = catalog
                    .shortened(ListKind::Tools, &u.name)
                    .into_iter()
                    .map(|(name, original)| crate::upstream::ShortenedName { name, original })
                    .collect();
                s
            })
            .collect()
    }

    /// Stops every server gracefully and waits for all of them.
    pub async fn shutdown(&self) {
        let stops: Vec<_> = self
            .upstreams()
            .into_iter()
            .map(|up| tokio::spawn(async move { up.stop_all().await }))
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
    }

    /// The instance of server `name` that a call of `link`'s goes to
    /// (started if needed; see docs/INSTANCES.md). `Ok(None)`: no such
    /// server (removed by a reload).
    pub fn instance_for(
        &self,
        name: &str,
        link: &SessionLink,
    ) -> Result<Option<Arc<Upstream>>, InstanceRefusal> {
        match self.upstream(name) {
            Some(up) => up.instance_for(link).map(Some),
            None => Ok(None),
        }
    }

    /// A session closed: each server it saw lets go of it (its per-client
    /// instances stop, subscriptions and log levels are dropped).
    pub async fn session_closed(&self, link: &SessionLink, had_level: bool) {
        for up in self.upstreams() {
            if link.visible(&up.name) {
                up.session_closed(link, had_level).await;
            }
        }
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, BTreeMap<String, Arc<Upstream>>> {
        self.upstreams.read()
    }

    fn write(&self) -> parking_lot::RwLockWriteGuard<'_, BTreeMap<String, Arc<Upstream>>> {
        self.upstreams.write()
    }
}
