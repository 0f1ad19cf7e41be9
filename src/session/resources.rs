//! Requests routed by resource URI: `resources/read`, and
//! `resources/subscribe` / `unsubscribe` (counted across sessions per URI,
//! see `wire::subscriptions`).
//!
//! A URI goes to the server that listed it, else to the first whose
//! template matches, else to the servers that declare resources, in name
//! order: the first that does not answer "not found" wins.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::route::{ready_for, wait_ready};
use super::Session;
use crate::jsonrpc::{self, code, RawObject};
use crate::upstream::Upstream;
use crate::wire::{Reply, Rewrite, SessionLink, SubscribeError};

/// MCP's "resource not found" (2024-11-05 to 2025-11-25).
pub(super) const RESOURCE_NOT_FOUND: i64 = -32002;

impl Session {
    /// The one visible server declaring `capability`, if exactly one does.
    pub(super) fn only_server_with(&self, capability: &str) -> Option<Arc<str>> {
        let mut with = self.servers_with(capability);
        (with.len() == 1).then(|| with.remove(0).name.clone())
    }

    /// Visible servers declaring `capability`, in name order.
    fn servers_with(&self, capability: &str) -> Vec<Arc<Upstream>> {
        self.hub
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
        // read_from_first asks children itself, not through route::send.
        let params = crate::era::params_for_child(self.link.era.is_modern(), false, params);
        let catalog = self.hub.supervisor.catalog();
        if let Some(server) = catalog.resource_owner(&uri, |s| self.visible(s)) {
            return self.dispatch(
                "resources/read",
                id,
                super::route::Target {
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
                super::route::Target {
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
                    let line = read_from_first(&link, &candidates, &params, &uri, &id).await;
                    link.finish(id.get(), ticket);
                    link.outbox.send(line);
                });
            }
        }
    }

    /// The server a subscription to `uri` goes to: the one listing it, else
    /// the only one declaring resources.
    pub(super) fn subscription_owner(&self, uri: &str) -> Option<Arc<Upstream>> {
        let catalog = self.hub.supervisor.catalog();
        let owner = catalog
            .resource_owner(uri, |s| self.visible(s))
            .or_else(|| self.only_server_with("resources"));
        owner.and_then(|s| self.hub.supervisor.upstream(&s))
    }

    /// `resources/subscribe` and `resources/unsubscribe`: counted across
    /// sessions per URI (see `wire::subscriptions`).
    pub(super) fn subscription(&self, method: &str, id: &RawValue, params: Option<&RawValue>) {
        let Some(uri) = self.uri_param(method, id, params) else {
            return;
        };
        let Some(server) = self.subscription_owner(&uri) else {
            return self.error(
                Some(id),
                RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri} (no server lists it)"),
                Some(json!({ "uri": uri })),
            );
        };
        let Some(up) = self.instance(&server.name, id) else {
            return;
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
                let Some(conn) = ready_for(&link, &up, &id, ticket).await else {
                    return;
                };
                subs.subscribe(&conn, link.id, &uri, timeout).await
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
}

/// Asks each candidate in turn; the first answer that is not "not found"
/// (or the last answer) goes to the client.
async fn read_from_first(
    link: &SessionLink,
    candidates: &[Arc<Upstream>],
    params: &str,
    uri: &str,
    id: &RawValue,
) -> String {
    let mut last = None;
    for up in candidates {
        let timeout = up.timeouts().request_timeout;
        let conn = match wait_ready(up, id).await {
            Ok(c) => c,
            Err(line) => {
                last = Some(line);
                continue;
            }
        };
        match conn.request("resources/read", Some(params), timeout).await {
            Ok(Reply::Result(r)) => return link.era.result_line(id.get(), r.get()),
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
