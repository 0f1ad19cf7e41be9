//! What one configured server's child instances share with the rest of the
//! daemon across restarts: its name, the session registry (fan-out, routing
//! a child's requests to a client), its resource subscriptions and its
//! configured roots, and its requests held for 2026-07-28 clients. Every [`Connection`] of the server holds it, and the
//! upstream updates it in place on reload.
//!
//! An instance of a per-client or per-workspace server has its own context
//! with an [`Owner`]: what it sends "to the client" (requests, log
//! messages) reaches only the sessions it belongs to (docs/INSTANCES.md).
//!
//! [`Connection`]: super::Connection

use std::sync::Arc;

use parking_lot::RwLock;

use super::link::{Registry, SessionLink};
use super::subscriptions::Subscriptions;
use crate::workspace::Workspace;

/// The sessions an instance belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Every session that sees the server (a shared instance).
    Anyone,
    /// One session (a per-client instance).
    Session(u64),
    /// The sessions of one workspace (a per-workspace instance).
    Workspace(Workspace),
}

impl Owner {
    /// True when `link` is one of the sessions this instance belongs to.
    pub fn owns(&self, link: &SessionLink) -> bool {
        match self {
            Owner::Anyone => true,
            Owner::Session(id) => link.id == *id,
            Owner::Workspace(w) => link.workspace() == Some(w),
        }
    }
}

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
    /// Whom the instance belongs to.
    pub owner: Owner,
    /// The server's requests held for 2026-07-28 clients (MRTR).
    pub bridge: super::rounds::ServerBridge,
}

impl Context {
    /// The context of server `server`, answering `roots/list` with `roots`.
    pub fn new(server: Arc<str>, registry: Arc<Registry>, roots: Option<Arc<str>>) -> Self {
        Self {
            server,
            registry,
            subscriptions: Subscriptions::default(),
            roots: RwLock::new(roots),
            owner: Owner::Anyone,
            bridge: super::rounds::ServerBridge::new(crate::era::state::StateKey::daemon()),
        }
    }

    /// The context of one instance belonging to `owner`.
    pub fn owned(
        server: Arc<str>,
        registry: Arc<Registry>,
        roots: Option<Arc<str>>,
        owner: Owner,
    ) -> Self {
        Self {
            owner,
            ..Self::new(server, registry, roots)
        }
    }

    /// The sessions that see this server and that this instance belongs
    /// to (fan-out of log messages, candidates for its requests).
    pub fn audience(&self) -> Vec<Arc<SessionLink>> {
        let mut links = self.registry.seeing(&self.server);
        links.retain(|l| self.owner.owns(l));
        links
    }

    /// The owning session, when it is one session that declared `roots`:
    /// `roots/list` then goes to that client.
    pub fn roots_owner(&self) -> Option<Arc<SessionLink>> {
        match &self.owner {
            Owner::Session(id) => self.registry.get(*id).filter(|l| l.caps().roots),
            _ => None,
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
