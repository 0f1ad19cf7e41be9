//! The part of a client session that the rest of the daemon can reach: its
//! outbox, what it can see, what it declared, and its bookkeeping of
//! requests in both directions.
//!
//! A child's reader task delivers responses, progress and notifications
//! straight into the [`SessionLink`] of the session they belong to, so the
//! link holds everything that delivery needs without going through the
//! session task:
//!
//! - client requests in flight (by the client's raw id), so a cancellation
//!   reaches the child, a reused id is refused, and a disconnect cancels
//!   upstream what the client still waits for;
//! - tasks the session created, under daemon-minted task ids, so `tasks/*`
//!   reach the child that owns them and no session sees another's tasks;
//! - requests a child sent to this client (sampling, elicitation), under
//!   ids minted here, so the client's answer goes back to that child with
//!   the child's own id.
//!
//! Lock order: the link's lock is never held while calling into a
//! connection, and connections release their own locks before calling into
//! a link.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use serde_json::value::RawValue;

use super::connection::Connection;
use super::outbox::Outbox;
use crate::era::session::EraLink;
use crate::loglevel::Level;

/// What the client declared in `initialize` that the daemon routes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCaps {
    /// `sampling`
    pub sampling: bool,
    /// `elicitation` (form mode; also what a bare `elicitation: {}` means)
    pub elicitation_form: bool,
    /// `elicitation.url`
    pub elicitation_url: bool,
    /// `roots`
    pub roots: bool,
}

/// A client request the daemon has accepted and not answered yet.
enum InFlight {
    /// Waiting for its server to become ready.
    Waiting { ticket: u64, cancelled: bool },
    /// Sent to a child under `upstream_id`.
    Forwarded {
        ticket: u64,
        conn: Weak<Connection>,
        upstream_id: u64,
    },
}

impl InFlight {
    fn ticket(&self) -> u64 {
        match self {
            InFlight::Waiting { ticket, .. } | InFlight::Forwarded { ticket, .. } => *ticket,
        }
    }
}

/// A task created through this session.
#[derive(Clone)]
pub struct TaskRef {
    /// The server that runs it.
    pub server: Arc<str>,
    /// The child instance that knows it.
    pub conn: Weak<Connection>,
    /// The child's own task id.
    pub child_id: String,
}

/// A request a child sent to this client, waiting for the client's answer.
pub struct Outgoing {
    /// The child that asked.
    pub conn: Weak<Connection>,
    /// The child's id for it, raw.
    pub child_id: Box<RawValue>,
    /// Where the answer goes instead, when the daemon itself asked on a
    /// modern child's behalf (its `input_required`, see `wire::modern`).
    pub reply: Option<tokio::sync::oneshot::Sender<ClientAnswer>>,
}

/// A client's answer to a request the daemon sent it: `result` or `error`,
/// raw.
#[derive(Debug)]
pub enum ClientAnswer {
    /// `result`
    Result(Box<RawValue>),
    /// `error`
    Error(Box<RawValue>),
}

#[derive(Default)]
struct State {
    in_flight: HashMap<Box<str>, InFlight>,
    tasks: HashMap<String, TaskRef>,
    outgoing: HashMap<u64, Outgoing>,
}

/// Marks "no level set" in the atomic level.
const NO_LEVEL: u8 = u8::MAX;

/// A session as seen from the rest of the daemon.
pub struct SessionLink {
    /// The session's id (logs, routing).
    pub id: u64,
    /// Everything the client is sent goes here.
    pub outbox: Outbox,
    view: Option<HashSet<String>>,
    workspace: Option<crate::workspace::Workspace>,
    client_name: Mutex<Option<Arc<str>>>,
    state: Mutex<State>,
    caps: RwLock<ClientCaps>,
    initialized: AtomicBool,
    log_level: AtomicU8,
    next_ticket: AtomicU64,
    next_outgoing: AtomicU64,
    /// The session's era, listens and per-request log levels.
    pub era: EraLink,
}

static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

impl SessionLink {
    /// A link for session `id` that sees `view` (every server when `None`).
    pub fn new(id: u64, outbox: Outbox, view: Option<HashSet<String>>) -> Self {
        Self {
            id,
            outbox,
            view,
            workspace: None,
            client_name: Mutex::new(None),
            state: Mutex::new(State::default()),
            caps: RwLock::new(ClientCaps::default()),
            initialized: AtomicBool::new(false),
            log_level: AtomicU8::new(NO_LEVEL),
            next_ticket: AtomicU64::new(1),
            next_outgoing: AtomicU64::new(1),
            era: EraLink::default(),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The same link with the session's workspace (from the shim's hello).
    pub fn with_workspace(mut self, workspace: Option<crate::workspace::Workspace>) -> Self {
        self.workspace = workspace;
        self
    }

    /// The session's workspace, when its shim sent one.
    pub fn workspace(&self) -> Option<&crate::workspace::Workspace> {
        self.workspace.as_ref()
    }

    /// The client's `clientInfo.name`, once it initialized.
    pub fn client_name(&self) -> Option<Arc<str>> {
        self.client_name.lock().clone()
    }

    /// Records the client's name (at `initialize`).
    pub fn set_client_name(&self, name: &str) {
        *self.client_name.lock() = Some(name.into());
    }

    /// True when the session may see and call `server`.
    pub fn visible(&self, server: &str) -> bool {
        self.view.as_ref().is_none_or(|v| v.contains(server))
    }

    /// The client's declared capabilities.
    pub fn caps(&self) -> ClientCaps {
        *self.caps.read()
    }

    /// Records the client's declared capabilities (at `initialize`).
    pub fn set_caps(&self, caps: ClientCaps) {
        *self.caps.write() = caps;
    }

    /// True once the client sent `notifications/initialized`.
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::SeqCst)
    }

    /// Marks the session initialized.
    pub fn set_initialized(&self) {
        self.initialized.store(true, Ordering::SeqCst);
    }

    /// The level the client asked for with `logging/setLevel` (a modern
    /// client: the most verbose its requests in flight asked for), if any.
    pub fn log_level(&self) -> Option<Level> {
        if self.era.is_modern() {
            return self.era.log_level();
        }
        Level::from_rank(self.log_level.load(Ordering::Relaxed))
    }

    /// Records the client's `logging/setLevel`.
    pub fn set_log_level(&self, level: Level) {
        self.log_level.store(level.rank(), Ordering::Relaxed);
    }

    /// True when a message at `level` passes the client's level (a client
    /// that never set one gets everything its servers send).
    pub fn wants_log(&self, level: Option<Level>) -> bool {
        match (
            Level::from_rank(self.log_level.load(Ordering::Relaxed)),
            level,
        ) {
            (Some(min), Some(l)) => l >= min,
            _ => true,
        }
    }

    // ----- client requests in flight ------------------------------------

    /// Accepts a client request with raw id `client_id`; fails when a
    /// request with that id is still in flight. Returns the ticket that the
    /// later calls about this request must present.
    pub fn begin(&self, client_id: &str) -> Option<u64> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        if st.in_flight.contains_key(client_id) {
            return None;
        }
        st.in_flight.insert(
            client_id.into(),
            InFlight::Waiting {
                ticket,
                cancelled: false,
            },
        );
        Some(ticket)
    }

    /// Records that the request was sent to a child. Returns false when the
    /// client cancelled it meanwhile: the caller then cancels it upstream.
    pub fn forwarded(
        &self,
        client_id: &str,
        ticket: u64,
        conn: &Arc<Connection>,
        upstream_id: u64,
    ) -> bool {
        let mut st = self.lock();
        match st.in_flight.get(client_id) {
            Some(InFlight::Waiting {
                ticket: t,
                cancelled,
            }) if *t == ticket => {
                if *cancelled {
                    st.in_flight.remove(client_id);
                    return false;
                }
                st.in_flight.insert(
                    client_id.into(),
                    InFlight::Forwarded {
                        ticket,
                        conn: Arc::downgrade(conn),
                        upstream_id,
                    },
                );
                true
            }
            // Already answered (a fast child), or not ours any more.
            _ => true,
        }
    }

    /// True while a request that waits for its server is still wanted: not
    /// cancelled by the client, and the session not closed meanwhile.
    pub fn still_wanted(&self, client_id: &str, ticket: u64) -> bool {
        matches!(
            self.lock().in_flight.get(client_id),
            Some(InFlight::Waiting { ticket: t, cancelled: false }) if *t == ticket
        )
    }

    /// True when a log message at `level` from `server` is for this
    /// session: a legacy one filters by its `logging/setLevel`, a modern one
    /// takes only what a request in flight to that server asked for.
    pub fn wants_log_from(&self, server: &str, level: Option<Level>) -> bool {
        if self.era.is_modern() {
            self.era.wants_log_from(server, level)
        } else {
            self.wants_log(level)
        }
    }

    /// Forgets a request once it has been answered (or will never be).
    pub fn finish(&self, client_id: &str, ticket: u64) {
        let mut st = self.lock();
        if st
            .in_flight
            .get(client_id)
            .is_some_and(|f| f.ticket() == ticket)
        {
            st.in_flight.remove(client_id);
            drop(st);
            self.era.finished(client_id);
        }
    }

    /// The client cancelled request `client_id`: returns where it was sent,
    /// for the caller to cancel upstream (nothing when it had not been sent
    /// yet: it will not be).
    pub fn cancel(&self, client_id: &str) -> Option<(Weak<Connection>, u64)> {
        self.era.finished(client_id);
        let mut st = self.lock();
        match st.in_flight.get_mut(client_id)? {
            InFlight::Waiting { cancelled, .. } => {
                *cancelled = true;
                None
            }
            InFlight::Forwarded { .. } => match st.in_flight.remove(client_id) {
                Some(InFlight::Forwarded {
                    conn, upstream_id, ..
                }) => Some((conn, upstream_id)),
                _ => None,
            },
        }
    }

    /// Every request still in flight at disconnect, to cancel upstream.
    pub fn drain_in_flight(&self) -> Vec<(Weak<Connection>, u64)> {
        self.era.clear();
        self.lock()
            .in_flight
            .drain()
            .filter_map(|(_, f)| match f {
                InFlight::Forwarded {
                    conn, upstream_id, ..
                } => Some((conn, upstream_id)),
                InFlight::Waiting { .. } => None,
            })
            .collect()
    }

    /// Number of client requests in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    // ----- tasks ----------------------------------------------------------

    /// Registers a task a child created for this session; returns the task
    /// id the client sees.
    pub fn add_task(&self, task: TaskRef) -> String {
        let id = format!(
            "sp-{}-{}",
            task.server,
            NEXT_TASK.fetch_add(1, Ordering::Relaxed)
        );
        self.lock().tasks.insert(id.clone(), task);
        id
    }

    /// A task of this session by its client-side id.
    pub fn task(&self, id: &str) -> Option<TaskRef> {
        self.lock().tasks.get(id).cloned()
    }

    /// Every task of this session: (client-side id, task).
    pub fn tasks(&self) -> Vec<(String, TaskRef)> {
        self.lock()
            .tasks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    // ----- requests from children to this client ---------------------------

    /// Registers a child's request to this client; returns the id the client
    /// sees for it.
    pub fn add_outgoing(&self, outgoing: Outgoing) -> u64 {
        let id = self.next_outgoing.fetch_add(1, Ordering::Relaxed);
        self.lock().outgoing.insert(id, outgoing);
        id
    }

    /// Takes the child request the client answered (or the child cancelled).
    pub fn take_outgoing(&self, id: u64) -> Option<Outgoing> {
        self.lock().outgoing.remove(&id)
    }

    /// Every child request still waiting for this client, at disconnect.
    pub fn drain_outgoing(&self) -> Vec<Outgoing> {
        self.lock().outgoing.drain().map(|(_, o)| o).collect()
    }
}

/// Every live session, by id: for fan-out (logging, resource updates) and
/// for routing children's requests to a client.
#[derive(Default)]
pub struct Registry {
    sessions: RwLock<HashMap<u64, Arc<SessionLink>>>,
}

impl Registry {
    /// Adds a session.
    pub fn insert(&self, link: Arc<SessionLink>) {
        self.write().insert(link.id, link);
    }

    /// Removes a session.
    pub fn remove(&self, id: u64) {
        self.write().remove(&id);
    }

    /// A session by id.
    pub fn get(&self, id: u64) -> Option<Arc<SessionLink>> {
        self.read().get(&id).cloned()
    }

    /// Every session that sees `server`.
    pub fn seeing(&self, server: &str) -> Vec<Arc<SessionLink>> {
        self.read()
            .values()
            .filter(|l| l.visible(server))
            .cloned()
            .collect()
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, HashMap<u64, Arc<SessionLink>>> {
        self.sessions.read()
    }

    fn write(&self) -> parking_lot::RwLockWriteGuard<'_, HashMap<u64, Arc<SessionLink>>> {
        self.sessions.write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> SessionLink {
        let (outbox, _rx) = Outbox::new(1);
        SessionLink::new(1, outbox, None)
    }

    #[test]
    fn ids_in_flight_are_unique_until_finished() {
        let l = link();
        let t = l.begin("1").unwrap();
        assert!(l.begin("1").is_none(), "reused while in flight");
        assert!(l.begin("\"1\"").is_some(), "a string id is another id");
        l.finish("1", t + 100);
        assert!(l.begin("1").is_none(), "a stale ticket finishes nothing");
        l.finish("1", t);
        assert!(l.begin("1").is_some());
    }

    #[test]
    fn cancelling_before_forwarding_stops_the_forward() {
        let l = link();
        let t = l.begin("7").unwrap();
        assert!(l.still_wanted("7", t));
        assert!(l.cancel("7").is_none());
        assert!(!l.still_wanted("7", t));
        assert_eq!(l.in_flight(), 1);
        l.finish("7", t);
        assert_eq!(l.in_flight(), 0);
        let t = l.begin("8").unwrap();
        assert!(l.drain_in_flight().is_empty());
        assert!(!l.still_wanted("8", t), "a closed session wants nothing");
    }

    #[test]
    fn log_levels_filter() {
        let l = link();
        assert!(l.wants_log(Some(Level::Debug)), "no level: everything");
        l.set_log_level(Level::Warning);
        assert!(!l.wants_log(Some(Level::Info)));
        assert!(l.wants_log(Some(Level::Error)));
        assert!(l.wants_log(None), "unknown levels are not dropped");
    }
}
