//! One MCP session per client connection, in which the daemon is the server.
//!
//! The session answers `initialize`, `ping` and `tools/list` itself (lists come
//! from the catalog snapshot), routes `tools/call` to the child that owns the
//! tool under the tool's original name, and tells the client
//! `notifications/tools/list_changed` whenever the set of tools it can see
//! changed. Bad input never ends the session: a line that is not JSON gets
//! -32700 and the next line is read as usual.
//!
//! Everything the client is sent goes through the session's [`Outbox`],
//! drained by a writer task that batches writes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, CursorError};
use crate::daemon::Daemon;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, code, Envelope, Kind, ParseError, RawObject};
use crate::outbox::Outbox;
use crate::upstream::Connection;

/// Protocol versions the daemon speaks with clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Options a shim may set in its hello.
#[derive(Debug, Default, Clone)]
pub struct SessionOptions {
    /// Only these servers are visible (all when `None`).
    pub servers: Option<HashSet<String>>,
}

struct Session {
    id: u64,
    daemon: Arc<Daemon>,
    outbox: Arc<Outbox>,
    view: Option<HashSet<String>>,
    initialized: bool,
    /// View fingerprint last announced (or listed); list_changed is sent when
    /// the current one differs.
    announced: Option<u64>,
}

/// Runs a session until the client disconnects, is dropped, or the daemon
/// shuts down. `greeting` is written first (the hello reply), `first` is an
/// MCP line the listener already read.
pub async fn run<R, W>(
    daemon: Arc<Daemon>,
    mut reader: LineReader<R>,
    writer: W,
    greeting: Option<String>,
    first: Option<Vec<u8>>,
    options: SessionOptions,
) where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = daemon.next_session_id();
    let (outbox, rx) = Outbox::new(id);
    let outbox = Arc::new(outbox);
    let writer_task = tokio::spawn(write_loop(writer, rx));
    if let Some(g) = greeting {
        outbox.send(g);
    }
    let _counted = SessionCount::enter(&daemon);
    tracing::info!(session = id, servers = ?options.servers, "client session opened");
    let mut session = Session {
        id,
        daemon: daemon.clone(),
        outbox: outbox.clone(),
        view: options.servers,
        initialized: false,
        announced: None,
    };
    let mut catalog_rx = daemon.supervisor.subscribe();
    let mut shutdown = daemon.shutdown_signal();
    if let Some(line) = first {
        session.on_line(&line).await;
    }
    let reason = loop {
        tokio::select! {
            frame = reader.next_frame() => match frame {
                Ok(Frame::Line(line)) => session.on_line(&line).await,
                Ok(Frame::TooLong { prefix }) => session.on_too_long(&prefix),
                Ok(Frame::Eof) => break "client disconnected",
                Err(e) => {
                    tracing::debug!(session = id, "read error: {e}");
                    break "read error";
                }
            },
            changed = catalog_rx.changed() => {
                if changed.is_err() { break "daemon stopping"; }
                let catalog = catalog_rx.borrow_and_update().clone();
                session.maybe_announce(&catalog);
            }
            _ = outbox.overflowed() => break "client stopped reading (queue full)",
            _ = crate::flag::raised(&mut shutdown) => break "daemon stopping",
        }
    };
    tracing::info!(session = id, reason, "client session closed");
    drop(session);
    drop(outbox);
    // The writer ends once every queued line is written (or the socket broke).
    let _ = writer_task.await;
}

/// Counts a session in `Daemon::sessions` for as long as it lives, even if it
/// panics.
struct SessionCount(Arc<Daemon>);

impl SessionCount {
    fn enter(daemon: &Arc<Daemon>) -> Self {
        daemon.sessions.fetch_add(1, Ordering::SeqCst);
        Self(daemon.clone())
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(writer: W, mut rx: mpsc::Receiver<String>) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(line) = rx.recv().await {
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
        self.view.as_ref().is_none_or(|v| v.contains(server))
    }

    fn send(&self, line: String) {
        self.outbox.send(line);
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
        let max = self.daemon.settings().max_message_size;
        tracing::warn!(
            session = self.id,
            max,
            "client sent a message larger than the limit; skipped"
        );
        // Recover the id when it appears early in the line, so the client can
        // match the error to its request.
        let id = recover_id(prefix);
        self.send(jsonrpc::error_response(
            id.as_deref(),
            code::MESSAGE_TOO_LARGE,
            &format!("message larger than the limit of {max} bytes; it was skipped"),
            None,
        ));
    }

    async fn on_line(&mut self, line: &[u8]) {
        let env = match Envelope::parse(line) {
            Ok(e) => e,
            Err(ParseError::NotJson(detail)) => {
                tracing::debug!(session = self.id, "parse error: {detail}");
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
            Kind::Request => self.on_request(&env).await,
            Kind::Notification => self.on_notification(&env),
            Kind::Response => {
                tracing::debug!(
                    session = self.id,
                    "dropping a response from the client: no request of ours is pending"
                );
            }
            Kind::Invalid => self.error(
                env.id,
                code::INVALID_REQUEST,
                "Invalid request: no method",
                None,
            ),
        }
    }

    fn on_notification(&mut self, env: &Envelope<'_>) {
        if env.method.as_deref() == Some("notifications/initialized") && !self.initialized {
            self.initialized = true;
            let catalog = self.daemon.supervisor.catalog();
            self.announced = Some(catalog.view_fingerprint(|s| self.visible(s)));
        }
    }

    async fn on_request(&mut self, env: &Envelope<'_>) {
        let Some(id) = env.id else { return };
        let method = env.method.as_deref().unwrap_or_default();
        match method {
            "initialize" => self.initialize(id, env.params),
            "ping" => self.send(jsonrpc::response(id.get(), "{}")),
            "tools/list" => self.tools_list(id, env.params),
            "tools/call" => self.tools_call(id, env.params).await,
            _ => self.error(
                Some(id),
                code::METHOD_NOT_FOUND,
                &format!("Method not found: {method}"),
                None,
            ),
        }
    }

    fn initialize(&mut self, id: &RawValue, params: Option<&RawValue>) {
        let requested = params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("protocolVersion"));
        let version = match requested.as_deref() {
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
            _ => SUPPORTED_VERSIONS[0],
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": true } },
            "serverInfo": { "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") },
        });
        if let Some(instructions) = self.instructions() {
            result["instructions"] = Value::String(instructions);
        }
        tracing::debug!(session = self.id, requested = ?requested, version, "initialize");
        self.send(jsonrpc::response(id.get(), &result.to_string()));
    }

    /// Each visible child's instructions, labelled with its server name.
    fn instructions(&self) -> Option<String> {
        let parts: Vec<String> = self
            .daemon
            .supervisor
            .upstreams()
            .iter()
            .filter(|u| self.visible(&u.name))
            .filter_map(|u| {
                let text = u.init_info()?.instructions?;
                Some(format!(
                    "## Server \"{}\" (tools prefixed {}__)\n{}",
                    u.name,
                    u.name,
                    text.trim()
                ))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    fn tools_list(&mut self, id: &RawValue, params: Option<&RawValue>) {
        let cursor = params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("cursor"));
        let catalog = self.daemon.supervisor.catalog();
        let page_size = self.daemon.settings().page_size;
        match catalog.tools_page(cursor.as_deref(), page_size, |s| self.visible(s)) {
            Ok(page) => {
                let mut result = String::with_capacity(page.items.len() + 64);
                result.push_str("{\"tools\":");
                result.push_str(&page.items);
                if let Some(next) = page.next_cursor {
                    result.push_str(",\"nextCursor\":");
                    jsonrpc::push_json_str(&mut result, &next);
                }
                result.push('}');
                if cursor.is_none() {
                    self.announced = Some(catalog.view_fingerprint(|s| self.visible(s)));
                }
                self.send(jsonrpc::response(id.get(), &result));
            }
            Err(CursorError::Stale) => self.error(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid cursor: the tool list changed since it was issued; list again from the start",
                None,
            ),
            Err(CursorError::Invalid) => self.error(Some(id), code::INVALID_PARAMS, "Invalid cursor", None),
        }
    }

    async fn tools_call(&mut self, id: &RawValue, params: Option<&RawValue>) {
        let Some(obj) = params.and_then(RawObject::parse) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                "tools/call needs params with a name",
                None,
            );
        };
        let Some(name) = obj.get_str("name") else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                "tools/call needs params.name (a string)",
                None,
            );
        };
        let catalog = self.daemon.supervisor.catalog();
        let Some(tool) = catalog.tool(&name).filter(|t| self.visible(&t.server)) else {
            return self.unknown_tool(id, &name, &catalog);
        };
        let Some(upstream) = self.daemon.supervisor.upstream(&tool.server) else {
            return self.unknown_tool(id, &name, &catalog);
        };
        let mut original = String::new();
        jsonrpc::push_json_str(&mut original, &tool.original);
        let upstream_params = obj.to_string_with(&[("name", &original)]);
        match upstream.connection() {
            Ok(conn) => {
                forward(
                    &conn,
                    "tools/call",
                    upstream_params,
                    id.to_owned(),
                    &self.outbox,
                )
                .await
            }
            Err(_) => {
                // Starting or restarting: wait for it (bounded by its request
                // timeout) without holding up this session's other requests.
                let outbox = self.outbox.clone();
                let id = id.to_owned();
                tokio::spawn(async move {
                    let limit = upstream.timeouts().request_timeout;
                    match upstream.wait_ready(limit).await {
                        Ok(conn) => {
                            forward(&conn, "tools/call", upstream_params, id, &outbox).await
                        }
                        Err(unavailable) => {
                            let data =
                                json!({ "server": unavailable.server, "state": unavailable.state });
                            outbox.send(jsonrpc::error_response(
                                Some(id.get()),
                                code::SERVER_UNAVAILABLE,
                                &unavailable.message(),
                                Some(data),
                            ));
                        }
                    }
                });
            }
        }
    }

    fn unknown_tool(&self, id: &RawValue, name: &str, catalog: &Catalog) {
        let hint = if name.contains(crate::names::SEPARATOR) {
            String::new()
        } else {
            " (tool names are <server>__<tool>)".to_string()
        };
        tracing::debug!(
            session = self.id,
            tool = name,
            tools = catalog.len(),
            "unknown tool"
        );
        self.error(
            Some(id),
            code::INVALID_PARAMS,
            &format!("Unknown tool: {name}{hint}"),
            None,
        );
    }

    fn maybe_announce(&mut self, catalog: &Catalog) {
        if !self.initialized {
            return;
        }
        let fp = catalog.view_fingerprint(|s| self.visible(s));
        if self.announced != Some(fp) {
            self.announced = Some(fp);
            tracing::debug!(session = self.id, "announcing tools/list_changed");
            self.send(jsonrpc::notification(
                "notifications/tools/list_changed",
                None,
            ));
        }
    }
}

/// Forwards a request to a child; a child that is gone by now gets the
/// client an error naming the server.
async fn forward(
    conn: &Connection,
    method: &str,
    params: String,
    id: Box<RawValue>,
    outbox: &Arc<Outbox>,
) {
    let client_id = id.clone();
    if let Err(e) = conn
        .forward(method, Some(&params), id, outbox.clone())
        .await
    {
        let data = json!({ "server": conn.server() });
        outbox.send(jsonrpc::error_response(
            Some(client_id.get()),
            code::SERVER_CRASHED,
            &format!("server '{}' could not take the call: {e}", conn.server()),
            Some(data),
        ));
    }
}

/// Finds `"id":<string or number>` in the start of an oversized line.
fn recover_id(prefix: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(prefix);
    let at = text.find("\"id\"")?;
    let rest = text[at + 4..].trim_start().strip_prefix(':')?.trim_start();
    let mut de = serde_json::Deserializer::from_str(rest);
    let v: Value = serde::Deserialize::deserialize(&mut de).ok()?;
    (v.is_string() || v.is_number()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::recover_id;

    #[test]
    fn recovers_ids_from_truncated_lines() {
        assert_eq!(
            recover_id(br#"{"jsonrpc":"2.0","id":17,"method":"x","params":{"a":"xxxx"#).as_deref(),
            Some("17")
        );
        assert_eq!(
            recover_id(br#"{"id": "ab\"c", "params"#).as_deref(),
            Some(r#""ab\"c""#)
        );
        assert_eq!(recover_id(br#"{"params":{"x":"#), None);
    }
}
