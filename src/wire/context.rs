//! What one configured server's child instances share with the rest of the
//! daemon across restarts: its name, the session registry (fan-out, routing
//! a child's requests to a client), its resource subscriptions and its
//! configured roots, and its requests held for 2026-07-28 clients. Every [`Connection`] of the server holds it, and the
//! upstream updates it in place on reload.
//!
//! [`Connection`]: super::Connection

use std::sync::Arc;

use parking_lot::RwLock;

use super::link::Registry;
use super::subscriptions::Subscriptions;

/// What one server's child instances share, across restarts.
pub struct Context {
    /// Server name.
    pub server: Arc<str>,
    /// Every client session (fan-out, routing requests to a client).
    pub registry: Arc<Registry>,
    /// Resource subscriptions, counted across sessions.
    pub subscriptions: Subscriptions,
    /// The rendered `roots/list` result, when roots are configured.
    roots: RwLock<Option<Arc<str>>>,
    /// The server's requests held for 2026-07-28 clients (MRTR).
    pub bridge: super::mrtr::ServerBridge,
}

impl Context {
    /// The context of server `server`, answering `roots/list` with `roots`.
    pub fn new(server: Arc<str>, registry: Arc<Registry>, roots: Option<Arc<str>>) -> Self {
        Self {
            server,
            registry,
            subscriptions: Subscriptions::default(),
            roots: RwLock::new(roots),
            bridge: super::mrtr::ServerBridge::new(crate::era::state::StateKey::daemon()),
        }
    }

    /// The `roots/list` result, when roots are configured.
    pub fn roots(&self) -> Option<Arc<str>> {
        self.roots.read().clone()
    }

    /// Replaces the roots; true when they changed.
    pub fn set_roots(&self, roots: Option<Arc<str>>) -> bool {
        let mut slot = self.roots.write();
        let changed = *slot != roots;
        *slot = roots;
        changed
    }
}
