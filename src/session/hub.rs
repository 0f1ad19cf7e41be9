//! What a session reaches the rest of the daemon by, and nothing more: the
//! supervisor (the catalog snapshot and the upstreams to route to), the
//! registry it joins, the running settings, the reloader (for the built-in
//! reload tool), the shutdown signal, and the session id counter.
//!
//! The daemon builds one hub and hands it to the listener, which hands it
//! to every session. Open sessions are counted by the listener's session
//! slots ([`crate::slots`]), the daemon's one session counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::SettingsCell;
use crate::reload::Reloader;
use crate::supervisor::Supervisor;
use crate::wire::Registry;

/// The daemon as a session sees it.
pub struct Hub {
    /// The servers and the catalog.
    pub supervisor: Arc<Supervisor>,
    /// Every live session, for fan-out and for routing children's requests.
    pub registry: Arc<Registry>,
    /// The running `[daemon]` settings.
    pub settings: SettingsCell,
    /// Applies reloads (the built-in `stdioproxy__reload` tool).
    pub reloader: Arc<Reloader>,
    shutdown: watch::Receiver<bool>,
    next_session: AtomicU64,
}

impl Hub {
    /// A hub; `shutdown` turns `true` when the daemon starts shutting down.
    pub fn new(
        supervisor: Arc<Supervisor>,
        registry: Arc<Registry>,
        settings: SettingsCell,
        reloader: Arc<Reloader>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            supervisor,
            registry,
            settings,
            reloader,
            shutdown,
            next_session: AtomicU64::new(1),
        }
    }

    /// Next session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Raised (value `true`) when the daemon starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}
