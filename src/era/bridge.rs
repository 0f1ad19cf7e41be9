//! The legacy-child half of the MRTR bridge: rounds of held child requests
//! between a modern client's call and its retries.
//!
//! A legacy child serving a modern client's `tools/call` (`prompts/get`,
//! `resources/read`) may send "the client" `sampling/createMessage`,
//! `elicitation/create` or `roots/list`. The daemon holds such requests in a
//! *round*, answers the client's call with an `input_required` result
//! embedding them (keys `sp-<n>`) and a `requestState` naming the round
//! ([`super::state`]: HMAC, expiry, bound to the session and the call). The
//! child's call itself stays in flight upstream; the round remembers it.
//! The client's retry (a new id, `inputResponses`, the echoed state)
//! resumes the round: each held request is answered with the client's
//! response for its key, and the child's call is re-pointed at the retry's
//! id, so its final result (or the next round) answers the retry.
//!
//! Requests the child sends while a round waits for its retry are queued in
//! that round and open the next round as soon as the retry arrives. (A
//! child's final answer that arrives before the retry is kept with the
//! child's call, see `wire::mrtr`.) A round that expires, or whose session
//! ends, is handed back for the caller to answer the held requests with an
//! error and cancel the child's call.
//!
//! Generic over the handles (`U`: the child's call in flight, `R`: one
//! held child request) so the rules, above all that no session's input ever
//! answers another session's request, are tested here without children.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::held::{HeldTable, TakeError};
use super::mrtr::{self, InputRequest, Retry};
use super::state::{Claim, StateError, StateKey};

/// One child request held for a client.
#[derive(Clone, Debug)]
pub struct Held<R> {
    /// Its key in `inputRequests`.
    pub key: String,
    /// The child's request (who to answer).
    pub child: R,
    /// Its method.
    pub method: String,
    /// Its params, raw.
    pub params: Option<String>,
}

/// A round waiting for the client's retry.
#[derive(Debug)]
pub struct Round<U, R> {
    /// The child's call in flight.
    pub upstream: U,
    /// Fingerprint of the client's call.
    pub call: u64,
    /// The requests sent to the client in this round.
    pub requests: Vec<Held<R>>,
    /// Requests the child sent after this round was sent.
    pub queued: Vec<Held<R>>,
}

/// A held request with the client's response for it (raw), or why there
/// is none.
pub type Answer<R> = (Held<R>, Result<Box<RawValue>, String>);

/// What a retry resumes.
#[derive(Debug)]
pub struct Resumed<U, R> {
    /// The child's call, to re-point at the retry's id.
    pub upstream: U,
    /// Each held request with the client's response.
    pub answers: Vec<Answer<R>>,
    /// Requests that wait for the next round.
    pub queued: Vec<Held<R>>,
}

/// Why a retry resumed nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The state is forged, expired or foreign.
    #[error(transparent)]
    State(#[from] StateError),
    /// The round was resumed already or has expired and been swept.
    #[error("requestState names a round that is over (answered already, or expired)")]
    Gone,
    /// The retry has `inputResponses` but no `requestState`.
    #[error("a retry with inputResponses needs the requestState it was given")]
    NoState,
}

/// The rounds of one server's calls.
pub struct Bridge<U, R> {
    key: Arc<StateKey>,
    rounds: HeldTable<Round<U, R>>,
    next_key: AtomicU64,
}

impl<U: PartialEq, R> Bridge<U, R> {
    /// A bridge minting states with `key`.
    pub fn new(key: Arc<StateKey>) -> Self {
        Self {
            key,
            rounds: HeldTable::default(),
            next_key: AtomicU64::new(1),
        }
    }

    /// A fresh key for a held request.
    pub fn held(&self, child: R, method: &str, params: Option<&str>) -> Held<R> {
        Held {
            key: format!("sp-{}", self.next_key.fetch_add(1, Ordering::Relaxed)),
            child,
            method: method.to_string(),
            params: params.map(str::to_string),
        }
    }

    /// Opens a round for `session`'s call `call` (its child call
    /// `upstream`) with `requests`, expiring `ttl_ms` from `now_ms`;
    /// returns the `input_required` result to answer the client's call
    /// with.
    pub fn open(
        &self,
        session: u64,
        call: u64,
        upstream: U,
        requests: Vec<Held<R>>,
        now_ms: u64,
        ttl_ms: u64,
    ) -> String {
        let embedded: Vec<InputRequest> = requests
            .iter()
            .map(|h| InputRequest {
                key: h.key.clone(),
                method: h.method.clone(),
                params: h.params.clone(),
            })
            .collect();
        let expires_ms = now_ms.saturating_add(ttl_ms);
        let round = Round {
            upstream,
            call,
            requests,
            queued: Vec::new(),
        };
        let id = self.rounds.hold(session, expires_ms, round);
        let state = self.key.mint(Claim {
            session,
            held: id,
            call,
            expires_ms,
        });
        mrtr::input_required_result(&embedded, &state)
    }

    /// The round of `session` waiting on child call `upstream`, if any.
    fn round_of(&self, session: u64, upstream: &U) -> Option<u64> {
        self.rounds
            .find(session, |r| r.upstream == *upstream)
            .into_iter()
            .next()
    }

    /// Queues a child request on the open round of `upstream`; gives it
    /// back when there is none (the call is not waiting for a retry).
    pub fn queue(&self, session: u64, upstream: &U, held: Held<R>) -> Result<(), Held<R>> {
        let Some(id) = self.round_of(session, upstream) else {
            return Err(held);
        };
        let mut held = Some(held);
        self.rounds.with(id, session, |r| {
            if let Some(h) = held.take() {
                r.queued.push(h);
            }
        });
        held.map_or(Ok(()), Err)
    }

    /// Resumes the round a retry names, for `session`'s call `call`.
    pub fn resume(
        &self,
        session: u64,
        call: u64,
        retry: &Retry,
        now_ms: u64,
    ) -> Result<Resumed<U, R>, BridgeError> {
        let state = retry.state.as_deref().ok_or(BridgeError::NoState)?;
        let claim = self.key.verify(state, session, call, now_ms)?;
        let round = self.rounds.take(claim.held, session).map_err(|e| match e {
            TakeError::Gone => BridgeError::Gone,
            TakeError::Foreign => BridgeError::State(StateError::Foreign),
        })?;
        let answers = round
            .requests
            .into_iter()
            .map(|h| {
                let answer = retry.response(&h.key).map(|r| r.to_owned()).ok_or_else(|| {
                    format!("the client's retry has no inputResponses[{:?}]", h.key)
                });
                (h, answer)
            })
            .collect();
        Ok(Resumed {
            upstream: round.upstream,
            answers,
            queued: round.queued,
        })
    }

    /// Rounds expired at `now_ms`.
    pub fn expire(&self, now_ms: u64) -> Vec<Round<U, R>> {
        self.rounds
            .expire(now_ms)
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Rounds of a session that ended.
    pub fn drain_session(&self, session: u64) -> Vec<Round<U, R>> {
        self.rounds
            .drain_session(session)
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// `session`'s rounds waiting on child calls matching `pred` (the
    /// client cancelled the call).
    pub fn drain_session_where(&self, session: u64, pred: impl Fn(&U) -> bool) -> Vec<Round<U, R>> {
        self.rounds
            .drain_session_where(session, |r| pred(&r.upstream))
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Rounds waiting on child calls matching `pred` (a child that stopped).
    pub fn drain_where(&self, pred: impl Fn(&U) -> bool) -> Vec<Round<U, R>> {
        self.rounds
            .drain_where(|r| pred(&r.upstream))
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Rounds waiting for a retry.
    pub fn len(&self) -> usize {
        self.rounds.len()
    }

    /// True when no round waits.
    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::era::state::call_fingerprint;
    use serde_json::Value;

    fn bridge() -> Bridge<u64, &'static str> {
        Bridge::new(Arc::new(StateKey::from_bytes([1; 32])))
    }

    fn retry_for(result: &str, answer: &str) -> Retry {
        let v: Value = serde_json::from_str(result).unwrap();
        let key = v["inputRequests"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        Retry {
            responses: vec![(key, serde_json::from_str(answer).unwrap())],
            state: v["requestState"].as_str().map(str::to_string),
        }
    }

    #[test]
    fn a_round_trip() {
        let b = bridge();
        let call = call_fingerprint("tools/call", "a__sample");
        let h = b.held(
            "child-req-1",
            "sampling/createMessage",
            Some(r#"{"maxTokens":5}"#),
        );
        let result = b.open(7, call, 100, vec![h], 0, 1000);
        let v: Value = serde_json::from_str(&result).unwrap();
        assert_eq!(v["resultType"], "input_required");
        let (key, req) = v["inputRequests"]
            .as_object()
            .unwrap()
            .iter()
            .next()
            .unwrap();
        assert!(key.starts_with("sp-"));
        assert_eq!(req["method"], "sampling/createMessage");
        assert_eq!(req["params"]["maxTokens"], 5);

        // Another request of the child while the round waits: queued.
        assert!(b
            .queue(7, &100, b.held("child-req-2", "elicitation/create", None))
            .is_ok());
        assert!(
            b.queue(7, &101, b.held("x", "roots/list", None)).is_err(),
            "no round on that call"
        );
        assert!(
            b.queue(8, &100, b.held("x", "roots/list", None)).is_err(),
            "not that session's"
        );

        let retry = retry_for(&result, r#"{"role":"assistant"}"#);
        let r = b.resume(7, call, &retry, 10).unwrap();
        assert_eq!(r.upstream, 100);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].0.child, "child-req-1");
        assert_eq!(
            r.answers[0].1.as_ref().unwrap().get(),
            r#"{"role":"assistant"}"#
        );
        assert_eq!(r.queued.len(), 1);
        assert_eq!(
            b.resume(7, call, &retry, 10).unwrap_err(),
            BridgeError::Gone,
            "once"
        );
        assert!(b.is_empty());
    }

    #[test]
    fn refused_retries() {
        let b = bridge();
        let call = call_fingerprint("tools/call", "a__t");
        let result = b.open(1, call, 5, vec![b.held("c", "roots/list", None)], 0, 1000);
        let retry = retry_for(&result, "{}");
        assert_eq!(
            b.resume(2, call, &retry, 1).unwrap_err(),
            BridgeError::State(StateError::Foreign)
        );
        let other = call_fingerprint("tools/call", "a__u");
        assert_eq!(
            b.resume(1, other, &retry, 1).unwrap_err(),
            BridgeError::State(StateError::Foreign)
        );
        let mut forged = retry_for(&result, "{}");
        forged.state = Some(forged.state.unwrap().replace("sp1.1.", "sp1.2."));
        assert_eq!(
            b.resume(2, call, &forged, 1).unwrap_err(),
            BridgeError::State(StateError::Forged)
        );
        assert_eq!(
            b.resume(1, call, &Retry::default(), 1).unwrap_err(),
            BridgeError::NoState
        );
        assert_eq!(
            b.resume(1, call, &retry, 1000).unwrap_err(),
            BridgeError::State(StateError::Expired)
        );
        assert_eq!(b.expire(1000).len(), 1);
        assert!(b.is_empty());
        // A missing response is reported per request.
        let result = b.open(1, call, 6, vec![b.held("d", "roots/list", None)], 0, 1000);
        let mut r = retry_for(&result, "{}");
        r.responses.clear();
        let resumed = b.resume(1, call, &r, 1).unwrap();
        assert!(resumed.answers[0].1.is_err());
        let _ = b.open(3, call, 9, vec![b.held("f", "roots/list", None)], 0, 1000);
        assert_eq!(b.drain_session(3).len(), 1);
        let _ = b.open(3, call, 10, vec![b.held("g", "roots/list", None)], 0, 1000);
        assert_eq!(b.drain_where(|u| *u == 10).len(), 1);
    }
}
