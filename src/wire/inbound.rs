//! What a child sends besides responses: notifications, and requests to "the
//! client" — which, for a child shared by many sessions, means choosing one.
//!
//! Notifications: list changes go to the lifecycle task (which refreshes the
//! lists and rebuilds the catalog); progress to the one session that asked;
//! `notifications/message` to every session that sees the server and wants
//! that level, with the logger naming the server; `resources/updated` to the
//! sessions subscribed to that URI; `tasks/status` to the session that owns
//! the task; `cancelled` (of the child's own request) and
//! `elicitation/complete` to the session that got that request.
//!
//! Requests: `roots/list` is answered from the server's configured roots
//! (never from a client); `sampling/createMessage`, `elicitation/create` and
//! `ping` go to the only session with requests in flight on this child when
//! there is exactly one and it declared the capability (for ping: it is
//! initialized), else to the most recent requester that declared it, else
//! the child gets a JSON-RPC error saying why (a ping is then answered by
//! the daemon itself). The client sees a daemon-minted id; its answer
//! goes back to the child under the child's id.

use std::sync::{Arc, Weak};

use serde_json::value::RawValue;

use super::connection::Connection;
use super::context::Owner;
use super::link::{Outgoing, SessionLink};
use crate::catalog::ListKind;
use crate::jsonrpc::{self, code, Envelope, RawObject};
use crate::loglevel::Level;

impl Connection {
    pub(super) fn on_notification(self: &Arc<Self>, env: &Envelope<'_>) {
        let method = env.method.as_deref().unwrap_or_default();
        // Parsed only by the arms that read it: a log message's params (the
        // most frequent notification) are parsed once, by on_log.
        let params = || env.params.and_then(RawObject::parse);
        match method {
            "notifications/tools/list_changed" => self.list_changed(&[ListKind::Tools]),
            "notifications/prompts/list_changed" => self.list_changed(&[ListKind::Prompts]),
            "notifications/resources/list_changed" => {
                self.list_changed(&[ListKind::Resources, ListKind::Templates]);
            }
            "notifications/progress" => {
                if let Some(p) = params() {
                    self.on_progress(&p);
                }
            }
            "notifications/message" => self.on_log(env.params),
            "notifications/resources/updated" => self.on_resource_updated(env),
            "notifications/tasks/status" => self.on_task_status(env),
            "notifications/cancelled" => self.on_child_cancelled(params().as_ref()),
            "notifications/elicitation/complete" => self.on_elicitation_complete(env),
            _ => {
                tracing::debug!(server = %self.server(), method, "notification from server not routed to clients");
            }
        }
    }

    fn list_changed(&self, kinds: &[ListKind]) {
        for kind in kinds {
            let _ = self.events.send(super::Event::ListChanged(*kind));
        }
    }

    /// Fans a log message out to every session that sees this server and
    /// wants its level, with `logger` naming the server.
    fn on_log(&self, params: Option<&RawValue>) {
        let Some(obj) = params.and_then(RawObject::parse) else {
            tracing::debug!(server = %self.server(), "dropping a log message without params");
            return;
        };
        let level = obj.get_str("level").as_deref().and_then(Level::parse);
        let logger = match obj.get_str("logger") {
            Some(l) => format!("{}/{l}", self.server()),
            None => self.server().to_string(),
        };
        tracing::debug!(server = %self.server(), params = obj.get("data").map(RawValue::get), "log message from server");
        let mut quoted = String::new();
        jsonrpc::push_json_str(&mut quoted, &logger);
        let line = jsonrpc::notification(
            "notifications/message",
            Some(&obj.to_string_with(&[("logger", &quoted)])),
        );
        for link in self.ctx.audience() {
            if link.wants_log_from(self.server(), level) {
                link.outbox.send(line.clone());
            }
        }
    }

    fn on_resource_updated(&self, env: &Envelope<'_>) {
        let Some(uri) = env
            .params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("uri"))
        else {
            tracing::debug!(server = %self.server(), "dropping resources/updated without a uri");
            return;
        };
        let sessions = self.ctx.subscriptions.subscribers(&uri);
        if sessions.is_empty() {
            return;
        }
        let line = jsonrpc::notification(
            "notifications/resources/updated",
            env.params.map(RawValue::get),
        );
        for id in sessions {
            let Some(link) = self.ctx.registry.get(id) else {
                continue;
            };
            if link.era.is_modern() {
                // Tagged once per listen that asked for this URI.
                let params = env.params.map_or("{}", RawValue::get);
                for tagged in link.era.listens.resource_updated(&uri, params) {
                    link.outbox.send(tagged);
                }
            } else {
                link.outbox.send(line.clone());
            }
        }
    }

    fn on_child_cancelled(&self, params: Option<&RawObject<'_>>) {
        let Some(params) = params else { return };
        let Some(child_id) = params.get("requestId") else {
            return;
        };
        let Some((link, our_id)) = self.routes().child_requests.remove(child_id.get()) else {
            return;
        };
        let Some(link) = link.upgrade() else { return };
        if link.take_outgoing(our_id).is_some() {
            let rewritten = params.to_string_with(&[("requestId", &our_id.to_string())]);
            link.outbox.send(jsonrpc::notification(
                "notifications/cancelled",
                Some(&rewritten),
            ));
        }
    }

    fn on_elicitation_complete(&self, env: &Envelope<'_>) {
        let Some(eid) = env
            .params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("elicitationId"))
        else {
            return;
        };
        let link = self.routes().elicitations.remove(&eid);
        if let Some(link) = link.and_then(|l| l.upgrade()) {
            link.outbox.send(jsonrpc::notification(
                "notifications/elicitation/complete",
                env.params.map(RawValue::get),
            ));
        }
    }

    pub(super) fn on_request(self: &Arc<Self>, env: &Envelope<'_>) {
        let method = env.method.as_deref().unwrap_or_default();
        let id = env.id.map_or("null", |r| r.get());
        let reply = match method {
            // Routed like sampling when some client uses this child (so the
            // child learns whether *that* client is alive); answered here
            // when none does, since failing it would make the child think
            // its connection is dead.
            "ping" => match self.route_to_client(env) {
                Ok(()) => return,
                Err(_) => jsonrpc::response(id, "{}"),
            },
            // A per-client instance asks its owner, when the owner
            // declared roots; everyone else gets the configured roots (a
            // per-workspace instance: its workspace).
            "roots/list"
                if self.ctx.roots_owner().is_some() && self.route_to_client(env).is_ok() =>
            {
                return
            }
            "roots/list" => match self.ctx.roots() {
                Some(roots) => jsonrpc::response(id, &roots),
                None => jsonrpc::error_response(
                    Some(id),
                    code::METHOD_NOT_FOUND,
                    "stdioproxy declared no roots to this server (configure roots = [...] for it)",
                    None,
                ),
            },
            "sampling/createMessage" | "elicitation/create" if self.bridge_request(env) => return,
            "sampling/createMessage" | "elicitation/create" => match self.route_to_client(env) {
                Ok(()) => return,
                Err(why) => {
                    tracing::warn!(server = %self.server(), method, "cannot route the server's request to a client: {why}");
                    jsonrpc::error_response(
                        Some(id),
                        code::METHOD_NOT_FOUND,
                        &format!("stdioproxy cannot route {method} to a client: {why}"),
                        None,
                    )
                }
            },
            _ => {
                tracing::warn!(server = %self.server(), method, "server sent a request stdioproxy does not route; answering with an error");
                jsonrpc::error_response(
                    Some(id),
                    code::METHOD_NOT_FOUND,
                    &format!("stdioproxy does not route {method} from shared servers to clients"),
                    None,
                )
            }
        };
        if !self.send_line(reply) {
            tracing::warn!(server = %self.server(), "cannot answer the server's request: its stdin queue is full or closed");
        }
    }

    /// Picks the session for a sampling or elicitation request and sends it
    /// there under a fresh id.
    fn route_to_client(self: &Arc<Self>, env: &Envelope<'_>) -> Result<(), String> {
        let method = env.method.as_deref().unwrap_or_default();
        let Some(child_id) = env.id else {
            return Err("the request has no id".into());
        };
        let params = env.params.and_then(RawObject::parse);
        let url_mode = params
            .as_ref()
            .and_then(|p| p.get_str("mode"))
            .is_some_and(|m| m == "url");
        let capable = |l: &SessionLink| {
            let caps = l.caps();
            match method {
                "ping" => l.is_initialized(),
                "roots/list" => caps.roots,
                "sampling/createMessage" => caps.sampling,
                _ if url_mode => caps.elicitation_url,
                _ => caps.elicitation_form,
            }
        };
        let capability = match method {
            "ping" => "initialized session",
            "roots/list" => "roots",
            "sampling/createMessage" => "sampling",
            _ if url_mode => "elicitation.url",
            _ => "elicitation",
        };
        let requesters = self.requesters();
        // A per-client instance has one client: its owner, also before it
        // forwarded any call (a request during the handshake).
        let owner = match &self.ctx.owner {
            Owner::Session(id) => self.ctx.registry.get(*id).filter(|l| capable(l)),
            _ => None,
        };
        let link = match (owner, requesters.as_slice()) {
            (Some(owner), _) => owner,
            (None, [only]) if capable(only) => only.clone(),
            _ => self
                .most_recent_capable(&capable)
                .or_else(|| match self.ctx.owner {
                    // The sessions of a workspace share its instance.
                    Owner::Workspace(_) => self.ctx.audience().into_iter().find(|l| capable(l)),
                    _ => None,
                })
                .ok_or_else(|| format!("no connected client that uses this server declared the {capability} capability"))?,
        };
        let our_id = link.add_outgoing(Outgoing {
            conn: Arc::downgrade(self),
            child_id: child_id.to_owned(),
            reply: None,
        });
        {
            let mut routes = self.routes();
            routes.prune();
            routes
                .child_requests
                .insert(child_id.get().into(), (Arc::downgrade(&link), our_id));
            if url_mode {
                if let Some(eid) = params.as_ref().and_then(|p| p.get_str("elicitationId")) {
                    routes.elicitations.insert(eid, Arc::downgrade(&link));
                }
            }
        }
        tracing::info!(server = %self.server(), session = link.id, method, "routing the server's request to a client");
        link.outbox.send(jsonrpc::request(
            our_id,
            method,
            env.params.map(RawValue::get),
        ));
        Ok(())
    }

    fn most_recent_capable(
        &self,
        capable: &dyn Fn(&SessionLink) -> bool,
    ) -> Option<Arc<SessionLink>> {
        let mut recent: Vec<(u64, u64)> =
            self.routes().recent.iter().map(|(s, q)| (*q, *s)).collect();
        recent.sort_unstable_by(|a, b| b.cmp(a));
        recent
            .into_iter()
            .filter_map(|(_, session)| self.ctx.registry.get(session))
            .find(|l| l.visible(self.server()) && self.ctx.owner.owns(l) && capable(l))
    }

    /// Passes a client's answer to the child's request back to the child,
    /// under the child's id. `result` or `error` is raw JSON.
    pub fn answer_child(&self, child_id: &RawValue, result: Option<&str>, error: Option<&str>) {
        self.routes().child_requests.remove(child_id.get());
        let line = match (result, error) {
            (Some(r), _) => jsonrpc::response(child_id.get(), r),
            (None, Some(e)) => jsonrpc::error_response_raw(child_id.get(), e),
            (None, None) => return,
        };
        if !self.send_line(line) {
            tracing::warn!(server = %self.server(), "cannot pass a client's answer to the server: its stdin queue is full or closed");
        }
    }

    /// The client that was to answer the child's request is gone: tell the
    /// child.
    pub fn client_gone(&self, child_id: &RawValue) {
        let error = serde_json::json!({
            "code": code::INTERNAL_ERROR,
            "message": "the client handling this request disconnected",
        })
        .to_string();
        self.answer_child(child_id, None, Some(&error));
    }

    /// The child is gone: every request it had sent to a client is
    /// withdrawn (the client is told it was cancelled).
    pub(super) fn abandon_client_requests(&self) {
        let abandoned: Vec<(Weak<SessionLink>, u64)> = self
            .routes()
            .child_requests
            .drain()
            .map(|(_, v)| v)
            .collect();
        for (link, our_id) in abandoned {
            let Some(link) = link.upgrade() else { continue };
            if link.take_outgoing(our_id).is_some() {
                let params = serde_json::json!({
                    "requestId": our_id,
                    "reason": format!("server '{}' stopped", self.server()),
                })
                .to_string();
                link.outbox.send(jsonrpc::notification(
                    "notifications/cancelled",
                    Some(&params),
                ));
            }
        }
    }
}
