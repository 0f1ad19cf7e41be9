//! The MRTR bridge on a legacy child's connection: a child's sampling or
//! elicitation request made while it serves a modern client's call is held
//! ([`crate::era::bridge`]) and the call is answered `input_required`; the
//! child's call stays pending here, *parked*, until the client's retry
//! re-points it at the retry's id.
//!
//! Which call a child's request belongs to: the one client request in
//! flight on this child, when it is a modern call that may take input
//! (`tools/call`, `prompts/get`, `resources/read`). With more than one
//! client request in flight and one of them modern, nothing on the wire
//! says which one asked, so the child gets an error (fail closed); with no
//! modern call, the legacy routing of `inbound` applies. A modern call
//! whose `_meta` does not declare the capability the request needs is
//! answered -32021 (and the child's call cancelled).
//!
//! A parked call's final answer (a child that gave up waiting) is kept in
//! the parked entry and answers the retry. Parked calls are not subject to
//! `request_timeout`: their round's expiry (the same duration, from when it
//! was opened) cancels them, and answers the held requests with an error.

use std::sync::Arc;

use serde_json::json;
use serde_json::value::RawValue;

use super::connection::{ClientRequest, Connection, Pending};
use super::link::SessionLink;
use super::rounds::{ChildAsk, ChildCall, ServerBridge};
use crate::era::bridge::{Held, Round};
use crate::era::state::now_ms;
use crate::jsonrpc::{self, code, Envelope};

/// A parked client call: its request, and the child's final answer if it
/// came before the retry.
pub(super) struct Parked {
    req: ClientRequest,
    session: u64,
    early: Option<Early>,
}

enum Early {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

/// How a parked call resumed.
pub enum Resume {
    /// Re-pointed at the retry: its answer will come.
    Waiting,
    /// The child had answered already: this line answers the retry.
    Answered(String),
    /// The call is gone (the child restarted, or it was cancelled).
    Gone,
}

impl Connection {
    fn bridge(&self) -> &ServerBridge {
        &self.ctx.bridge
    }

    /// Bridges a child's `sampling/createMessage` or `elicitation/create`
    /// to a modern client's call; false when no modern call is in flight on
    /// this child (the legacy routing applies).
    pub(super) fn bridge_request(self: &Arc<Self>, env: &Envelope<'_>) -> bool {
        let method = env.method.as_deref().unwrap_or_default();
        let Some(child_id) = env.id else { return false };
        // The client requests in flight here, parked ones included.
        let (modern, total) = {
            let pending = self.lock();
            let mut modern = Vec::new();
            let mut total = 0;
            for (id, p) in pending.iter() {
                let (req, parked) = match p {
                    Pending::Client(r) => (r, false),
                    Pending::Parked(p) => (&p.req, true),
                    Pending::Internal(_) => continue,
                };
                total += 1;
                if let Some(call) = req.link.era.mrtr_call(req.client_id.get()) {
                    modern.push((*id, parked, req.link.clone(), call));
                }
            }
            (modern, total)
        };
        let (upstream_id, parked, link, call) = match (modern.as_slice(), total) {
            ([], _) => return false,
            ([one], 1) => one.clone(),
            _ => {
                tracing::warn!(server = %self.server(), method, in_flight = total,
                    "cannot tell which client's call a server's request belongs to (a 2026-07-28 call is among several in flight); refusing it");
                self.answer_child(
                    child_id,
                    None,
                    Some(&error_json(code::INTERNAL_ERROR, &format!(
                        "stdioproxy cannot route {method}: several client calls are in flight on this server, so it cannot tell whose input this is"
                    ), None)),
                );
                return true;
            }
        };
        let params: Option<serde_json::Value> =
            env.params.and_then(|p| serde_json::from_str(p.get()).ok());
        if let Err(needed) = call.asks.allows(method, params.as_ref()) {
            // The client must declare it on the call; it cannot be asked.
            self.answer_child(
                child_id,
                None,
                Some(&error_json(
                    code::METHOD_NOT_FOUND,
                    &format!("the client's call did not declare the capability {method} needs"),
                    None,
                )),
            );
            if !parked {
                if let Some(Pending::Client(req)) = self.take(upstream_id) {
                    let error = error_json(
                        crate::era::code::MISSING_CLIENT_CAPABILITY,
                        &format!("server '{}' needs to send {method}, which this request's client capabilities do not declare", self.server()),
                        Some(json!({ "requiredCapabilities": needed })),
                    );
                    let line = jsonrpc::error_response_raw(req.client_id.get(), &error);
                    req.answer(line);
                    self.notify_cancelled(
                        upstream_id,
                        "the client lacks a capability the server needs",
                    );
                }
            }
            return true;
        }
        let held = self.bridge().held(
            ChildAsk {
                conn: Arc::downgrade(self),
                child_id: child_id.to_owned(),
            },
            method,
            env.params.map(RawValue::get),
        );
        let upstream = ChildCall {
            conn: Arc::downgrade(self),
            id: upstream_id,
            client_id: Box::from(""),
        };
        if parked {
            if let Err(held) = self.bridge().queue(link.id, &upstream, held) {
                self.answer_child(
                    &held.child.child_id,
                    None,
                    Some(&error_json(
                        code::INTERNAL_ERROR,
                        "the client's call this request belongs to is over",
                        None,
                    )),
                );
            }
            return true;
        }
        // Park the call and answer the client with the round.
        let req = {
            let mut pending = self.lock();
            match pending.remove(&upstream_id) {
                Some(Pending::Client(req)) => {
                    let client_id = req.client_id.clone();
                    let ticket = req.ticket;
                    pending.insert(
                        upstream_id,
                        Pending::Parked(Parked {
                            req,
                            session: link.id,
                            early: None,
                        }),
                    );
                    Some((client_id, ticket))
                }
                Some(other) => {
                    pending.insert(upstream_id, other);
                    None
                }
                None => None,
            }
        };
        let Some((client_id, ticket)) = req else {
            // Answered meanwhile: the request has no call to ride on.
            self.answer_child(
                child_id,
                None,
                Some(&error_json(
                    code::INTERNAL_ERROR,
                    "the client's call is over",
                    None,
                )),
            );
            return true;
        };
        let ttl = u64::try_from(self.request_timeout().as_millis()).unwrap_or(u64::MAX);
        let upstream = ChildCall {
            client_id: client_id.get().into(),
            ..upstream
        };
        let result = self
            .bridge()
            .open(link.id, call.call, upstream, vec![held], now_ms(), ttl);
        tracing::info!(server = %self.server(), session = link.id, method,
            "holding the server's request for a 2026-07-28 client (input_required)");
        link.finish(client_id.get(), ticket);
        link.outbox
            .send(link.era.result_line(client_id.get(), &result));
        true
    }

    /// Keeps the child's answer to a parked call for the retry; false when
    /// `id` is not parked.
    pub(super) fn keep_parked_answer(&self, id: u64, env: &Envelope<'_>) -> bool {
        let mut pending = self.lock();
        let Some(Pending::Parked(p)) = pending.get_mut(&id) else {
            return false;
        };
        p.early = match (env.result, env.error) {
            (Some(r), _) => Some(Early::Result(r.to_owned())),
            (None, Some(e)) => Some(Early::Error(e.to_owned())),
            (None, None) => return true,
        };
        true
    }

    /// Re-points parked call `upstream_id` at the retry `client_id`
    /// (`ticket`) of `link`, with the retry's progress token.
    pub fn resume_parked(
        &self,
        upstream_id: u64,
        link: &Arc<SessionLink>,
        client_id: &RawValue,
        ticket: u64,
        progress_token: Option<Box<RawValue>>,
    ) -> Resume {
        let mut pending = self.lock();
        let Some(Pending::Parked(p)) = pending.remove(&upstream_id) else {
            return Resume::Gone;
        };
        if p.session != link.id {
            // Cannot happen (the round is bound to the session); keep it.
            pending.insert(upstream_id, Pending::Parked(p));
            return Resume::Gone;
        }
        if let Some(early) = p.early {
            if pending.is_empty() {
                self.idle.notify_waiters();
            }
            drop(pending);
            return Resume::Answered(match early {
                Early::Result(r) => link.era.result_line(client_id.get(), r.get()),
                Early::Error(e) => jsonrpc::error_response_raw(client_id.get(), e.get()),
            });
        }
        let mut req = p.req;
        req.client_id = client_id.to_owned();
        req.ticket = ticket;
        req.deadline = std::time::Instant::now() + self.request_timeout();
        req.progress_token = progress_token;
        pending.insert(upstream_id, Pending::Client(req));
        Resume::Waiting
    }

    /// Tells the child a call it was sent is cancelled (the caller has
    /// taken it from the pending map already).
    fn notify_cancelled(&self, upstream_id: u64, reason: &str) {
        let params = json!({ "requestId": upstream_id, "reason": reason }).to_string();
        let _ = self.send_line(jsonrpc::notification(
            "notifications/cancelled",
            Some(&params),
        ));
    }

    /// Rounds past their expiry: their held requests fail, their calls are
    /// cancelled.
    pub(super) fn expire_rounds(&self) {
        let rounds = self.bridge().expire(now_ms());
        if !rounds.is_empty() {
            tracing::info!(server = %self.server(), rounds = rounds.len(),
                "2026-07-28 clients did not retry in time; failing the held requests");
            abandon(
                rounds,
                "the client did not answer in time (its input_required round expired)",
            );
        }
    }
}

/// Ends rounds nobody will resume: each held request gets an error, each
/// child call is cancelled.
pub fn abandon(rounds: Vec<Round<ChildCall, ChildAsk>>, why: &str) {
    for round in rounds {
        let requests: Vec<&Held<ChildAsk>> = round.requests.iter().chain(&round.queued).collect();
        for h in requests {
            if let Some(conn) = h.child.conn.upgrade() {
                conn.answer_child(
                    &h.child.child_id,
                    None,
                    Some(&error_json(code::INTERNAL_ERROR, why, None)),
                );
            }
        }
        if let Some(conn) = round.upstream.conn.upgrade() {
            conn.cancel(round.upstream.id, why);
        }
    }
}

fn error_json(code: i64, message: &str, data: Option<serde_json::Value>) -> String {
    let mut e = json!({ "code": code, "message": message });
    if let Some(d) = data {
        e["data"] = d;
    }
    e.to_string()
}
