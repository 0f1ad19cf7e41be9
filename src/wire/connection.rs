//! The MCP client side of one running child: framing on its stdin/stdout, its
//! own request-id space, and the map of requests waiting for an answer.
//!
//! Every request sent to the child gets a fresh numeric id from this
//! connection's counter; the pending map remembers who asked (a client
//! session with its original id, or the daemon itself), so a response is
//! delivered to exactly that asker with the asker's id restored verbatim,
//! whatever its type. Responses are routed straight from the reader task into
//! the asking session's outbox, so many calls can be in flight at once and a
//! slow one never delays another (no head-of-line blocking). Forwarding never
//! waits either: a child whose input queue is full fails the call at once.
//!
//! Client requests carry a deadline (`request_timeout`, pushed back by each
//! progress notification for that request). A sweeper task answers expired
//! requests with a timeout error and tells the child
//! `notifications/cancelled`. A client's progress token is replaced by a
//! token unique on this connection (`sp-<upstream id>`) so that two clients
//! using the same token each get only their own progress; progress for a
//! request that is finished, cancelled or timed out is dropped, as is a late
//! response.
//!
//! What the child sends besides responses (notifications, and requests to
//! the client) is handled in [`super::inbound`]; task ids in results are
//! rewritten by [`super::tasks`], progress tokens by [`super::progress`].
//!
//! Invariant: once `closed` is set, no entry stays in the pending map: the
//! reader fails all entries after setting it, and `forward` re-checks it after
//! inserting. Lock order: the pending lock is released before calling into a
//! session link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};

use super::link::SessionLink;
use super::progress::{progress_token_for, rewrite_progress_token};
use super::routes::Routes;
use super::Context;
use crate::catalog::ListKind;
use crate::error::UpstreamError;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, code, Envelope, Kind};

/// A child's answer to a daemon-originated request.
#[derive(Debug)]
pub enum Reply {
    /// `result`, raw.
    Result(Box<RawValue>),
    /// `error`, raw.
    Error(Box<RawValue>),
}

/// Something the lifecycle task must react to.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The child said one of its lists changed.
    ListChanged(ListKind),
    /// The child closed stdout, sent an oversized message, or its pipe broke.
    Closed,
}

/// How a client request's result must be rewritten on its way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Passed through verbatim.
    None,
    /// The request asked for a task (`params.task`): a `CreateTaskResult`
    /// gets a daemon-minted task id.
    NewTask,
    /// A `tasks/*` request about the child's task `child`, which the client
    /// knows as `client`.
    Task {
        /// The child's task id.
        child: String,
        /// The client's task id.
        client: String,
    },
}

pub(super) enum Pending {
    Client(ClientRequest),
    Internal(oneshot::Sender<Reply>),
    /// A modern client's call answered `input_required`, waiting for the
    /// retry (see `mrtr`).
    Parked(super::mrtr::Parked),
}

pub(super) struct ClientRequest {
    pub(super) link: Arc<SessionLink>,
    pub(super) client_id: Box<RawValue>,
    pub(super) ticket: u64,
    /// When the request times out; pushed back by progress.
    pub(super) deadline: Instant,
    /// The client's own progress token, when it asked for progress.
    pub(super) progress_token: Option<Box<RawValue>>,
    pub(super) rewrite: Rewrite,
    /// For a legacy client's call to a modern child: what to retry it with
    /// after an `input_required` (see `modern`).
    pub(super) retry: Option<Box<super::modern::RetryBase>>,
}

impl ClientRequest {
    /// Delivers a line answering this request (after forgetting it, so the
    /// client may reuse its id the moment it reads the line).
    pub(super) fn answer(self, line: String) {
        self.link.finish(self.client_id.get(), self.ticket);
        self.link.outbox.send(line);
    }
}

pub(super) enum WriterMsg {
    Line(String),
    Close,
}

/// Queue depth towards one child's stdin.
const TO_CHILD_CAPACITY: usize = 4096;

/// A client request to forward.
pub struct ClientCall<'a> {
    /// The session that asked.
    pub link: &'a Arc<SessionLink>,
    /// The client's id, raw.
    pub client_id: &'a RawValue,
    /// The session's ticket for this request ([`SessionLink::begin`]).
    pub ticket: u64,
    /// How the result is rewritten.
    pub rewrite: Rewrite,
}

/// One running child, as seen by everyone who talks to it.
pub struct Connection {
    pub(super) ctx: Arc<Context>,
    pub(super) to_child: mpsc::Sender<WriterMsg>,
    pending: Mutex<HashMap<u64, Pending>>,
    pub(super) routes: Mutex<Routes>,
    /// Milliseconds; changed in place by a reload.
    request_timeout_ms: AtomicU64,
    /// Woken whenever the pending map becomes empty (draining).
    pub(super) idle: tokio::sync::Notify,
    pub(super) next_id: AtomicU64,
    closed: AtomicBool,
    /// The child speaks 2026-07-28 (see `modern`).
    pub(super) modern: AtomicBool,
    closed_tx: watch::Sender<bool>,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

impl Connection {
    /// Starts the reader and writer tasks for a child's pipes.
    pub fn start(
        ctx: Arc<Context>,
        stdin: ChildStdin,
        stdout: ChildStdout,
        max_message: usize,
        request_timeout: Duration,
        events: mpsc::UnboundedSender<Event>,
    ) -> Arc<Self> {
        let (to_child, rx) = mpsc::channel(TO_CHILD_CAPACITY);
        let conn = Arc::new(Self {
            ctx,
            to_child,
            pending: Mutex::new(HashMap::new()),
            routes: Mutex::new(Routes::default()),
            request_timeout_ms: AtomicU64::new(millis(request_timeout)),
            idle: tokio::sync::Notify::new(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            modern: AtomicBool::new(false),
            closed_tx: watch::channel(false).0,
            events,
        });
        tokio::spawn(write_loop(conn.server_arc(), stdin, rx));
        tokio::spawn(conn.clone().read_loop(stdout, max_message));
        tokio::spawn(sweep_loop(Arc::downgrade(&conn)));
        conn
    }

    /// Forwards a client's request; returns the id the child sees. The
    /// response goes to the session with the client's id restored; a
    /// progress token in `params._meta` is replaced by one unique on this
    /// connection and mapped back on progress. Never waits: a child that is
    /// gone or not reading its input fails the call at once.
    pub fn forward(
        &self,
        method: &str,
        params: Option<&str>,
        call: ClientCall<'_>,
    ) -> Result<u64, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let retry = self.retry_base(method, params, &call);
        let (params, progress_token) = match params {
            Some(p) if p.contains("progressToken") => {
                let (rewritten, token) = rewrite_progress_token(p, &progress_token_for(id));
                (Some(rewritten), token)
            }
            other => (other.map(str::to_string), None),
        };
        let request = ClientRequest {
            link: call.link.clone(),
            client_id: call.client_id.to_owned(),
            ticket: call.ticket,
            deadline: Instant::now() + self.request_timeout(),
            progress_token,
            rewrite: call.rewrite,
            retry,
        };
        // A legacy client's logging/setLevel becomes the request's log level
        // for a modern child (which has no setLevel).
        let level = (!call.link.era.is_modern())
            .then(|| call.link.log_level())
            .flatten();
        let params = self.for_child_at(params, level);
        self.lock().insert(id, Pending::Client(request));
        self.routes().note_requester(call.link.id);
        let line = jsonrpc::request(id, method, params.as_deref());
        // Re-check after inserting: the reader may have failed everything
        // between our insert and now (see the module invariant).
        let sent = if self.is_closed() {
            Err(UpstreamError::Closed)
        } else {
            self.to_child
                .try_send(WriterMsg::Line(line))
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => UpstreamError::Busy,
                    mpsc::error::TrySendError::Closed(_) => UpstreamError::Closed,
                })
        };
        match sent {
            Ok(()) => Ok(id),
            Err(e) => {
                self.take(id);
                Err(e)
            }
        }
    }

    /// Sends a request on the daemon's own behalf and waits for the reply.
    pub async fn request(
        &self,
        method: &str,
        params: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, Pending::Internal(tx));
        let params = self.for_child(params.map(str::to_string));
        let line = jsonrpc::request(id, method, params.as_deref());
        if self.is_closed() || self.to_child.send(WriterMsg::Line(line)).await.is_err() {
            self.take(id);
            return Err(UpstreamError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(UpstreamError::Closed),
            Err(_) => {
                self.take(id);
                Err(UpstreamError::Timeout(timeout))
            }
        }
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<&str>) -> Result<(), UpstreamError> {
        self.to_child
            .send(WriterMsg::Line(jsonrpc::notification(method, params)))
            .await
            .map_err(|_| UpstreamError::Closed)
    }

    /// Queues a line for the child without waiting; false when its input
    /// queue is full or gone.
    pub(super) fn send_line(&self, line: String) -> bool {
        self.to_child.try_send(WriterMsg::Line(line)).is_ok()
    }

    /// Cancels a forwarded client request: it is forgotten (a late response
    /// or progress is dropped) and the child is sent
    /// `notifications/cancelled`.
    pub fn cancel(&self, upstream_id: u64, reason: &str) {
        if self.take(upstream_id).is_none() {
            return;
        }
        let params = serde_json::json!({ "requestId": upstream_id, "reason": reason }).to_string();
        if !self.send_line(jsonrpc::notification(
            "notifications/cancelled",
            Some(&params),
        )) {
            tracing::debug!(server = %self.server(), upstream_id, "cannot send a cancellation: the server's input is full or closed");
        }
    }

    /// Closes the child's stdin once everything queued before was written.
    pub fn close_stdin(&self) {
        let _ = self.to_child.try_send(WriterMsg::Close);
    }

    /// True once the child's stdout is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Completes once the child's stdout is gone.
    pub async fn closed(&self) {
        let mut rx = self.closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.ctx.server
    }

    fn server_arc(&self) -> Arc<str> {
        self.ctx.server.clone()
    }

    /// The request timeout of client calls on this connection.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes the request timeout (for requests sent or extended from now).
    pub fn set_request_timeout(&self, timeout: Duration) {
        self.request_timeout_ms
            .store(millis(timeout), Ordering::Relaxed);
    }

    /// Completes once no request is waiting for the child.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn take(&self, id: u64) -> Option<Pending> {
        let mut pending = self.lock();
        let entry = pending.remove(&id);
        if pending.is_empty() {
            self.idle.notify_waiters();
        }
        entry
    }

    /// Requests still waiting for the child.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    /// The sessions with client requests in flight on this child.
    pub(super) fn requesters(&self) -> Vec<Arc<SessionLink>> {
        let mut seen: Vec<Arc<SessionLink>> = Vec::new();
        for p in self.lock().values() {
            if let Pending::Client(r) = p {
                if !seen.iter().any(|l| l.id == r.link.id) {
                    seen.push(r.link.clone());
                }
            }
        }
        seen
    }

    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock()
    }

    pub(super) fn routes(&self) -> parking_lot::MutexGuard<'_, Routes> {
        self.routes.lock()
    }

    async fn read_loop(self: Arc<Self>, stdout: ChildStdout, max_message: usize) {
        let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, stdout), max_message);
        let reason = loop {
            match reader.next_frame().await {
                Ok(Frame::Line(line)) => self.on_line(&line),
                Ok(Frame::TooLong { .. }) => {
                    tracing::error!(server = %self.server(),
                        "server sent a message larger than {max_message} bytes; treating it as broken");
                    break "sent an oversized message";
                }
                Ok(Frame::Eof) => break "closed its stdout",
                Err(e) => {
                    tracing::warn!(server = %self.server(), "reading from server failed: {e}");
                    break "stdout read failed";
                }
            }
        };
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Pending> = self.lock().drain().map(|(_, p)| p).collect();
        self.idle.notify_waiters();
        let message = format!(
            "server '{}' {reason} while handling the request (it is being restarted)",
            self.server()
        );
        for p in drained {
            if let Pending::Client(req) = p {
                let data = serde_json::json!({ "server": self.server() });
                let line = jsonrpc::error_response(
                    Some(req.client_id.get()),
                    code::SERVER_CRASHED,
                    &message,
                    Some(data),
                );
                req.answer(line);
            }
            // Internal waiters see their sender dropped: UpstreamError::Closed.
        }
        self.abandon_client_requests();
        self.closed_tx.send_replace(true);
        let _ = self.events.send(Event::Closed);
    }

    fn on_line(self: &Arc<Self>, line: &[u8]) {
        let env = match Envelope::parse(line) {
            Ok(env) => env,
            Err(e) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]);
                tracing::warn!(server = %self.server(), "skipping a line that is not a JSON-RPC message ({e:?}): {shown}");
                return;
            }
        };
        match env.kind() {
            Kind::Response => self.on_response(&env),
            Kind::Notification => self.on_notification(&env),
            Kind::Request => self.on_request(&env),
            Kind::Invalid => {
                tracing::warn!(server = %self.server(), "skipping an invalid JSON-RPC message from the server");
            }
        }
    }

    fn on_response(self: &Arc<Self>, env: &Envelope<'_>) {
        let id = env.id.and_then(|raw| raw.get().parse::<u64>().ok());
        if id.is_some_and(|id| self.keep_parked_answer(id, env)) {
            return;
        }
        let Some(entry) = id.and_then(|id| self.take(id)) else {
            let issued = id.is_some_and(|id| id < self.next_id.load(Ordering::Relaxed));
            let shown = env.id.map_or("null", |r| r.get());
            if issued {
                // Answered after a cancel or a timeout: expected, dropped.
                tracing::debug!(server = %self.server(), id = shown, "dropping a late response");
            } else {
                tracing::warn!(server = %self.server(), id = shown,
                    "dropping a response to an id nobody is waiting for");
            }
            return;
        };
        match entry {
            Pending::Client(req) if self.is_modern() => self.modern_response(req, env),
            Pending::Client(req) => {
                let line = match (env.result, env.error) {
                    (Some(r), _) => match &req.rewrite {
                        Rewrite::None => req.link.era.result_line(req.client_id.get(), r.get()),
                        rewrite => {
                            let rewritten = self.rewrite_task_result(&req, rewrite, r, id);
                            req.link.era.result_line(req.client_id.get(), &rewritten)
                        }
                    },
                    (None, Some(e)) => jsonrpc::error_response_raw(req.client_id.get(), e.get()),
                    (None, None) => return,
                };
                req.answer(line);
            }
            // Kept by keep_parked_answer above.
            Pending::Parked(_) => {}
            Pending::Internal(tx) => {
                let reply = match (env.result, env.error) {
                    (Some(r), _) => Reply::Result(r.to_owned()),
                    (None, Some(e)) => Reply::Error(e.to_owned()),
                    (None, None) => return,
                };
                let _ = tx.send(reply);
            }
        }
    }

    /// Fails client requests whose deadline passed and cancels them upstream.
    fn expire(&self, now: Instant) {
        let expired: Vec<(u64, ClientRequest)> = {
            let mut pending = self.lock();
            let ids: Vec<u64> = pending
                .iter()
                .filter_map(|(id, p)| match p {
                    Pending::Client(r) if r.deadline <= now => Some(*id),
                    _ => None,
                })
                .collect();
            let expired = ids
                .into_iter()
                .filter_map(|id| match pending.remove(&id) {
                    Some(Pending::Client(r)) => Some((id, r)),
                    _ => None,
                })
                .collect();
            if pending.is_empty() {
                self.idle.notify_waiters();
            }
            expired
        };
        for (id, req) in expired {
            let timeout = self.request_timeout();
            tracing::warn!(server = %self.server(), upstream_id = id, "request timed out after {timeout:?}; cancelling it");
            let message = format!(
                "request to server '{}' timed out after {timeout:?} (request_timeout)",
                self.server()
            );
            let data = serde_json::json!({ "server": self.server() });
            let line = jsonrpc::error_response(
                Some(req.client_id.get()),
                code::REQUEST_TIMEOUT,
                &message,
                Some(data),
            );
            req.answer(line);
            let params =
                serde_json::json!({ "requestId": id, "reason": "request timed out" }).to_string();
            let line = jsonrpc::notification("notifications/cancelled", Some(&params));
            let _ = self.send_line(line);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Expires timed-out requests until the connection is gone.
async fn sweep_loop(conn: std::sync::Weak<Connection>) {
    let tick = match conn.upgrade() {
        Some(c) => {
            (c.request_timeout() / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(tick).await;
        match conn.upgrade() {
            Some(c) if !c.is_closed() => {
                c.expire(Instant::now());
                c.expire_rounds();
            }
            _ => return,
        }
    }
}

async fn write_loop(server: Arc<str>, stdin: ChildStdin, mut rx: mpsc::Receiver<WriterMsg>) {
    let mut w = BufWriter::with_capacity(64 * 1024, stdin);
    'outer: while let Some(msg) = rx.recv().await {
        let mut next = Some(msg);
        // Write everything already queued, then flush once.
        while let Some(msg) = next {
            match msg {
                WriterMsg::Line(line) => {
                    if let Err(e) = w.write_all(line.as_bytes()).await {
                        tracing::debug!(server = %server, "writing to server failed: {e}");
                        break 'outer;
                    }
                }
                WriterMsg::Close => {
                    let _ = w.flush().await;
                    break 'outer;
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = w.flush().await {
            tracing::debug!(server = %server, "writing to server failed: {e}");
            break;
        }
    }
    // Dropping the writer closes the child's stdin.
}
