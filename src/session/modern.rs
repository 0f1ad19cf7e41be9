//! The modern (2026-07-28) side of a session: deciding the session's era
//! from its first request, checking every modern request's `_meta`,
//! `server/discover`, and `subscriptions/listen`.
//!
//! The era is decided once, by the first request (see [`crate::era`]); a
//! request of the other era is refused with -32600 from then on. On a modern
//! session each request's `_meta` is validated anew before it is served
//! (-32602 naming what is missing, -32022 for an unknown version), and the
//! log level it asks for is remembered until it is routed. Everything else
//! a modern session does is the legacy code path with decorated results.

use std::sync::Arc;

use serde_json::json;
use serde_json::value::RawValue;

use super::Session;
use crate::catalog::ListKind;
use crate::era::decorate::{self, CacheHint};
use crate::era::listen::Filter;
use crate::era::mrtr::Retry;
use crate::era::state::now_ms;
use crate::era::{self, meta, Era};
use crate::jsonrpc::{code, RawObject};
use crate::upstream::Upstream;
use crate::wire::Resume;

impl Session {
    /// Decides the session's era on its first request and checks `method`
    /// against it; on a modern session, validates the request's `_meta`.
    /// Returns false when the request was refused (and answered).
    pub(super) fn era_gate(
        &mut self,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
    ) -> bool {
        let era = match self.link.era.era() {
            Some(e) => e,
            None => {
                let e = self.link.era.decide(era::opening_era(method, params));
                tracing::debug!(
                    session = self.link.id,
                    era = e.as_str(),
                    method,
                    "session era decided"
                );
                if e == Era::Modern {
                    self.modern_opened();
                }
                e
            }
        };
        match era {
            Era::Legacy if era::modern_only(method) => {
                self.error(
                    Some(id),
                    code::INVALID_REQUEST,
                    &format!(
                        "Invalid request: {method} is a 2026-07-28 request, and this session is a legacy one (it opened with initialize); a session cannot switch eras"
                    ),
                    None,
                );
                false
            }
            Era::Legacy => true,
            Era::Modern if era::legacy_only(method) => {
                self.error(
                    Some(id),
                    code::INVALID_REQUEST,
                    &format!(
                        "Invalid request: {method} does not exist in 2026-07-28, and this session is a 2026-07-28 one; a session cannot switch eras"
                    ),
                    None,
                );
                false
            }
            Era::Modern => match meta::parse(params) {
                Ok(m) => {
                    self.link.era.note_request(id.get(), m.log_level, m.asks());
                    true
                }
                Err(e) => {
                    tracing::debug!(
                        session = self.link.id,
                        method,
                        "refused a modern request: {}",
                        e.message()
                    );
                    self.send(e.response(id.get()));
                    false
                }
            },
        }
    }

    /// A modern session has no `notifications/initialized`: what it can see
    /// now is what it knows (changes reach it through its listens).
    fn modern_opened(&mut self) {
        let catalog = self.hub.supervisor.catalog();
        for (i, kinds) in super::ANNOUNCED.iter().enumerate() {
            self.announced[i] = Some(catalog.view_fingerprint(kinds, |s| self.visible(s)));
        }
    }

    /// `server/discover`.
    pub(super) fn discover(&self, id: &RawValue) {
        let mut resources = json!({ "listChanged": true });
        if self.can_subscribe() {
            resources["subscribe"] = json!(true);
        }
        let capabilities = json!({
            "tools": { "listChanged": true },
            "prompts": { "listChanged": true },
            "resources": resources,
            "completions": {},
        });
        // A single-server session introduces itself as that server.
        let single = self.single_server_info();
        let instructions = match &single {
            Some((_, own)) => own.clone(),
            None => self.instructions(),
        };
        let mut result =
            decorate::discover(&capabilities, instructions.as_deref(), CacheHint::UNKNOWN);
        if let Some((info, _)) = single {
            if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&result) {
                v["_meta"][crate::era::key::SERVER_INFO] = info;
                result = v.to_string();
            }
        }
        self.send(crate::jsonrpc::response(id.get(), &result));
    }

    /// The cache hint of a list of `kind`: the shortest TTL of the
    /// visible servers that contribute to it, private if any is (a legacy
    /// child gives no hint: stale at once, private).
    pub(super) fn list_hint(&self, kind: ListKind) -> CacheHint {
        self.hub
            .supervisor
            .upstreams()
            .iter()
            .filter(|u| self.visible(&u.name) && u.rendered().len(kind) > 0)
            .map(|u| u.list_hint(kind))
            .reduce(CacheHint::combine)
            .unwrap_or(CacheHint::UNKNOWN)
    }

    /// True when some visible server supports resource subscriptions.
    fn can_subscribe(&self) -> bool {
        self.hub.supervisor.upstreams().iter().any(|u| {
            self.visible(&u.name)
                && u.capabilities().pointer("/resources/subscribe")
                    == Some(&serde_json::Value::Bool(true))
        })
    }

    /// `subscriptions/listen`: acknowledged at once; the request stays open
    /// until the client cancels it (or the session ends).
    pub(super) fn listen(&self, id: &RawValue, params: Option<&RawValue>) {
        let Some(filter) = Filter::parse(params) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid params: subscriptions/listen needs params.notifications (toolsListChanged, promptsListChanged, resourcesListChanged, resourceSubscriptions)",
                None,
            );
        };
        let before = self.link.era.listens.uris();
        let honoured = filter.honoured(self.can_subscribe());
        match self.link.era.listens.open(id, honoured) {
            Some(ack) => self.send(ack),
            None => {
                return self.error(
                    Some(id),
                    code::INVALID_REQUEST,
                    &format!(
                        "Invalid request: a listen with id {} is open already",
                        id.get()
                    ),
                    None,
                )
            }
        }
        for uri in self.link.era.listens.uris() {
            if !before.contains(&uri) {
                self.listen_subscription(uri, true);
            }
        }
    }

    /// A `notifications/cancelled` naming an open listen ends it; true when
    /// it did.
    pub(super) fn end_listen(&self, request_id: &str) -> bool {
        let before = self.link.era.listens.uris();
        let Some(done) = self.link.era.listens.close(request_id) else {
            return false;
        };
        self.send(done);
        let after = self.link.era.listens.uris();
        for uri in before.into_iter().filter(|u| !after.contains(u)) {
            self.listen_subscription(uri, false);
        }
        true
    }

    /// A `notifications/cancelled` naming a call that was answered
    /// `input_required` (the client will not retry): its round ends now,
    /// the held requests get an error and the child's call is cancelled.
    /// True when there was such a round.
    pub(super) fn end_round(&self, request_id: &str) -> bool {
        let mut any = false;
        for up in self.hub.supervisor.upstreams() {
            if !self.visible(&up.name) {
                continue;
            }
            let rounds = up
                .context()
                .bridge
                .drain_session_where(self.link.id, |u| &*u.client_id == request_id);
            if !rounds.is_empty() {
                any = true;
                tracing::debug!(session = self.link.id, server = %up.name, "the client cancelled a call waiting for its input");
                crate::wire::abandon_rounds(rounds, "the client cancelled the call");
            }
        }
        any
    }

    /// Subscribes the session to `uri` upstream (or drops it), counted per
    /// URI with `resources/subscribe`'s, in a task of its own. A listen has
    /// been acknowledged already, so a failure is only logged.
    fn listen_subscription(&self, uri: String, subscribe: bool) {
        // The instance this session uses (per-client, per-workspace).
        let up = self.subscription_owner(&uri).and_then(|s| {
            self.hub
                .supervisor
                .instance_for(&s.name, &self.link)
                .ok()
                .flatten()
        });
        let Some(up) = up else {
            tracing::debug!(
                session = self.link.id,
                uri,
                "a listen names a URI no server lists"
            );
            return;
        };
        let session = self.link.id;
        tokio::spawn(async move { listen_subscription(up, session, uri, subscribe).await });
    }
}

impl Session {
    /// A modern client's retry of a call a legacy child asked input for:
    /// the held requests get the client's responses, and the child's call
    /// (parked since the `input_required`) answers this retry.
    pub(super) fn bridge_retry(
        &self,
        method: &str,
        id: &RawValue,
        up: &Arc<Upstream>,
        target: &super::route::Target,
        retry: Result<Retry, String>,
    ) {
        let retry = match retry {
            Ok(r) => r,
            Err(why) => {
                return self.error(
                    Some(id),
                    code::INVALID_PARAMS,
                    &format!("Invalid params: {why}"),
                    None,
                )
            }
        };
        let call = super::route::call_fingerprint(method, target);
        let bridge = &up.context().bridge;
        let resumed = match bridge.resume(self.link.id, call, &retry, now_ms()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(session = self.link.id, server = %up.name, method,
                    "refused a 2026-07-28 retry: {e}");
                return self.error(
                    Some(id),
                    code::INVALID_PARAMS,
                    &format!("Invalid params: {e}"),
                    None,
                );
            }
        };
        for (held, answer) in resumed.answers {
            let Some(conn) = held.child.conn.upgrade() else {
                continue;
            };
            match answer {
                Ok(a) => conn.answer_child(&held.child.child_id, Some(a.get()), None),
                Err(why) => conn.answer_child(
                    &held.child.child_id,
                    None,
                    Some(&json!({ "code": code::INTERNAL_ERROR, "message": why }).to_string()),
                ),
            }
        }
        if !resumed.queued.is_empty() {
            // The child asked more meanwhile: the next round, at once.
            let ttl = u64::try_from(up.timeouts().request_timeout.as_millis()).unwrap_or(u64::MAX);
            // The next round answers this retry: a cancel names this id.
            let upstream = crate::wire::ChildCall {
                client_id: id.get().into(),
                ..resumed.upstream
            };
            let result = bridge.open(self.link.id, call, upstream, resumed.queued, now_ms(), ttl);
            return self.send(self.link.era.result_line(id.get(), &result));
        }
        let gone = |s: &Self| {
            s.error(
                Some(id),
                code::SERVER_CRASHED,
                &format!("server '{}' is no longer serving this call (it restarted, or the call was cancelled)", up.name),
                Some(json!({ "server": &*up.name })),
            )
        };
        let Some(conn) = resumed.upstream.conn.upgrade() else {
            return gone(self);
        };
        let Some(ticket) = self.begin(id) else { return };
        self.link.era.note_call(id.get(), call);
        let token = RawObject::parse_str(&target.params)
            .and_then(|p| p.get("_meta"))
            .and_then(RawObject::parse)
            .and_then(|m| m.get("progressToken"))
            .map(|t| t.to_owned());
        match conn.resume_parked(resumed.upstream.id, &self.link, id, ticket, token) {
            Resume::Waiting => {
                if !self
                    .link
                    .forwarded(id.get(), ticket, &conn, resumed.upstream.id)
                {
                    conn.cancel(resumed.upstream.id, "cancelled by the client");
                }
            }
            Resume::Answered(line) => {
                self.link.finish(id.get(), ticket);
                self.send(line);
            }
            Resume::Gone => {
                self.link.finish(id.get(), ticket);
                gone(self);
            }
        }
    }
}

async fn listen_subscription(up: Arc<Upstream>, session: u64, uri: String, subscribe: bool) {
    let timeout = up.timeouts().request_timeout;
    let subs = &up.context().subscriptions;
    let outcome = if subscribe {
        match up.wait_ready(timeout).await {
            Ok(conn) => subs.subscribe(&conn, session, &uri, timeout).await,
            Err(u) => return tracing::debug!(session, uri, "{}", u.message()),
        }
    } else {
        let conn = up.connection().ok();
        subs.unsubscribe(conn.as_deref(), session, &uri, timeout)
            .await
    };
    let why = match outcome {
        Ok(()) => return,
        Err(crate::wire::SubscribeError::Rpc(e)) => e.get().to_string(),
        Err(crate::wire::SubscribeError::Upstream(e)) => e.to_string(),
    };
    tracing::warn!(session, server = %up.name, uri, "a listen's resource subscription failed: {why}");
}
