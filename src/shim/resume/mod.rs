//! The shim's memory of its client's MCP session, so that the session
//! outlives one connection to the daemon. Pure: no I/O, no clock, no
//! threads; the binary feeds it complete lines and events and does what it
//! returns, and a property test drives it with random interleavings.
//!
//! What it remembers, and why:
//!
//! - **What defines the session**: the client's `initialize` params (replayed
//!   verbatim, so the new daemon sees the same capabilities and clientInfo),
//!   whether the client sent `notifications/initialized`, the last
//!   successful `logging/setLevel`, and every `resources/subscribe` that
//!   succeeded and was not unsubscribed. On a new connection these are sent
//!   again with the shim's own ids, and their answers are swallowed.
//! - **Requests in flight**, by raw id text (the daemon echoes ids byte for
//!   byte, so `1` and `"1"` stay apart and nothing is re-encoded). When the
//!   connection is lost, each gets one error at once (never resent: it may
//!   already have run). The one exception is an unanswered `initialize`:
//!   it is sent again on the new connection with the client's own id, since
//!   running it twice is harmless and the client would otherwise be stuck.
//! - **Ids the shim answered itself**, so a later `notifications/cancelled`
//!   for one of them is dropped instead of confusing the new daemon.
//! - **Requests from the daemon to the client**, with the connection that
//!   sent them: the client's answer to a request from a lost connection is
//!   dropped (the new daemon never asked it), and the client is told such
//!   requests are cancelled. A new daemon numbers its requests from scratch,
//!   so when one reuses an id the client still holds from the old
//!   connection, the shim gives it an alias id and maps the answer back:
//!   the client's late answer to the old request can then never be taken
//!   for the new one.
//! - **A queue** of what the client sends while there is no connection,
//!   bounded ([`QUEUE_MAX_MESSAGES`], [`QUEUE_MAX_BYTES`]), sent in order
//!   after the replay.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

mod replay;

use super::peek::{self, error_message, Line};
use replay::{cancelled, internal_error, request};

/// Most messages queued while disconnected.
pub const QUEUE_MAX_MESSAGES: usize = 1000;
/// Most bytes queued while disconnected.
pub const QUEUE_MAX_BYTES: usize = 8 << 20;
/// Ids the shim answered itself that it keeps for matching cancellations.
const ANSWERED_KEEP: usize = 4096;
/// Requests from lost connections kept for dropping their late answers.
const OLD_REQUESTS_KEEP: usize = 4096;

/// The error text for a request in flight on a lost connection.
pub const IN_FLIGHT_LOST: &str = "stdioproxy: the connection to the daemon was lost (it stopped or restarted) while this request was in flight; the request may or may not have run, and it was not resent";

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected and resumed: the client's lines go straight through.
    Live,
    /// No connection: the client's lines are queued.
    Down,
    /// Connected; waiting for the answer to the replayed `initialize`.
    Replaying,
    /// Resumed; the queue is being sent (the client's lines still queue
    /// behind it, so order is kept).
    Flushing,
}

/// The bytes to pass on, when they differ from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Pass the input on as it is (the common case: no copy).
    Unchanged,
    /// Pass these bytes on instead (possibly empty).
    Rewritten(Vec<u8>),
}

impl Pass {
    /// The bytes to write, given the input.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self {
            Pass::Unchanged => input,
            Pass::Rewritten(b) => b,
        }
    }
}

/// What to do with a chunk of the client's lines.
#[derive(Debug, PartialEq, Eq)]
pub enum FromClient {
    /// Write this to the daemon now.
    Send(Pass),
    /// Kept for after the reconnect; `first` when the queue was empty
    /// (worth telling the user once).
    Queued { first: bool },
    /// The queue is over its bound: write `0` to the client and exit 1.
    Overflow(Vec<u8>),
}

/// What to do with a chunk of the daemon's lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FromDaemon {
    /// Bytes for the client: the input with the shim's own traffic removed
    /// and its notices added.
    pub to_client: Option<Pass>,
    /// The replay is done: start sending the queue ([`Resume::take_batch`]).
    pub flush: bool,
    /// The new daemon refused the session: print this, exit 1 (the errors
    /// for what was pending are already in `to_client`).
    pub fatal: Option<String>,
    /// Things for the user's eyes only (stderr).
    pub notes: Vec<String>,
}

/// What a new connection needs first.
#[derive(Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// Lines to send right after the hello.
    pub replay: Vec<u8>,
    /// Nothing to wait for: start sending the queue at once.
    pub flush: bool,
}

/// A request of the client's, pending on the connection.
#[derive(Debug)]
enum Pending {
    Plain,
    /// `initialize`, with its params and its line (to resend if lost).
    Initialize {
        params: Option<String>,
        line: Vec<u8>,
    },
    SetLevel(String),
    Subscribe {
        uri: String,
        params: String,
    },
}

/// A request of the shim's own on the connection.
#[derive(Debug, PartialEq, Eq)]
enum Own {
    Initialize,
    SetLevel,
    /// A subscription (its uri): retried after the next
    /// `resources/list_changed` if it fails, since a server that is still
    /// starting does not list the resource yet.
    Subscribe(String),
}

/// A request from the daemon to the client.
#[derive(Debug)]
struct ServerRequest {
    conn: u64,
    /// The id the daemon used (differs from the key for an alias).
    daemon_id: String,
}

/// What defines the client's session.
#[derive(Debug, Default)]
struct Memory {
    init_params: Option<String>,
    version: Option<String>,
    client_name: Option<String>,
    initialized: bool,
    log_level: Option<String>,
    subscriptions: BTreeMap<String, String>,
}

/// The state machine (see the module docs).
#[derive(Debug)]
pub struct Resume {
    phase: Phase,
    conn: u64,
    resumes: u32,
    memory: Memory,
    in_flight: HashMap<String, Pending>,
    own: HashMap<String, Own>,
    next_own: u64,
    answered: HashSet<String>,
    answered_order: VecDeque<String>,
    server: HashMap<String, ServerRequest>,
    /// The client's `initialize` line lost in flight, to send again.
    resend_init: Option<(String, Pending)>,
    /// The shim's own lines to send before the queue.
    front: Option<Vec<u8>>,
    /// Replayed subscriptions that failed, to try again (uri -> params).
    retry: BTreeMap<String, String>,
    /// Whether the user was told the current resume is complete.
    summarized: bool,
    queue: VecDeque<Vec<u8>>,
    queued_messages: usize,
    queued_bytes: usize,
}

impl Default for Resume {
    fn default() -> Self {
        Self::new()
    }
}

impl Resume {
    /// A session on its first connection (already live).
    pub fn new() -> Self {
        Resume {
            phase: Phase::Live,
            conn: 1,
            resumes: 0,
            memory: Memory::default(),
            in_flight: HashMap::new(),
            own: HashMap::new(),
            next_own: 0,
            answered: HashSet::new(),
            answered_order: VecDeque::new(),
            server: HashMap::new(),
            resend_init: None,
            front: None,
            retry: BTreeMap::new(),
            summarized: true,
            queue: VecDeque::new(),
            queued_messages: 0,
            queued_bytes: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Which connection is current (1 for the first).
    pub fn connection(&self) -> u64 {
        self.conn
    }

    /// How many times the session was resumed on a new connection (a
    /// resume counts once the new daemon accepted the replay).
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// `clientInfo.name` from the client's accepted `initialize`.
    pub fn client_name(&self) -> Option<&str> {
        self.memory.client_name.as_deref()
    }

    /// Whether anything waits to be sent to the daemon.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty() || self.resend_init.is_some()
    }

    /// Requests of the client's waiting for the daemon's answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A chunk of complete lines from the client.
    pub fn from_client(&mut self, chunk: &[u8]) -> FromClient {
        if self.phase == Phase::Live {
            return FromClient::Send(self.send_lines(chunk));
        }
        let messages = lines(chunk).filter(|l| !is_blank(l)).count();
        self.queued_messages += messages;
        self.queued_bytes += chunk.len();
        self.queue.push_back(chunk.to_vec());
        if self.queued_messages > QUEUE_MAX_MESSAGES || self.queued_bytes > QUEUE_MAX_BYTES {
            let why = format!(
                "stdioproxy: more than {QUEUE_MAX_MESSAGES} messages or {} MiB queued while the daemon was unreachable; this request was never sent",
                QUEUE_MAX_BYTES >> 20
            );
            return FromClient::Overflow(self.fail(&why));
        }
        FromClient::Queued {
            first: self.queue.len() == 1,
        }
    }

    /// A chunk of complete lines from the daemon.
    pub fn from_daemon(&mut self, chunk: &[u8]) -> FromDaemon {
        let mut out = FromDaemon::default();
        let mut rewritten: Option<Vec<u8>> = None;
        let mut done = 0;
        for line in lines(chunk) {
            let start = done;
            done += line.len();
            let (keep, extra) = self.daemon_line(line, &mut out);
            if keep.is_none() && extra.is_empty() && rewritten.is_none() {
                continue;
            }
            let buf = rewritten.get_or_insert_with(|| chunk[..start].to_vec());
            match keep {
                None => buf.extend_from_slice(line),
                Some(replacement) => buf.extend_from_slice(&replacement),
            }
            buf.extend_from_slice(&extra);
            if out.fatal.is_some() {
                break;
            }
        }
        out.to_client = Some(match rewritten {
            Some(b) => Pass::Rewritten(b),
            None => Pass::Unchanged,
        });
        out
    }

    /// The connection is lost. Returns the lines for the client: one error
    /// per request in flight, and a cancellation per request the daemon
    /// had asked the client.
    pub fn lost(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.phase = Phase::Down;
        self.own.clear();
        self.front = None;
        self.retry.clear();
        for (id, pending) in std::mem::take(&mut self.in_flight) {
            if let Pending::Initialize { .. } = pending {
                self.resend_init = Some((id, pending));
                continue;
            }
            out.extend_from_slice(internal_error(&id, IN_FLIGHT_LOST).as_bytes());
            self.remember_answered(id);
        }
        for (id, req) in &self.server {
            if req.conn == self.conn {
                out.extend_from_slice(cancelled(id, "the stdioproxy daemon restarted").as_bytes());
            }
        }
        if self.server.len() > OLD_REQUESTS_KEEP {
            self.server.clear();
        }
        out
    }

    /// A new connection is up (its hello is the binary's business).
    pub fn reconnected(&mut self) -> Reconnect {
        self.conn += 1;
        self.summarized = false;
        if let Some((id, pending)) = self.resend_init.take() {
            let replay = match &pending {
                Pending::Initialize { line, .. } => line.clone(),
                _ => Vec::new(),
            };
            self.in_flight.insert(id, pending);
            self.phase = Phase::Replaying;
            return Reconnect {
                replay,
                flush: false,
            };
        }
        let Some(params) = self.memory.init_params.clone() else {
            self.phase = Phase::Flushing;
            return Reconnect {
                replay: Vec::new(),
                flush: true,
            };
        };
        let id = self.own_id(Own::Initialize);
        self.phase = Phase::Replaying;
        Reconnect {
            replay: request(&id, "initialize", Some(&params)).into_bytes(),
            flush: false,
        }
    }

    /// The next bytes to send while flushing on connection `conn`; `None`
    /// when there is nothing left (the session is then live) or the
    /// connection is no longer current.
    pub fn take_batch(&mut self, conn: u64) -> Option<Vec<u8>> {
        if conn != self.conn || self.phase != Phase::Flushing {
            return None;
        }
        if let Some(front) = self.front.take() {
            return Some(front);
        }
        while let Some(chunk) = self.queue.pop_front() {
            self.queued_bytes -= chunk.len();
            self.queued_messages -= lines(&chunk).filter(|l| !is_blank(l)).count();
            match self.send_lines(&chunk) {
                Pass::Unchanged => return Some(chunk),
                Pass::Rewritten(b) if b.is_empty() => continue,
                Pass::Rewritten(b) => return Some(b),
            }
        }
        self.phase = Phase::Live;
        None
    }

    /// Writing `bytes` (lines that [`Self::from_client`] or
    /// [`Self::take_batch`] said to send) to the connection failed before
    /// they were all written: the daemon never got them, so they did not
    /// run. Each request among them that is still waited for is queued
    /// again (sent after the reconnect) instead of failing as "in flight".
    /// A request the shim already answered (the loss was handled first) is
    /// left alone, so nothing is answered twice.
    /// `ahead` puts them before what is queued (a flush that failed: the
    /// queue holds what the client sent after them); otherwise after (a
    /// live write that failed: anything queued since came later).
    pub fn undelivered(&mut self, bytes: &[u8], ahead: bool) {
        let mut again = Vec::new();
        for line in lines(bytes) {
            if let Line::Request { id, .. } = Line::peek(line) {
                if self.in_flight.remove(id.get()).is_some() {
                    self.queued_messages += 1;
                    again.extend_from_slice(line);
                }
            }
        }
        if again.is_empty() {
            return;
        }
        self.queued_bytes += again.len();
        if ahead {
            self.queue.push_front(again);
        } else {
            self.queue.push_back(again);
        }
    }

    /// Gives up: one error (`why`) for every request still pending or
    /// queued. Returns the lines for the client.
    pub fn fail(&mut self, why: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut error = |id: &str| {
            out.extend_from_slice(internal_error(id, why).as_bytes());
        };
        for (id, _) in std::mem::take(&mut self.in_flight) {
            error(&id);
        }
        if let Some((id, _)) = self.resend_init.take() {
            error(&id);
        }
        for chunk in std::mem::take(&mut self.queue) {
            for line in lines(&chunk) {
                if let Line::Request { id, .. } = Line::peek(line) {
                    error(id.get());
                }
            }
        }
        self.queued_bytes = 0;
        self.queued_messages = 0;
        self.phase = Phase::Down;
        out
    }

    /// The client's lines as they go out on the live connection: the
    /// bookkeeping for each, and the rare rewrite (an answer to a request
    /// from a lost connection is dropped; one to an aliased request gets
    /// the daemon's id back).
    fn send_lines(&mut self, chunk: &[u8]) -> Pass {
        let mut rewritten: Option<Vec<u8>> = None;
        let mut done = 0;
        for line in lines(chunk) {
            let start = done;
            done += line.len();
            let keep = self.client_line(line);
            if keep.is_none() && rewritten.is_none() {
                continue;
            }
            let buf = rewritten.get_or_insert_with(|| chunk[..start].to_vec());
            match keep {
                None => buf.extend_from_slice(line),
                Some(replacement) => buf.extend_from_slice(&replacement),
            }
        }
        match rewritten {
            Some(b) => Pass::Rewritten(b),
            None => Pass::Unchanged,
        }
    }

    /// One client line going out: `None` to send it as it is, else what to
    /// send instead.
    fn client_line(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        match Line::peek(line) {
            Line::Request { id, method } => {
                let key = id.get().to_string();
                self.answered.remove(&key);
                let pending = match &*method {
                    "initialize" => Pending::Initialize {
                        params: peek::params(line),
                        line: line.to_vec(),
                    },
                    "logging/setLevel" => match peek::params(line) {
                        Some(p) => Pending::SetLevel(p),
                        None => Pending::Plain,
                    },
                    "resources/subscribe" => match peek::params(line) {
                        Some(params) => match peek::uri(&params) {
                            Some(uri) => Pending::Subscribe { uri, params },
                            None => Pending::Plain,
                        },
                        None => Pending::Plain,
                    },
                    "resources/unsubscribe" => {
                        if let Some(uri) = peek::params(line).as_deref().and_then(peek::uri) {
                            self.memory.subscriptions.remove(&uri);
                            self.retry.remove(&uri);
                        }
                        Pending::Plain
                    }
                    _ => Pending::Plain,
                };
                self.in_flight.insert(key, pending);
                None
            }
            Line::Notification { method } => match &*method {
                "notifications/initialized" => {
                    self.memory.initialized = true;
                    None
                }
                "notifications/cancelled" => {
                    let id = peek::cancelled_id(line)?;
                    if self.answered.remove(&id) {
                        return Some(Vec::new());
                    }
                    // The daemon need not answer a cancelled request: it is
                    // no longer waited for (an answer that comes anyway is
                    // passed on like any other).
                    self.in_flight.remove(&id);
                    None
                }
                _ => None,
            },
            Line::Response { id } => {
                let req = self.server.remove(id.get())?;
                if req.conn != self.conn {
                    return Some(Vec::new());
                }
                (req.daemon_id != id.get()).then(|| peek::splice(line, id.get(), &req.daemon_id))
            }
            Line::Unknown => None,
        }
    }

    /// One daemon line: `None` to pass it to the client as it is, else
    /// what to pass instead; plus lines to add after it.
    fn daemon_line(&mut self, line: &[u8], out: &mut FromDaemon) -> (Option<Vec<u8>>, Vec<u8>) {
        match Line::peek(line) {
            Line::Response { id } => {
                let key = id.get();
                if let Some(own) = self.own.remove(key) {
                    let failed = error_message(line);
                    let extra = match own {
                        Own::Initialize => self.replayed_initialize(line, out),
                        Own::SetLevel => {
                            if let Some(e) = failed {
                                out.notes.push(format!(
                                    "after the reconnect, logging/setLevel failed: {e}"
                                ));
                            }
                            Vec::new()
                        }
                        Own::Subscribe(uri) => {
                            if let Some(e) = failed {
                                out.notes.push(format!("after the reconnect, resources/subscribe {uri} failed: {e}; it is tried again when the daemon's resource list changes"));
                                if let Some(params) = self.memory.subscriptions.get(&uri) {
                                    self.retry.insert(uri, params.clone());
                                }
                            }
                            Vec::new()
                        }
                    };
                    if self.own.is_empty()
                        && self.retry.is_empty()
                        && out.fatal.is_none()
                        && !self.summarized
                    {
                        self.summarized = true;
                        out.notes.push(self.replay_summary());
                    }
                    return (Some(Vec::new()), extra);
                }
                if let Some(pending) = self.in_flight.remove(key) {
                    self.answered_by_daemon(line, pending, out);
                }
                (None, Vec::new())
            }
            Line::Request { id, .. } => {
                let key = id.get();
                let clash = self.server.get(key).is_some_and(|r| r.conn != self.conn);
                let entry = ServerRequest {
                    conn: self.conn,
                    daemon_id: key.to_string(),
                };
                if clash {
                    let alias = self.alias_id();
                    let rewritten = peek::splice(line, key, &alias);
                    self.server.insert(alias, entry);
                    return (Some(rewritten), Vec::new());
                }
                self.server.insert(key.to_string(), entry);
                (None, Vec::new())
            }
            Line::Notification { method } if method == "notifications/resources/list_changed" => {
                self.retry_subscriptions(out);
                (None, Vec::new())
            }
            Line::Notification { method } if method == "notifications/cancelled" => {
                // The daemon withdrew one of its requests: forget it, and
                // name it the way the client knows it.
                let Some(id) = peek::cancelled_id(line) else {
                    return (None, Vec::new());
                };
                let key = self
                    .server
                    .iter()
                    .find(|(_, r)| r.conn == self.conn && r.daemon_id == id)
                    .map(|(k, _)| k.clone());
                match key {
                    Some(k) if k != id => {
                        self.server.remove(&k);
                        (
                            Some(cancelled(&k, "cancelled by the server").into_bytes()),
                            Vec::new(),
                        )
                    }
                    Some(k) => {
                        self.server.remove(&k);
                        (None, Vec::new())
                    }
                    None => (None, Vec::new()),
                }
            }
            _ => (None, Vec::new()),
        }
    }

    fn own_id(&mut self, what: Own) -> String {
        self.next_own += 1;
        let id = format!("\"stdioproxy-shim:replay:{}\"", self.next_own);
        self.own.insert(id.clone(), what);
        id
    }

    fn alias_id(&mut self) -> String {
        self.next_own += 1;
        format!("\"stdioproxy-shim:alias:{}\"", self.next_own)
    }

    fn remember_answered(&mut self, id: String) {
        if self.answered.insert(id.clone()) {
            self.answered_order.push_back(id);
        }
        while self.answered_order.len() > ANSWERED_KEEP {
            if let Some(old) = self.answered_order.pop_front() {
                self.answered.remove(&old);
            }
        }
    }
}

/// The lines of a chunk, each with its newline.
fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    chunk.split_inclusive(|&b| b == b'\n')
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}
