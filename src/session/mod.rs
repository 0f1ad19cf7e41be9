//! One MCP session per client connection, in which the daemon is the server.
//!
//! The session answers `initialize`, `ping`, `logging/setLevel` and the four
//! lists itself (lists come from the catalog snapshot, see `lists`), routes
//! everything addressed to a child to that child (see `route`, `resources`,
//! `tasks`), passes the client's answers to children's requests back, and
//! tells the client `notifications/{tools,prompts,resources}/list_changed`
//! whenever what it can see changed. Bad input never ends the session: a line
//! that is not JSON gets -32700 and the next line is read as usual. What it
//! uses of the rest of the daemon is in its [`Hub`].
//!
//! Everything the client is sent goes through the session's
//! [`Outbox`], drained by a writer task that batches
//! writes. What children need to reach the session by is in its
//! [`SessionLink`], registered in the daemon's
//! [`Registry`](crate::wire::Registry) for the session's lifetime. When the
//! session ends, requests it still waits for are cancelled upstream,
//! children's requests it was handling are answered with an error, and its
//! subscriptions are dropped.

mod first_list;
mod fit;
mod hub;
mod initialize;
mod lists;
mod modern;
mod resources;
mod route;
mod tasks;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};

pub use hub::Hub;

use crate::catalog::ListKind;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, code, Envelope, Kind, ParseError, RawObject};
use crate::loglevel::Level;
use crate::wire::{Outbox, SessionLink};

/// Read and write buffer of a client connection: small, because hundreds of
/// idle sessions must stay cheap (a longer line just grows the line buffer),
/// and a message is usually far smaller.
pub const SESSION_BUFFER: usize = 8 * 1024;

/// Options a shim may set in its hello.
#[derive(Debug, Default, Clone)]
pub struct SessionOptions {
    /// Only these servers are visible (all when `None`).
    pub servers: Option<HashSet<String>>,
    /// The names the session sees (`--server`, `--name-max`).
    pub naming: crate::view::Naming,
    /// `--tools search`: two meta-tools instead of the whole catalog.
    pub search: bool,
    /// The session's workspace (per-workspace servers run one instance per
    /// workspace; docs/INSTANCES.md).
    pub workspace: Option<crate::workspace::Workspace>,
    /// Set when a shim resumes its client's session on a new connection
    /// (the daemon restarted): the client will not initialize again, the
    /// shim replays its session.
    pub resumed: Option<crate::proto::Resumed>,
}

pub use fit::{check_options, options_from_hello};

/// The groups of lists a client is told about separately, with the lists
/// each covers (templates share resources' notification).
const ANNOUNCED: [&[ListKind]; 3] = [
    &[ListKind::Tools],
    &[ListKind::Prompts],
    &[ListKind::Resources, ListKind::Templates],
];

struct Session {
    hub: Arc<Hub>,
    link: Arc<SessionLink>,
    /// Per group of [`ANNOUNCED`], the view fingerprint last announced (or
    /// listed); list_changed is sent when the current one differs.
    announced: [Option<u64>; 3],
    /// The session's own names and search mode, when it asked for them.
    fit: fit::Fit,
    /// The session has sent its first `tools/list`.
    listed_tools: bool,
    /// Its first `tools/list`, held during the daemon's first start.
    held: Option<first_list::Held>,
    /// A hold just started: the session loop takes its receiver.
    new_hold: Option<tokio::sync::oneshot::Receiver<Vec<String>>>,
}

/// Runs a session until the client disconnects, is dropped, or the daemon
/// shuts down. `greeting` is written first (the hello reply), `first` is an
/// MCP line the listener already read.
pub async fn run<R, W>(
    hub: Arc<Hub>,
    mut reader: LineReader<R>,
    writer: W,
    greeting: Option<String>,
    first: Option<Vec<u8>>,
    options: SessionOptions,
) where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = hub.next_session_id();
    let (outbox, rx) = Outbox::new(id);
    let (closing_tx, closing_rx) = watch::channel(false);
    let writer_task = tokio::spawn(write_loop(writer, rx, closing_rx));
    match &options.resumed {
        None => {
            tracing::info!(session = id, servers = ?options.servers, server = ?options.naming.server,
            name_max = ?options.naming.name_max, search = options.search, "client session opened")
        }
        Some(r) => tracing::info!(
            session = id,
            servers = ?options.servers,
            client = r.client.as_deref().unwrap_or("(unnamed)"),
            resumes = r.count,
            "session resumed: a client's shim reconnected after the daemon restarted and replays its session"
        ),
    }
    if let Some(w) = &options.workspace {
        tracing::info!(session = id, workspace = %w, "session workspace");
    }
    let link = Arc::new(
        SessionLink::new(id, outbox, options.servers.clone())
            .with_workspace(options.workspace.clone()),
    );
    if let Some(g) = greeting {
        link.outbox.send(g);
    }
    hub.registry.insert(link.clone());
    // Ends the session's business with the children even if a bug makes
    // this task panic.
    let _closing = Closing {
        hub: hub.clone(),
        link: link.clone(),
    };
    let mut session = Session {
        hub: hub.clone(),
        link: link.clone(),
        announced: [None; 3],
        fit: fit::Fit::new(&options),
        listed_tools: false,
        held: None,
        new_hold: None,
    };
    // The held first tools/list's wait, when there is one.
    let mut hold: Option<tokio::sync::oneshot::Receiver<Vec<String>>> = None;
    let mut catalog_rx = hub.supervisor.subscribe();
    let mut shutdown = hub.shutdown_signal();
    if let Some(line) = first {
        session.on_line(&line);
        hold = session.new_hold.take().or(hold);
    }
    let reason = {
        // Armed once, not on every message; checked before the client's
        // next line so that a client that writes without end starves none
        // of them.
        let overflowed = link.outbox.overflowed();
        tokio::pin!(overflowed);
        let stopping = crate::flag::raised(&mut shutdown);
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopping => break "daemon stopping",
                _ = &mut overflowed => break OVERFLOW,
                changed = catalog_rx.changed() => {
                    if changed.is_err() { break "daemon stopping"; }
                    let catalog = catalog_rx.borrow_and_update().clone();
                    session.maybe_announce(&catalog);
                }
                missing = async { hold.as_mut().expect("guarded").await }, if hold.is_some() => {
                    hold = None;
                    session.answer_held(missing.unwrap_or_default());
                }
                frame = reader.next_frame() => match frame {
                    Ok(Frame::Line(line)) => {
                        session.on_line(&line);
                        hold = session.new_hold.take().or(hold);
                    }
                    Ok(Frame::TooLong { prefix }) => session.on_too_long(&prefix),
                    Ok(Frame::Eof) => break "client disconnected",
                    Err(e) => {
                        tracing::debug!(session = id, "read error: {e}");
                        break "read error";
                    }
                },
            }
        }
    };
    tracing::info!(session = id, reason, "client session closed");
    drop(session);
    drop(_closing);
    drop(link);
    // The writer writes what is queued, then ends; a client that does not
    // read it (or stopped reading, which is why we are here) does not keep
    // the session, its socket and its queued bytes alive.
    closing_tx.send_replace(true);
    let mut writer_task = writer_task;
    if reason == OVERFLOW
        || tokio::time::timeout(WRITER_DRAIN, &mut writer_task)
            .await
            .is_err()
    {
        writer_task.abort();
    }
}

/// Why a session ends when its client stopped reading.
const OVERFLOW: &str = "client stopped reading (queue full)";

/// How long a closing session's writer may take to hand its last lines over.
const WRITER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes queued lines to the client, batching what is already queued into
/// one flush. Once `closing` is raised, writes what is left and ends.
async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<String>,
    mut closing: watch::Receiver<bool>,
) {
    let mut w = BufWriter::with_capacity(SESSION_BUFFER, writer);
    loop {
        let first = tokio::select! {
            line = rx.recv() => line,
            _ = crate::flag::raised(&mut closing) => rx.try_recv().ok(),
        };
        let Some(line) = first else { break };
        let mut next = Some(line);
        while let Some(line) = next {
            if w.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

impl Session {
    fn visible(&self, server: &str) -> bool {
        self.link.visible(server)
    }

    fn send(&self, line: String) {
        self.link.outbox.send(line);
    }

    fn error(&self, id: Option<&RawValue>, code: i64, message: &str, data: Option<Value>) {
        self.send(jsonrpc::error_response(
            id.map(RawValue::get),
            code,
            message,
            data,
        ));
    }

    fn on_too_long(&self, prefix: &[u8]) {
        let max = self.hub.settings.get().max_message_size;
        tracing::warn!(
            session = self.link.id,
            max,
            "client sent a message larger than the limit; skipped"
        );
        // Recover the id when it appears early in the line, so the client can
        // match the error to its request.
        let id = jsonrpc::recover_id(prefix);
        self.send(jsonrpc::error_response(
            id.as_deref(),
            code::MESSAGE_TOO_LARGE,
            &format!("message larger than the limit of {max} bytes; it was skipped"),
            None,
        ));
    }

    fn on_line(&mut self, line: &[u8]) {
        let env = match Envelope::parse(line) {
            Ok(e) => e,
            Err(ParseError::NotJson(detail)) => {
                tracing::debug!(session = self.link.id, "parse error: {detail}");
                return self.error(
                    None,
                    code::PARSE_ERROR,
                    &format!("Parse error: {detail}"),
                    None,
                );
            }
            Err(ParseError::Batch) => {
                return self.error(
                    None,
                    code::INVALID_REQUEST,
                    "JSON-RPC batches are not supported (MCP removed them in 2025-06-18)",
                    None,
                )
            }
            Err(ParseError::NotObject) => {
                return self.error(
                    None,
                    code::INVALID_REQUEST,
                    "Invalid request: not a JSON-RPC object",
                    None,
                )
            }
        };
        match env.kind() {
            Kind::Request => self.on_request(&env),
            Kind::Notification => self.on_notification(&env),
            Kind::Response => self.on_response(&env),
            Kind::Invalid => self.error(
                env.id,
                code::INVALID_REQUEST,
                "Invalid request: no method",
                None,
            ),
        }
    }

    /// The client answered a request a child sent it: back to that child.
    fn on_response(&self, env: &Envelope<'_>) {
        let outgoing = env
            .id
            .and_then(|id| id.get().parse::<u64>().ok())
            .and_then(|id| self.link.take_outgoing(id));
        let Some(outgoing) = outgoing else {
            tracing::debug!(
                session = self.link.id,
                "dropping a response from the client: no request of ours is pending with that id"
            );
            return;
        };
        if let Some(reply) = outgoing.reply {
            // The daemon asked on a modern child's behalf.
            let answer = match (env.result, env.error) {
                (Some(r), _) => crate::wire::ClientAnswer::Result(r.to_owned()),
                (None, Some(e)) => crate::wire::ClientAnswer::Error(e.to_owned()),
                (None, None) => return,
            };
            let _ = reply.send(answer);
            return;
        }
        match outgoing.conn.upgrade() {
            Some(conn) => conn.answer_child(
                &outgoing.child_id,
                env.result.map(RawValue::get),
                env.error.map(RawValue::get),
            ),
            None => tracing::debug!(
                session = self.link.id,
                "dropping a client's answer: the server that asked has restarted since"
            ),
        }
    }

    fn on_notification(&mut self, env: &Envelope<'_>) {
        match env.method.as_deref().unwrap_or_default() {
            "notifications/initialized"
                if !self.link.is_initialized() && !self.link.era.is_modern() =>
            {
                self.link.set_initialized();
                self.start_eager_instances();
                let catalog = self.hub.supervisor.catalog();
                for (i, kinds) in ANNOUNCED.iter().enumerate() {
                    self.announced[i] = Some(catalog.view_fingerprint(kinds, |s| self.visible(s)));
                }
            }
            "notifications/roots/list_changed" => self.roots_changed(),
            "notifications/cancelled" => {
                let params = env.params.and_then(RawObject::parse);
                let Some(request) = params.as_ref().and_then(|p| p.get("requestId")) else {
                    return;
                };
                if self.link.era.is_modern() && self.end_listen(request.get()) {
                    return;
                }
                let reason = params
                    .as_ref()
                    .and_then(|p| p.get_str("reason"))
                    .unwrap_or_else(|| "cancelled by the client".into());
                if let Some((conn, upstream_id)) = self.link.cancel(request.get()) {
                    if let Some(conn) = conn.upgrade() {
                        tracing::debug!(
                            session = self.link.id,
                            server = conn.server(),
                            upstream_id,
                            "client cancelled a request"
                        );
                        conn.cancel(upstream_id, &reason);
                    }
                } else if self.link.era.is_modern() {
                    // A call answered input_required that will not be retried.
                    self.end_round(request.get());
                }
            }
            // Roots come from the config, never from a client; progress for
            // a child's request is not routed back (see docs/PROTOCOL.md).
            other => tracing::debug!(
                session = self.link.id,
                method = other,
                "client notification not routed"
            ),
        }
    }

    fn on_request(&mut self, env: &Envelope<'_>) {
        let Some(id) = env.id else { return };
        let method = env.method.as_deref().unwrap_or_default();
        if !self.era_gate(id, method, env.params) {
            return;
        }
        match method {
            "initialize" => self.initialize(id, env.params),
            "server/discover" => self.discover(id),
            "subscriptions/listen" => self.listen(id, env.params),
            "ping" => self.send(jsonrpc::response(id.get(), "{}")),
            "tools/list" => {
                if !self.hold_first_list(id, env.params) {
                    self.list(ListKind::Tools, id, env.params);
                }
            }
            "prompts/list" => self.list(ListKind::Prompts, id, env.params),
            "resources/list" => self.list(ListKind::Resources, id, env.params),
            "resources/templates/list" => self.list(ListKind::Templates, id, env.params),
            "logging/setLevel" => self.set_level(id, env.params),
            "tools/call" => self.call_named(ListKind::Tools, method, id, env.params),
            "prompts/get" => self.call_named(ListKind::Prompts, method, id, env.params),
            "completion/complete" => self.complete(id, env.params),
            "resources/read" => self.read_resource(id, env.params),
            "resources/subscribe" | "resources/unsubscribe" => {
                self.subscription(method, id, env.params)
            }
            "tasks/get" | "tasks/result" | "tasks/cancel" => {
                self.task_request(method, id, env.params)
            }
            "tasks/list" => self.tasks_list(id),
            _ => self.error(
                Some(id),
                code::METHOD_NOT_FOUND,
                &format!("Method not found: {method}"),
                None,
            ),
        }
    }

    fn set_level(&self, id: &RawValue, params: Option<&RawValue>) {
        let level = params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("level"));
        let Some(level) = level.as_deref().and_then(Level::parse) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: level must be one of debug, info, notice, warning, error, critical, alert, emergency",
                None,
            );
        };
        self.link.set_log_level(level);
        for up in self.hub.supervisor.upstreams() {
            if self.visible(&up.name) {
                up.sync_log_level_all();
            }
        }
        self.send(jsonrpc::response(id.get(), "{}"));
    }
}

/// When dropped, ends a session's business with the children: in-flight
/// requests are cancelled upstream, children's requests to it fail, its
/// subscriptions are dropped and log levels recomputed.
struct Closing {
    hub: Arc<Hub>,
    link: Arc<SessionLink>,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.hub.registry.remove(self.link.id);
        for (conn, upstream_id) in self.link.drain_in_flight() {
            if let Some(conn) = conn.upgrade() {
                conn.cancel(upstream_id, "the client disconnected");
            }
        }
        for outgoing in self.link.drain_outgoing() {
            if let Some(conn) = outgoing.conn.upgrade() {
                conn.client_gone(&outgoing.child_id);
            }
        }
        let (supervisor, link) = (self.hub.supervisor.clone(), self.link.clone());
        // Rounds held for this session by any instance it used end now.
        for up in supervisor.upstreams() {
            if link.visible(&up.name) {
                for inst in up.with_instances() {
                    let rounds = inst.context().bridge.drain_session(link.id);
                    crate::wire::abandon_rounds(rounds, "the client disconnected");
                }
            }
        }
        let had_level = self.link.log_level().is_some();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                supervisor.session_closed(&link, had_level).await;
            });
        }
    }
}
