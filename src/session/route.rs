//! Requests the session routes to a child: `tools/call` and `prompts/get` by
//! exposed name, `completion/complete` by prompt name or resource URI,
//! `resources/read` and `resources/(un)subscribe` by URI, and `tasks/*` by
//! task id.
//!
//! Routing rewrites only what must change (the name back to the child's, a
//! task id back to the child's); every other byte of the params passes
//! through. Each routed request is registered in the session's link under the
//! client's id first, so a reused id is refused, a cancellation reaches the
//! child, and a disconnect cancels it upstream. A request for a server that
//! is starting or restarting waits for it in its own task (bounded by
//! `request_timeout`), never holding up the session's other requests.
//!
//! Resource URIs go to the server that listed the URI, else to the first
//! whose template matches, else to the servers that declare resources, in
//! name order: the first that does not answer "not found" wins.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{Session, SessionLink};
use crate::catalog::ListKind;
use crate::daemon::RELOAD_TOOL;
use crate::jsonrpc::{self, code, RawObject};
use crate::reload::{reload, Trigger};
use crate::supervisor::BUILTIN_SERVER;
use crate::upstream::{
    ClientCall, Connection, Reply, Rewrite, SubscribeError, Unavailable, Upstream,
};

/// MCP's "resource not found" (2024-11-05 to 2025-11-25).
const RESOURCE_NOT_FOUND: i64 = -32002;

/// Where a request goes, with the params the child gets.
struct Target {
    server: Arc<str>,
    params: String,
    rewrite: Rewrite,
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
        let catalog = self.daemon.supervisor.catalog();
        let Some(item) = catalog.get(kind, &name).filter(|t| self.visible(&t.server)) else {
            return self.unknown(kind, id, &name);
        };
        if &*item.server == BUILTIN_SERVER {
            return self.builtin_tool(id, &item.original);
        }
        let mut original = String::new();
        jsonrpc::push_json_str(&mut original, &item.original);
        let rewrite = if kind == ListKind::Tools && obj.get("task").is_some() {
            Rewrite::NewTask
        } else {
            Rewrite::None
        };
        self.dispatch(
            method,
            id,
            Target {
                server: item.server.clone(),
                params: obj.to_string_with(&[("name", &original)]),
                rewrite,
            },
        );
    }

    /// The daemon's own tools (only `reload`, when `[daemon] reload_tool`).
    fn builtin_tool(&self, id: &RawValue, name: &str) {
        if name != RELOAD_TOOL {
            return self.unknown(ListKind::Tools, id, name);
        }
        let Some(ticket) = self.begin(id) else { return };
        let (daemon, link, id) = (self.daemon.clone(), self.link.clone(), id.to_owned());
        tokio::spawn(async move {
            let (text, is_error) = match reload(&daemon, Trigger::Tool).await {
                Ok(diff) => (format!("Config reloaded: {}", diff.summary()), false),
                Err(e) => (format!("The config was not applied: {e}"), true),
            };
            let result = json!({
                "content": [{ "type": "text", "text": text }],
                "isError": is_error,
            });
            link.finish(id.get(), ticket);
            link.outbox
                .send(jsonrpc::response(id.get(), &result.to_string()));
        });
    }

    fn unknown(&self, kind: ListKind, id: &RawValue, name: &str) {
        let what = if kind == ListKind::Tools {
            "tool"
        } else {
            "prompt"
        };
        let hint = if name.contains(crate::names::SEPARATOR) {
            String::new()
        } else {
            format!(" ({what} names are <server>__<{what}>)")
        };
        tracing::debug!(session = self.link.id, what, name, "unknown name");
        self.error(
            Some(id),
            code::INVALID_PARAMS,
            &format!("Unknown {what}: {name}{hint}"),
            None,
        );
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
        let catalog = self.daemon.supervisor.catalog();
        match r.get_str("type").as_deref() {
            Some("ref/prompt") => {
                let name = r.get_str("name").unwrap_or_default();
                let Some(item) = catalog
                    .get(ListKind::Prompts, &name)
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

    /// The one visible server declaring `capability`, if exactly one does.
    fn only_server_with(&self, capability: &str) -> Option<Arc<str>> {
        let mut with = self.servers_with(capability);
        (with.len() == 1).then(|| with.remove(0).name.clone())
    }

    /// Visible servers declaring `capability`, in name order.
    fn servers_with(&self, capability: &str) -> Vec<Arc<Upstream>> {
        self.daemon
            .supervisor
            .upstreams()
            .into_iter()
            .filter(|u| self.visible(&u.name) && u.capabilities().get(capability).is_some())
            .collect()
    }

    fn uri_param(&self, method: &str, id: &RawValue, params: Option<&RawValue>) -> Option<String> {
        let uri = params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("uri"));
        if uri.is_none() {
            self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("{method} needs params.uri (a string)"),
                None,
            );
        }
        uri
    }

    /// `resources/read`, routed by URI.
    pub(super) fn read_resource(&self, id: &RawValue, params: Option<&RawValue>) {
        let Some(uri) = self.uri_param("resources/read", id, params) else {
            return;
        };
        let params = params.map_or_else(|| "{}".into(), |p| p.get().to_string());
        let catalog = self.daemon.supervisor.catalog();
        if let Some(server) = catalog.resource_owner(&uri, |s| self.visible(s)) {
            return self.dispatch(
                "resources/read",
                id,
                Target {
                    server,
                    params,
                    rewrite: Rewrite::None,
                },
            );
        }
        let candidates = self.servers_with("resources");
        match candidates.as_slice() {
            [] => self.error(
                Some(id),
                RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri} (no server lists it)"),
                Some(json!({ "uri": uri })),
            ),
            [only] => self.dispatch(
                "resources/read",
                id,
                Target {
                    server: only.name.clone(),
                    params,
                    rewrite: Rewrite::None,
                },
            ),
            _ => {
                let Some(ticket) = self.begin(id) else { return };
                let link = self.link.clone();
                let id = id.to_owned();
                tokio::spawn(async move {
                    let line = read_from_first(&candidates, &params, &uri, &id).await;
                    link.finish(id.get(), ticket);
                    link.outbox.send(line);
                });
            }
        }
    }

    /// `resources/subscribe` and `resources/unsubscribe`: counted across
    /// sessions per URI (see `upstream::subscriptions`).
    pub(super) fn subscription(&self, method: &str, id: &RawValue, params: Option<&RawValue>) {
        let Some(uri) = self.uri_param(method, id, params) else {
            return;
        };
        let catalog = self.daemon.supervisor.catalog();
        let owner = catalog
            .resource_owner(&uri, |s| self.visible(s))
            .or_else(|| self.only_server_with("resources"));
        let Some(up) = owner.and_then(|s| self.daemon.supervisor.upstream(&s)) else {
            return self.error(
                Some(id),
                RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri} (no server lists it)"),
                Some(json!({ "uri": uri })),
            );
        };
        let subscribe = method == "resources/subscribe";
        if subscribe
            && up.capabilities().pointer("/resources/subscribe") != Some(&Value::Bool(true))
        {
            return self.error(
                Some(id),
                code::METHOD_NOT_FOUND,
                &format!(
                    "server '{}' does not support resource subscriptions",
                    up.name
                ),
                None,
            );
        }
        let Some(ticket) = self.begin(id) else { return };
        let link = self.link.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let timeout = up.timeouts().request_timeout;
            let subs = &up.context().subscriptions;
            let outcome = if subscribe {
                match up.wait_ready(timeout).await {
                    Ok(conn) => subs.subscribe(&conn, link.id, &uri, timeout).await,
                    Err(u) => {
                        link.finish(id.get(), ticket);
                        link.outbox.send(unavailable(&id, &u));
                        return;
                    }
                }
            } else {
                let conn = up.connection().ok();
                subs.unsubscribe(conn.as_deref(), link.id, &uri, timeout)
                    .await
            };
            let line = match outcome {
                Ok(()) => jsonrpc::response(id.get(), "{}"),
                Err(SubscribeError::Rpc(e)) => jsonrpc::error_response_raw(id.get(), e.get()),
                Err(SubscribeError::Upstream(e)) => jsonrpc::error_response(
                    Some(id.get()),
                    code::SERVER_UNAVAILABLE,
                    &format!("server '{}' could not take the request: {e}", up.name),
                    Some(json!({ "server": &*up.name })),
                ),
            };
            link.finish(id.get(), ticket);
            link.outbox.send(line);
        });
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel`: to the child instance
    /// that owns the task, under its own task id.
    pub(super) fn task_request(&self, method: &str, id: &RawValue, params: Option<&RawValue>) {
        let obj = params.and_then(RawObject::parse);
        let Some(task_id) = obj.as_ref().and_then(|o| o.get_str("taskId")) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("{method} needs params.taskId (a string)"),
                None,
            );
        };
        let Some(task) = self.link.task(&task_id) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("Unknown task: {task_id}"),
                None,
            );
        };
        let Some(conn) = task.conn.upgrade().filter(|c| !c.is_closed()) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!(
                    "Task {task_id} was lost: server '{}' restarted since it was created",
                    task.server
                ),
                None,
            );
        };
        let mut child = String::new();
        jsonrpc::push_json_str(&mut child, &task.child_id);
        let params = obj
            .as_ref()
            .map_or_else(String::new, |o| o.to_string_with(&[("taskId", &child)]));
        let Some(ticket) = self.begin(id) else { return };
        let rewrite = Rewrite::Task {
            child: task.child_id.clone(),
            client: task_id,
        };
        send(&self.link, &conn, method, id, ticket, params, rewrite);
    }

    /// `tasks/list`: this session's tasks only, each asked of its child.
    pub(super) fn tasks_list(&self, id: &RawValue) {
        let tasks = self.link.tasks();
        let link = self.link.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let mut listed = Vec::new();
            for (client_id, task) in tasks {
                let Some(conn) = task.conn.upgrade().filter(|c| !c.is_closed()) else {
                    continue;
                };
                let params = json!({ "taskId": task.child_id }).to_string();
                let timeout = conn.request_timeout();
                if let Ok(Reply::Result(r)) =
                    conn.request("tasks/get", Some(&params), timeout).await
                {
                    if let Ok(mut v) = serde_json::from_str::<Value>(r.get()) {
                        crate::upstream::replace_task_ids(&mut v, &task.child_id, &client_id);
                        listed.push(v);
                    }
                }
            }
            let result = json!({ "tasks": listed }).to_string();
            link.outbox.send(jsonrpc::response(id.get(), &result));
        });
    }

    /// Registers a request under the client's id; answers -32600 itself when
    /// that id is still in flight.
    fn begin(&self, id: &RawValue) -> Option<u64> {
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
    fn dispatch(&self, method: &str, id: &RawValue, target: Target) {
        let Some(up) = self.daemon.supervisor.upstream(&target.server) else {
            return self.error(
                Some(id),
                code::SERVER_UNAVAILABLE,
                &format!("server '{}' is not running", target.server),
                Some(json!({ "server": &*target.server })),
            );
        };
        let Some(ticket) = self.begin(id) else { return };
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
                    let limit = up.timeouts().request_timeout;
                    let ready = up.wait_ready(limit).await;
                    if !link.still_wanted(id.get(), ticket) {
                        return link.finish(id.get(), ticket);
                    }
                    match ready {
                        Ok(conn) => send(
                            &link,
                            &conn,
                            &method,
                            &id,
                            ticket,
                            target.params,
                            target.rewrite,
                        ),
                        Err(u) => {
                            link.finish(id.get(), ticket);
                            link.outbox.send(unavailable(&id, &u));
                        }
                    }
                });
            }
        }
    }
}

/// Forwards a registered request on `conn`; a child that cannot take it
/// gets the client an error naming the server.
fn send(
    link: &Arc<SessionLink>,
    conn: &Arc<Connection>,
    method: &str,
    id: &RawValue,
    ticket: u64,
    params: String,
    rewrite: Rewrite,
) {
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

/// The error for a server that is not ready.
fn unavailable(id: &RawValue, u: &Unavailable) -> String {
    jsonrpc::error_response(
        Some(id.get()),
        code::SERVER_UNAVAILABLE,
        &u.message(),
        Some(json!({ "server": u.server, "state": u.state.as_str() })),
    )
}

/// Asks each candidate in turn; the first answer that is not "not found"
/// (or the last answer) goes to the client.
async fn read_from_first(
    candidates: &[Arc<Upstream>],
    params: &str,
    uri: &str,
    id: &RawValue,
) -> String {
    let mut last = None;
    for up in candidates {
        let timeout = up.timeouts().request_timeout;
        let conn = match up.wait_ready(timeout).await {
            Ok(c) => c,
            Err(u) => {
                last = Some(unavailable(id, &u));
                continue;
            }
        };
        match conn.request("resources/read", Some(params), timeout).await {
            Ok(Reply::Result(r)) => return jsonrpc::response(id.get(), r.get()),
            Ok(Reply::Error(e)) => {
                let code = serde_json::from_str::<Value>(e.get())
                    .ok()
                    .and_then(|v| v["code"].as_i64());
                let line = jsonrpc::error_response_raw(id.get(), e.get());
                if !matches!(code, Some(RESOURCE_NOT_FOUND) | Some(code::INVALID_PARAMS)) {
                    return line;
                }
                last = Some(line);
            }
            Err(e) => {
                last = Some(jsonrpc::error_response(
                    Some(id.get()),
                    code::SERVER_CRASHED,
                    &format!("server '{}' could not take the request: {e}", up.name),
                    Some(json!({ "server": &*up.name })),
                ));
            }
        }
    }
    last.unwrap_or_else(|| {
        jsonrpc::error_response(
            Some(id.get()),
            RESOURCE_NOT_FOUND,
            &format!("Resource not found: {uri}"),
            Some(json!({ "uri": uri })),
        )
    })
}
