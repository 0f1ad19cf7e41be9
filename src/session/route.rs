//! Requests the session routes to a child by name: `tools/call` and
//! `prompts/get` by exposed name, `completion/complete` by prompt name or
//! resource URI; and the machinery every routed request goes through
//! (registering it under the client's id, waiting for a server that is
//! starting, forwarding). Requests routed by URI are in `resources`, by
//! task id in `tasks`.
//!
//! Routing rewrites only what must change (the name back to the child's, a
//! task id back to the child's); every other byte of the params passes
//! through. Each routed request is registered in the session's link under the
//! client's id first, so a reused id is refused, a cancellation reaches the
//! child, and a disconnect cancels it upstream. A request for a server that
//! is starting or restarting waits for it in its own task (bounded by
//! `request_timeout`), never holding up the session's other requests.

use std::sync::Arc;

use serde_json::json;
use serde_json::value::RawValue;

use super::{fit, Session};
use crate::catalog::ListKind;
use crate::jsonrpc::{self, code, RawObject};
use crate::reload::Trigger;
use crate::upstream::{InstanceRefusal, State, Unavailable, Upstream};
use crate::wire::{ClientCall, Connection, Rewrite, SessionLink};

/// Where a request goes, with the params the child gets.
pub(super) struct Target {
    pub(super) server: Arc<str>,
    pub(super) params: String,
    pub(super) rewrite: Rewrite,
}

impl Session {
    /// `tools/call` or `prompts/get`: the exposed name maps back to a server
    /// and the name it knows.
    pub(super) fn call_named(
        &self,
        kind: ListKind,
        method: &str,
        id: &RawValue,
        params: Option<&RawValue>,
    ) {
        let Some(obj) = params.and_then(RawObject::parse) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("{method} needs params with a name"),
                None,
            );
        };
        let Some(name) = obj.get_str("name") else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("{method} needs params.name (a string)"),
                None,
            );
        };
        if kind == ListKind::Tools && self.meta_call(id, &name, &obj) {
            return;
        }
        let catalog = self.hub.supervisor.catalog();
        let item = match self.lookup(&catalog, kind, &name) {
            fit::Lookup::Key(key) => catalog.get(kind, &key),
            fit::Lookup::Held { server, tool } => return self.refuse_held(id, &server, &tool),
            fit::Lookup::Missing => None,
        };
        let Some(item) = item.filter(|t| self.visible(&t.server)) else {
            return self.not_listed(kind, method, id, &name, &obj);
        };
        if &*item.server == crate::builtin::SERVER {
            return self.builtin_tool(id, &item.original);
        }
        let target = named_target(kind, item, &obj);
        self.dispatch(method, id, target);
    }

    /// A name the catalog does not have. When its prefix names a server that
    /// has not listed anything yet (starting for the first time, nothing
    /// cached), the call waits for that server and looks again; otherwise it
    /// is an unknown name.
    fn not_listed(
        &self,
        kind: ListKind,
        method: &str,
        id: &RawValue,
        name: &str,
        obj: &RawObject<'_>,
    ) {
        let server = match &self.fit.naming.server {
            Some(single) => Some(single.as_str()),
            None => name.split_once(crate::names::SEPARATOR).map(|(s, _)| s),
        };
        let waiting_for = server
            .filter(|server| self.visible(server))
            .and_then(|server| self.hub.supervisor.upstream(server))
            .filter(|up| up.state() != State::Ready && up.rendered().len(kind) == 0);
        let Some(up) = waiting_for else {
            return self.unknown(kind, id, name);
        };
        let Some(ticket) = self.begin(id) else { return };
        let (hub, link) = (self.hub.clone(), self.link.clone());
        let (method, id, name) = (method.to_string(), id.to_owned(), name.to_string());
        let params = obj.to_string_with(&[]);
        let naming = self.fit.naming.clone();
        tokio::spawn(async move {
            let Some(mut conn) = ready_for(&link, &up, &id, ticket).await else {
                return;
            };
            // The server learnt its catalog; the call goes to the instance
            // this session uses (another one for a per-client or
            // per-workspace server).
            if up.settings().is_pooled() {
                let inst = match hub.supervisor.instance_for(&up.name, &link) {
                    Ok(Some(inst)) => inst,
                    Ok(None) | Err(_) => {
                        link.finish(id.get(), ticket);
                        link.outbox
                            .send(unknown_error(kind, &id, &name, naming.is_plain()));
                        return;
                    }
                };
                let Some(c) = ready_for(&link, &inst, &id, ticket).await else {
                    return;
                };
                conn = c;
            }
            let catalog = hub.supervisor.catalog();
            let obj = RawObject::parse_str(&params);
            let key = fit::key_in(&catalog, &naming, &link, kind, &name);
            let item = key
                .and_then(|k| catalog.get(kind, &k))
                .filter(|i| i.server == up.name)
                .zip(obj);
            match item {
                Some((item, obj)) => {
                    let t = named_target(kind, item, &obj);
                    send(&link, &conn, &method, &id, ticket, t.params, t.rewrite);
                }
                None => {
                    link.finish(id.get(), ticket);
                    link.outbox
                        .send(unknown_error(kind, &id, &name, naming.is_plain()));
                }
            }
        });
    }

    /// The daemon's own tools (see [`crate::builtin`]).
    pub(super) fn builtin_tool(&self, id: &RawValue, name: &str) {
        if !crate::builtin::is_tool(name) {
            return self.unknown(ListKind::Tools, id, name);
        }
        let Some(ticket) = self.begin(id) else { return };
        let (reloader, link, id) = (self.hub.reloader.clone(), self.link.clone(), id.to_owned());
        tokio::spawn(async move {
            let result = crate::builtin::call_reload(reloader.reload(Trigger::Tool)).await;
            link.finish(id.get(), ticket);
            link.outbox.send(link.era.result_line(id.get(), &result));
        });
    }

    fn unknown(&self, kind: ListKind, id: &RawValue, name: &str) {
        tracing::debug!(session = self.link.id, ?kind, name, "unknown name");
        self.send(unknown_error(kind, id, name, self.fit.naming.is_plain()));
    }

    /// `completion/complete`: `ref/prompt` by prompt name, `ref/resource` by
    /// the template's owner.
    pub(super) fn complete(&self, id: &RawValue, params: Option<&RawValue>) {
        let obj = params.and_then(RawObject::parse);
        let reference = obj.as_ref().and_then(|o| o.get("ref"));
        let Some((obj, r)) = obj.as_ref().zip(reference.and_then(RawObject::parse)) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                "completion/complete needs params.ref",
                None,
            );
        };
        let catalog = self.hub.supervisor.catalog();
        match r.get_str("type").as_deref() {
            Some("ref/prompt") => {
                let name = r.get_str("name").unwrap_or_default();
                let key = match self.lookup(&catalog, ListKind::Prompts, &name) {
                    fit::Lookup::Key(key) => key,
                    _ => name.clone(),
                };
                let Some(item) = catalog
                    .get(ListKind::Prompts, &key)
                    .filter(|p| self.visible(&p.server))
                else {
                    return self.unknown(ListKind::Prompts, id, &name);
                };
                let mut original = String::new();
                jsonrpc::push_json_str(&mut original, &item.original);
                let new_ref = r.to_string_with(&[("name", &original)]);
                self.dispatch(
                    "completion/complete",
                    id,
                    Target {
                        server: item.server.clone(),
                        params: obj.to_string_with(&[("ref", &new_ref)]),
                        rewrite: Rewrite::None,
                    },
                );
            }
            Some("ref/resource") => {
                let uri = r.get_str("uri").unwrap_or_default();
                let owner = catalog
                    .template_owner(&uri, |s| self.visible(s))
                    .or_else(|| self.only_server_with("completions"));
                let Some(server) = owner else {
                    return self.error(
                        Some(id),
                        code::INVALID_PARAMS,
                        &format!("No server owns the resource template {uri}"),
                        None,
                    );
                };
                self.dispatch(
                    "completion/complete",
                    id,
                    Target {
                        server,
                        params: params.map_or_else(|| "{}".into(), |p| p.get().to_string()),
                        rewrite: Rewrite::None,
                    },
                );
            }
            other => self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("Unknown completion reference type {other:?}"),
                None,
            ),
        }
    }

    /// Registers a request under the client's id; answers -32600 itself when
    /// that id is still in flight.
    pub(super) fn begin(&self, id: &RawValue) -> Option<u64> {
        let ticket = self.link.begin(id.get());
        if ticket.is_none() {
            self.error(
                Some(id),
                code::INVALID_REQUEST,
                &format!(
                    "Invalid request: id {} is already in use by a request in flight",
                    id.get()
                ),
                None,
            );
        }
        ticket
    }

    /// Sends a request to its server: at once when ready, else after waiting
    /// for it in a task of its own.
    pub(super) fn dispatch(&self, method: &str, id: &RawValue, target: Target) {
        let Some(up) = self.instance(&target.server, id) else {
            return;
        };
        // A retry of a call a legacy child asked input for; a modern
        // child's own rounds are forwarded like any call.
        if self.link.era.is_modern()
            && crate::era::mrtr::may_require_input(method)
            && up.era() != Some(crate::era::Era::Modern)
        {
            if let Some(retry) = crate::era::mrtr::retry_of(&target.params) {
                return self.bridge_retry(method, id, &up, &target, retry);
            }
        }
        let Some(ticket) = self.begin(id) else { return };
        if self.link.era.is_modern() && crate::era::mrtr::may_require_input(method) {
            self.link
                .era
                .note_call(id.get(), call_fingerprint(method, &target));
        }
        // Only a modern request can ask for log messages (its `_meta`), so a
        // legacy session skips the lookup.
        if self.link.era.is_modern() && self.link.era.bind_server(id.get(), &up.name) {
            // A modern request asked for log messages: the child may need a
            // more verbose level.
            up.sync_log_level();
        }
        match up.connection() {
            Ok(conn) => send(
                &self.link,
                &conn,
                method,
                id,
                ticket,
                target.params,
                target.rewrite,
            ),
            Err(_) => {
                let link = self.link.clone();
                let method = method.to_string();
                let id = id.to_owned();
                tokio::spawn(async move {
                    if let Some(conn) = ready_for(&link, &up, &id, ticket).await {
                        send(
                            &link,
                            &conn,
                            &method,
                            &id,
                            ticket,
                            target.params,
                            target.rewrite,
                        );
                    }
                });
            }
        }
    }
}

impl Session {
    /// At `initialized`: per-client and per-workspace servers with
    /// `start = "eager"` start this session's instance now.
    pub(super) fn start_eager_instances(&self) {
        for up in self.hub.supervisor.upstreams() {
            let s = up.settings();
            if s.is_pooled() && s.start == crate::config::Start::Eager && self.visible(&up.name) {
                if let Err(refusal) = up.instance_for(&self.link) {
                    tracing::info!(session = self.link.id, server = %up.name,
                        "no eager instance: {}", refusal.message());
                }
            }
        }
    }

    /// The client's roots changed: its per-client instances are told (they
    /// ask it for its roots).
    pub(super) fn roots_changed(&self) {
        for up in self.hub.supervisor.upstreams() {
            let key = crate::pool::InstanceKey::Session(self.link.id);
            let Some(conn) = up.member(&key).and_then(|m| m.connection().ok()) else {
                continue;
            };
            tokio::spawn(async move {
                let _ = conn.notify("notifications/roots/list_changed", None).await;
            });
        }
    }

    /// The instance of `server` this session's request `id` goes to (lazy
    /// and idle ones are started); `None` after answering the client why
    /// there is none.
    pub(super) fn instance(&self, server: &str, id: &RawValue) -> Option<Arc<Upstream>> {
        match self.hub.supervisor.instance_for(server, &self.link) {
            Ok(Some(up)) => Some(up),
            Ok(None) => {
                self.error(
                    Some(id),
                    code::SERVER_UNAVAILABLE,
                    &format!("server '{server}' is not running (removed from the config)"),
                    Some(json!({ "server": server })),
                );
                None
            }
            Err(refusal) => {
                tracing::info!(
                    session = self.link.id,
                    server,
                    "refused: {}",
                    refusal.message()
                );
                let data = match &refusal {
                    InstanceRefusal::Limit { max, .. } => {
                        json!({ "server": server, "max_instances": max })
                    }
                    InstanceRefusal::NoWorkspace { .. } => json!({ "server": server }),
                };
                self.error(
                    Some(id),
                    code::TOO_MANY_INSTANCES,
                    &refusal.message(),
                    Some(data),
                );
                None
            }
        }
    }
}

/// What ties an MRTR retry to its call: the method, the server and the
/// name (or URI) the child knows.
pub(super) fn call_fingerprint(method: &str, target: &Target) -> u64 {
    let obj = RawObject::parse_str(&target.params);
    let what = obj
        .as_ref()
        .and_then(|o| o.get_str("name").or_else(|| o.get_str("uri")))
        .unwrap_or_default();
    crate::era::state::call_fingerprint(method, &format!("{}\0{what}", target.server))
}

/// Where a `tools/call` or `prompts/get` for a catalog item goes: the
/// child's own name in `params.name`, and task ids mapped when the call asks
/// for a task.
pub(super) fn named_target(
    kind: ListKind,
    item: &crate::catalog::Item,
    obj: &RawObject<'_>,
) -> Target {
    let mut original = String::new();
    jsonrpc::push_json_str(&mut original, &item.original);
    let rewrite = if kind == ListKind::Tools && obj.get("task").is_some() {
        Rewrite::NewTask
    } else {
        Rewrite::None
    };
    Target {
        server: item.server.clone(),
        params: obj.to_string_with(&[("name", &original)]),
        rewrite,
    }
}

/// -32602 naming the unknown tool or prompt.
pub(super) fn unknown_error(kind: ListKind, id: &RawValue, name: &str, prefixed: bool) -> String {
    let what = if kind == ListKind::Tools {
        "tool"
    } else {
        "prompt"
    };
    let hint = if !prefixed || name.contains(crate::names::SEPARATOR) {
        String::new()
    } else {
        format!(" ({what} names are <server>__<{what}>)")
    };
    jsonrpc::error_response(
        Some(id.get()),
        code::INVALID_PARAMS,
        &format!("Unknown {what}: {name}{hint}"),
        None,
    )
}

/// Forwards a registered request on `conn`; a child that cannot take it
/// gets the client an error naming the server.
pub(super) fn send(
    link: &Arc<SessionLink>,
    conn: &Arc<Connection>,
    method: &str,
    id: &RawValue,
    ticket: u64,
    params: String,
    rewrite: Rewrite,
) {
    let params = crate::era::params_for_child(link.era.is_modern(), conn.is_modern(), params);
    let call = ClientCall {
        link,
        client_id: id,
        ticket,
        rewrite,
    };
    match conn.forward(method, Some(&params), call) {
        Ok(upstream_id) => {
            if !link.forwarded(id.get(), ticket, conn, upstream_id) {
                conn.cancel(upstream_id, "cancelled by the client");
            }
        }
        Err(e) => {
            link.finish(id.get(), ticket);
            let code = match e {
                crate::error::UpstreamError::Busy => code::SERVER_UNAVAILABLE,
                _ => code::SERVER_CRASHED,
            };
            link.outbox.send(jsonrpc::error_response(
                Some(id.get()),
                code,
                &format!("server '{}' could not take the request: {e}", conn.server()),
                Some(json!({ "server": conn.server() })),
            ));
        }
    }
}

/// Waits (up to its `request_timeout`) for `up` to be ready for the
/// registered request `id` (`ticket`). Returns the connection while the
/// request is still wanted; otherwise the request is finished here: quietly
/// when the client cancelled it (or the session closed) meanwhile, with the
/// "not ready" error when the server did not become ready.
pub(super) async fn ready_for(
    link: &SessionLink,
    up: &Upstream,
    id: &RawValue,
    ticket: u64,
) -> Option<Arc<Connection>> {
    let ready = wait_ready(up, id).await;
    if !link.still_wanted(id.get(), ticket) {
        link.finish(id.get(), ticket);
        return None;
    }
    match ready {
        Ok(conn) => Some(conn),
        Err(line) => {
            link.finish(id.get(), ticket);
            link.outbox.send(line);
            None
        }
    }
}

/// Waits (up to its `request_timeout`) for `up` to be ready: its
/// connection, or the error line answering request `id`.
pub(super) async fn wait_ready(up: &Upstream, id: &RawValue) -> Result<Arc<Connection>, String> {
    let t = up.timeouts();
    // A lazy start is bounded by the start's own timeout: a server that
    // cannot start fails the call then, not after request_timeout.
    let limit = if up.is_cold() {
        t.request_timeout
            .min(t.startup_timeout + std::time::Duration::from_secs(1))
    } else {
        t.request_timeout
    };
    up.wait_ready(limit).await.map_err(|u| unavailable(id, &u))
}

/// The error for a server that is not ready.
fn unavailable(id: &RawValue, u: &Unavailable) -> String {
    jsonrpc::error_response(
        Some(id.get()),
        code::SERVER_UNAVAILABLE,
        &u.message(),
        Some(json!({ "server": u.server, "state": u.state.as_str() })),
    )
}
