//! The MCP client side of one running child: framing on its stdin/stdout, its
//! own request-id space, and the map of requests waiting for an answer.
//!
//! Every request sent to the child gets a fresh numeric id from this
//! connection's counter; the pending map remembers who asked (a client
//! session with its original id, or the daemon itself), so a response is
//! delivered to exactly that asker with the asker's id restored verbatim,
//! whatever its type. Responses are routed straight from the reader task into
//! the asking session's outbox, so many calls can be in flight at once and a
//! slow one never delays another (no head-of-line blocking).
//!
//! Client requests carry a deadline (`request_timeout`, pushed back by each
//! progress notification for that request). A sweeper task answers expired
//! requests with a timeout error and tells the child
//! `notifications/cancelled`. A client's progress token is replaced by a
//! token unique on this connection (`sp-<upstream id>`) so that two clients
//! using the same token each get only their own progress; late progress for
//! a finished request is dropped.
//!
//! Invariant: once `closed` is set, no entry stays in the pending map: the
//! reader fails all entries after setting it, and `forward` re-checks it after
//! inserting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::UpstreamError;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, code, Envelope, Kind, RawObject};
use crate::outbox::Outbox;

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
    /// The child sent `notifications/tools/list_changed`.
    ToolsChanged,
    /// The child closed stdout, sent an oversized message, or its pipe broke.
    Closed,
}

enum Pending {
    Client(ClientRequest),
    Internal(oneshot::Sender<Reply>),
}

struct ClientRequest {
    outbox: Arc<Outbox>,
    client_id: Box<RawValue>,
    /// When the request times out; pushed back by progress.
    deadline: Instant,
    /// The client's own progress token, when it asked for progress.
    progress_token: Option<Box<RawValue>>,
}

enum WriterMsg {
    Line(String),
    Close,
}

/// Queue depth towards one child's stdin.
const TO_CHILD_CAPACITY: usize = 4096;

/// One running child, as seen by everyone who talks to it.
pub struct Connection {
    server: Arc<str>,
    to_child: mpsc::Sender<WriterMsg>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Milliseconds; changed in place by a reload.
    request_timeout_ms: AtomicU64,
    /// Woken whenever the pending map becomes empty (draining).
    idle: tokio::sync::Notify,
    next_id: AtomicU64,
    closed: AtomicBool,
    closed_tx: watch::Sender<bool>,
}

impl Connection {
    /// Starts the reader and writer tasks for a child's pipes.
    pub fn start(
        server: Arc<str>,
        stdin: ChildStdin,
        stdout: ChildStdout,
        max_message: usize,
        request_timeout: Duration,
        events: mpsc::UnboundedSender<Event>,
    ) -> Arc<Self> {
        let (to_child, rx) = mpsc::channel(TO_CHILD_CAPACITY);
        let conn = Arc::new(Self {
            server,
            to_child,
            pending: Mutex::new(HashMap::new()),
            request_timeout_ms: AtomicU64::new(millis(request_timeout)),
            idle: tokio::sync::Notify::new(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            closed_tx: watch::channel(false).0,
        });
        tokio::spawn(write_loop(conn.server.clone(), stdin, rx));
        tokio::spawn(conn.clone().read_loop(stdout, max_message, events));
        tokio::spawn(sweep_loop(Arc::downgrade(&conn)));
        conn
    }

    /// Forwards a client's request. The response goes to `outbox` with
    /// `client_id` restored; a progress token in `params._meta` is replaced
    /// by one unique on this connection and mapped back on progress.
    pub async fn forward(
        &self,
        method: &str,
        params: Option<&str>,
        client_id: Box<RawValue>,
        outbox: Arc<Outbox>,
    ) -> Result<(), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (params, progress_token) = match params {
            Some(p) if p.contains("progressToken") => {
                let (rewritten, token) = rewrite_progress_token(p, &progress_token_for(id));
                (Some(rewritten), token)
            }
            other => (other.map(str::to_string), None),
        };
        let request = ClientRequest {
            outbox,
            client_id,
            deadline: Instant::now() + self.request_timeout(),
            progress_token,
        };
        self.lock().insert(id, Pending::Client(request));
        self.send_registered(id, jsonrpc::request(id, method, params.as_deref()))
            .await
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
        self.send_registered(id, jsonrpc::request(id, method, params))
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(UpstreamError::Closed),
            Err(_) => {
                self.take(id);
                Err(UpstreamError::Timeout(timeout))
            }
        }
    }

    async fn send_registered(&self, id: u64, line: String) -> Result<(), UpstreamError> {
        // Re-check after inserting: the reader may have failed everything
        // between our insert and now (see the module invariant).
        if self.is_closed() || self.to_child.send(WriterMsg::Line(line)).await.is_err() {
            self.take(id);
            return Err(UpstreamError::Closed);
        }
        Ok(())
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<&str>) -> Result<(), UpstreamError> {
        self.to_child
            .send(WriterMsg::Line(jsonrpc::notification(method, params)))
            .await
            .map_err(|_| UpstreamError::Closed)
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
        &self.server
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

    fn take(&self, id: u64) -> Option<Pending> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn read_loop(
        self: Arc<Self>,
        stdout: ChildStdout,
        max_message: usize,
        events: mpsc::UnboundedSender<Event>,
    ) {
        let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, stdout), max_message);
        let reason = loop {
            match reader.next_frame().await {
                Ok(Frame::Line(line)) => self.on_line(&line, &events),
                Ok(Frame::TooLong { .. }) => {
                    tracing::error!(server = %self.server,
                        "server sent a message larger than {max_message} bytes; treating it as broken");
                    break "sent an oversized message";
                }
                Ok(Frame::Eof) => break "closed its stdout",
                Err(e) => {
                    tracing::warn!(server = %self.server, "reading from server failed: {e}");
                    break "stdout read failed";
                }
            }
        };
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Pending> = self.lock().drain().map(|(_, p)| p).collect();
        let message = format!(
            "server '{}' {reason} while handling the request (it is being restarted)",
            self.server
        );
        for p in drained {
            if let Pending::Client(req) = p {
                let data = serde_json::json!({ "server": &*self.server });
                req.outbox.send(jsonrpc::error_response(
                    Some(req.client_id.get()),
                    code::SERVER_CRASHED,
                    &message,
                    Some(data),
                ));
            }
            // Internal waiters see their sender dropped: UpstreamError::Closed.
        }
        self.closed_tx.send_replace(true);
        let _ = events.send(Event::Closed);
    }

    fn on_line(&self, line: &[u8], events: &mpsc::UnboundedSender<Event>) {
        let env = match Envelope::parse(line) {
            Ok(env) => env,
            Err(e) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]);
                tracing::warn!(server = %self.server, "skipping a line that is not a JSON-RPC message ({e:?}): {shown}");
                return;
            }
        };
        match env.kind() {
            Kind::Response => self.on_response(&env),
            Kind::Notification => self.on_notification(&env, events),
            Kind::Request => self.on_request(&env),
            Kind::Invalid => {
                tracing::warn!(server = %self.server, "skipping an invalid JSON-RPC message from the server");
            }
        }
    }

    fn on_response(&self, env: &Envelope<'_>) {
        let id = env.id.and_then(|raw| raw.get().parse::<u64>().ok());
        let Some(entry) = id.and_then(|id| self.take(id)) else {
            tracing::warn!(server = %self.server, id = env.id.map(|r| r.get()).unwrap_or("null"),
                "dropping a response to an id nobody is waiting for");
            return;
        };
        match entry {
            Pending::Client(req) => {
                let line = match (env.result, env.error) {
                    (Some(r), _) => jsonrpc::response(req.client_id.get(), r.get()),
                    (None, Some(e)) => jsonrpc::error_response_raw(req.client_id.get(), e.get()),
                    (None, None) => return,
                };
                req.outbox.send(line);
            }
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

    fn on_notification(&self, env: &Envelope<'_>, events: &mpsc::UnboundedSender<Event>) {
        let method = env.method.as_deref().unwrap_or_default();
        match method {
            "notifications/tools/list_changed" => {
                let _ = events.send(Event::ToolsChanged);
            }
            "notifications/progress" => self.on_progress(env),
            "notifications/message" => {
                tracing::debug!(server = %self.server, params = env.params.map(|p| p.get()), "log message from server");
            }
            _ => {
                tracing::debug!(server = %self.server, method, "notification from server not routed to clients");
            }
        }
    }

    /// Routes progress to the one client that asked for it, with its own
    /// token, and pushes that request's deadline back.
    fn on_progress(&self, env: &Envelope<'_>) {
        let Some(params) = env.params.and_then(RawObject::parse) else {
            return;
        };
        let Some(id) = params
            .get_str("progressToken")
            .and_then(|t| t.strip_prefix("sp-").and_then(|n| n.parse::<u64>().ok()))
        else {
            tracing::debug!(server = %self.server, "dropping progress with a token stdioproxy did not issue");
            return;
        };
        let mut pending = self.lock();
        let Some(Pending::Client(req)) = pending.get_mut(&id) else {
            // Late progress for a finished, cancelled or timed-out request.
            return;
        };
        let Some(token) = &req.progress_token else {
            return;
        };
        req.deadline = Instant::now() + self.request_timeout();
        let rewritten = params.to_string_with(&[("progressToken", token.get())]);
        req.outbox.send(jsonrpc::notification(
            "notifications/progress",
            Some(&rewritten),
        ));
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
            tracing::warn!(server = %self.server, upstream_id = id, "request timed out after {timeout:?}; cancelling it");
            let message = format!(
                "request to server '{}' timed out after {timeout:?} (request_timeout)",
                self.server
            );
            let data = serde_json::json!({ "server": &*self.server });
            req.outbox.send(jsonrpc::error_response(
                Some(req.client_id.get()),
                code::REQUEST_TIMEOUT,
                &message,
                Some(data),
            ));
            let params =
                serde_json::json!({ "requestId": id, "reason": "request timed out" }).to_string();
            let line = jsonrpc::notification("notifications/cancelled", Some(&params));
            let _ = self.to_child.try_send(WriterMsg::Line(line));
        }
    }

    fn on_request(&self, env: &Envelope<'_>) {
        let method = env.method.as_deref().unwrap_or_default();
        let id = env.id.map_or("null", |r| r.get());
        let line = if method == "ping" {
            jsonrpc::response(id, "{}")
        } else {
            tracing::warn!(server = %self.server, method, "server sent a request stdioproxy does not route; answering with an error");
            jsonrpc::error_response(
                Some(id),
                code::METHOD_NOT_FOUND,
                &format!("stdioproxy does not route {method} from shared servers to clients"),
                None,
            )
        };
        if self.to_child.try_send(WriterMsg::Line(line)).is_err() {
            tracing::warn!(server = %self.server, "cannot answer the server's request: its stdin queue is full or closed");
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The token a child sees for the progress of upstream request `id`.
fn progress_token_for(id: u64) -> String {
    format!("sp-{id}")
}

/// Replaces `params._meta.progressToken` with `token`; returns the new params
/// and the client's original token (raw), or the params unchanged.
fn rewrite_progress_token(params: &str, token: &str) -> (String, Option<Box<RawValue>>) {
    let unchanged = || (params.to_string(), None);
    let Ok(raw) = serde_json::from_str::<&RawValue>(params) else {
        return unchanged();
    };
    let Some(obj) = RawObject::parse(raw) else {
        return unchanged();
    };
    let Some(meta) = obj.get("_meta").and_then(RawObject::parse) else {
        return unchanged();
    };
    let Some(original) = meta.get("progressToken") else {
        return unchanged();
    };
    let mut quoted = String::new();
    jsonrpc::push_json_str(&mut quoted, token);
    let new_meta = meta.to_string_with(&[("progressToken", &quoted)]);
    (
        obj.to_string_with(&[("_meta", &new_meta)]),
        Some(original.to_owned()),
    )
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
            Some(c) if !c.is_closed() => c.expire(Instant::now()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_tokens_are_replaced_and_remembered() {
        let p = r#"{"name":"x","_meta":{"progressToken":1,"other":true},"arguments":{}}"#;
        let (out, tok) = rewrite_progress_token(p, "sp-9");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["_meta"]["progressToken"], "sp-9");
        assert_eq!(v["_meta"]["other"], true);
        assert_eq!(tok.unwrap().get(), "1");
        let (out, tok) = rewrite_progress_token(r#"{"progressToken":1}"#, "sp-1");
        assert_eq!(out, r#"{"progressToken":1}"#);
        assert!(tok.is_none());
    }
}
