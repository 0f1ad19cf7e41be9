//! A 2026-07-28 child's connection. The child is spoken to statelessly:
//! every request the daemon sends it (forwarded or its own) carries the
//! modern `_meta` envelope with the capabilities the daemon declares for
//! that child, never a client's. Its results are adapted to each client's
//! era: decorated for a modern client, stripped of modern members for a
//! legacy one; its -32021 is translated (the client cannot fix what the
//! daemon declares).
//!
//! An `input_required` result reaches a modern client as it is (its
//! embedded requests checked against the call's own capabilities: -32021
//! when one is missing); the client's retry is forwarded like any call. For
//! a legacy client the daemon runs the rounds itself: each embedded request
//! becomes a real server→client request to the client that made the call
//! (`roots/list` is answered from the config), and once every answer is in,
//! the call is retried with `inputResponses` and the echoed `requestState`
//! under a new id; the client sees only the final result.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::connection::{ClientCall, ClientRequest, Connection, Pending};
use super::link::{ClientAnswer, Outgoing};
use crate::era::{child, decorate, meta, mrtr};
use crate::jsonrpc::{self, code, Envelope};
use crate::loglevel::Level;

/// Most `input_required` rounds the daemon runs for one legacy client's call.
const MAX_ROUNDS: u32 = 8;

/// What a legacy client's call to a modern child is retried with.
pub(super) struct RetryBase {
    method: String,
    /// The call's params as the client sent them (before the progress token
    /// was replaced).
    params: String,
    rounds: u32,
}

impl Connection {
    /// Marks the child as speaking 2026-07-28.
    pub fn set_modern(&self) {
        self.modern.store(true, Ordering::Release);
    }

    /// True when the child speaks 2026-07-28.
    pub fn is_modern(&self) -> bool {
        self.modern.load(Ordering::Acquire)
    }

    /// Params as the child gets them: with the envelope, for a modern child.
    pub(super) fn for_child(&self, params: Option<String>) -> Option<String> {
        self.for_child_at(params, None)
    }

    /// [`Connection::for_child`] asking for log messages at `level` (a
    /// modern client's own `logLevel` in the params is kept otherwise).
    pub(super) fn for_child_at(
        &self,
        params: Option<String>,
        level: Option<Level>,
    ) -> Option<String> {
        if !self.is_modern() {
            return params;
        }
        let caps = child::declared_capabilities(self.ctx.roots().is_some());
        Some(meta::with_envelope(params.as_deref(), &caps, level))
    }

    /// What to keep of a legacy client's call to a modern child, to retry
    /// it after `input_required`.
    pub(super) fn retry_base(
        &self,
        method: &str,
        params: Option<&str>,
        call: &ClientCall<'_>,
    ) -> Option<Box<RetryBase>> {
        (self.is_modern() && !call.link.era.is_modern() && mrtr::may_require_input(method)).then(
            || {
                Box::new(RetryBase {
                    method: method.to_string(),
                    params: params.unwrap_or("{}").to_string(),
                    rounds: 0,
                })
            },
        )
    }

    /// Opens the child's standing `subscriptions/listen` for list changes
    /// (a modern server sends them only to a listen). Its id is never
    /// answered until the child ends, and nobody waits for it.
    pub fn listen_upstream(&self) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = json!({ "notifications": {
            "toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true,
        }})
        .to_string();
        let params = self.for_child(Some(params));
        let _ = self.send_line(jsonrpc::request(
            id,
            "subscriptions/listen",
            params.as_deref(),
        ));
    }

    /// Opens (or, with `open` false, cancels) the listen through which a
    /// modern child reports updates of `uri`. Nobody waits for it.
    pub(super) fn listen_resource(&self, uri: &str, open: bool) {
        if !open {
            let Some(id) = self.routes().uri_listens.remove(uri) else {
                return;
            };
            let params = json!({ "requestId": id, "reason": "no subscriber left" }).to_string();
            let _ = self.send_line(jsonrpc::notification(
                "notifications/cancelled",
                Some(&params),
            ));
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self
            .routes()
            .uri_listens
            .insert(uri.to_string(), id)
            .is_some()
        {
            tracing::debug!(server = %self.server(), uri, "replacing a resource listen");
        }
        let params = json!({ "notifications": { "resourceSubscriptions": [uri] } }).to_string();
        let params = self.for_child(Some(params));
        let _ = self.send_line(jsonrpc::request(
            id,
            "subscriptions/listen",
            params.as_deref(),
        ));
    }

    /// A modern child's answer to a client's call.
    pub(super) fn modern_response(self: &Arc<Self>, mut req: ClientRequest, env: &Envelope<'_>) {
        let client_id = req.client_id.get().to_string();
        let modern_client = req.link.era.is_modern();
        let result = match (env.result, env.error) {
            (Some(r), _) => r.get(),
            (None, Some(e)) => {
                let error = child::client_error(self.server(), e.get());
                return req.answer(jsonrpc::error_response_raw(&client_id, &error));
            }
            (None, None) => return,
        };
        let input = result
            .contains("input_required")
            .then(|| mrtr::input_required(result))
            .flatten();
        let Some(input) = input else {
            let line = if modern_client {
                req.link.era.result_line(&client_id, result)
            } else {
                jsonrpc::response(&client_id, &decorate::legacy(result))
            };
            return req.answer(line);
        };
        let input = match input {
            Ok(i) => i,
            Err(why) => {
                let line = jsonrpc::error_response(
                    Some(&client_id),
                    code::INTERNAL_ERROR,
                    &format!(
                        "server '{}' sent a malformed input_required result: {why}",
                        self.server()
                    ),
                    None,
                );
                return req.answer(line);
            }
        };
        if modern_client {
            // The client fulfils it; what it may be asked is what its call
            // declared.
            let asks = req
                .link
                .era
                .mrtr_call(&client_id)
                .map(|c| c.asks)
                .unwrap_or_default();
            for r in &input.requests {
                let params: Option<Value> = r
                    .params
                    .as_deref()
                    .and_then(|p| serde_json::from_str(p).ok());
                if let Err(needed) = asks.allows(&r.method, params.as_ref()) {
                    let line = jsonrpc::error_response(
                        Some(&client_id),
                        crate::era::code::MISSING_CLIENT_CAPABILITY,
                        &format!("server '{}' needs {} ({}), which this request's client capabilities do not declare", self.server(), r.method, r.key),
                        Some(json!({ "requiredCapabilities": needed })),
                    );
                    return req.answer(line);
                }
            }
            let line = req.link.era.result_line(&client_id, result);
            return req.answer(line);
        }
        let Some(base) = req.retry.take().filter(|b| b.rounds < MAX_ROUNDS) else {
            let line = jsonrpc::error_response(
                Some(&client_id),
                code::INTERNAL_ERROR,
                &format!(
                    "server '{}' kept asking for input (more than {MAX_ROUNDS} rounds)",
                    self.server()
                ),
                None,
            );
            return req.answer(line);
        };
        let conn = self.clone();
        tokio::spawn(async move { conn.run_round(req, base, input).await });
    }

    /// Asks the legacy client that made the call for every embedded input,
    /// then retries the call.
    async fn run_round(
        self: Arc<Self>,
        req: ClientRequest,
        base: Box<RetryBase>,
        input: mrtr::InputRequired,
    ) {
        let client_id = req.client_id.get().to_string();
        let fail = |req: ClientRequest, code: i64, message: String| {
            let line = jsonrpc::error_response(Some(&client_id), code, &message, None);
            req.answer(line);
        };
        let caps = req.link.caps();
        let mut responses: Vec<(String, Box<RawValue>)> = Vec::new();
        for r in input.requests {
            let params: Option<Value> = r
                .params
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok());
            let url = params
                .as_ref()
                .and_then(|p| p.get("mode"))
                .and_then(Value::as_str)
                == Some("url");
            let declared = match r.method.as_str() {
                "roots/list" => {
                    // Roots come from the config, never from a client.
                    match self
                        .ctx
                        .roots()
                        .and_then(|roots| RawValue::from_string(roots.to_string()).ok())
                    {
                        Some(roots) => {
                            responses.push((r.key, roots));
                            continue;
                        }
                        None => {
                            return fail(
                                req,
                                code::INTERNAL_ERROR,
                                format!(
                                    "server '{}' asks for roots; configure roots = [...] for it",
                                    self.server()
                                ),
                            );
                        }
                    }
                }
                "sampling/createMessage" => caps.sampling,
                _ if url => caps.elicitation_url,
                _ => caps.elicitation_form,
            };
            if !declared {
                return fail(
                    req,
                    code::INTERNAL_ERROR,
                    format!(
                        "server '{}' needs {}, which this client did not declare in initialize",
                        self.server(),
                        r.method
                    ),
                );
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let our_id = req.link.add_outgoing(Outgoing {
                conn: Weak::new(),
                child_id: RawValue::from_string("null".into())
                    .unwrap_or_else(|_| req.client_id.clone()),
                reply: Some(tx),
            });
            tracing::info!(server = %self.server(), session = req.link.id, method = %r.method,
                "asking a legacy client for a 2026-07-28 server's input");
            req.link
                .outbox
                .send(jsonrpc::request(our_id, &r.method, r.params.as_deref()));
            match tokio::time::timeout(self.request_timeout(), rx).await {
                Ok(Ok(ClientAnswer::Result(answer))) => responses.push((r.key, answer)),
                Ok(Ok(ClientAnswer::Error(e))) => {
                    let line = jsonrpc::error_response_raw(&client_id, e.get());
                    return req.answer(line);
                }
                // The session ended; its in-flight calls were cancelled.
                Ok(Err(_)) => return,
                Err(_) => {
                    req.link.take_outgoing(our_id);
                    let params = json!({ "requestId": our_id, "reason": "timed out" }).to_string();
                    req.link.outbox.send(jsonrpc::notification(
                        "notifications/cancelled",
                        Some(&params),
                    ));
                    return fail(
                        req,
                        code::REQUEST_TIMEOUT,
                        format!(
                            "the client did not answer {} for server '{}' in time",
                            r.method,
                            self.server()
                        ),
                    );
                }
            }
        }
        let params = mrtr::retry_params(&base.params, &responses, input.request_state.as_deref());
        let call = ClientCall {
            link: &req.link,
            client_id: &req.client_id,
            ticket: req.ticket,
            rewrite: req.rewrite.clone(),
        };
        match self.forward(&base.method, Some(&params), call) {
            Ok(upstream_id) => {
                if let Some(Pending::Client(r)) = self.lock().get_mut(&upstream_id) {
                    if let Some(b) = r.retry.as_mut() {
                        b.rounds = base.rounds + 1;
                    }
                }
                if !req
                    .link
                    .forwarded(&client_id, req.ticket, &self, upstream_id)
                {
                    self.cancel(upstream_id, "cancelled by the client");
                }
            }
            Err(e) => fail(
                req,
                code::SERVER_CRASHED,
                format!("server '{}' could not take the retry: {e}", self.server()),
            ),
        }
    }
}
