//! The MRTR bridge never leaks one client's input to another client's call:
//! under random interleavings of children's requests arriving for calls of
//! several sessions, retries (with their own states, states seen by other
//! sessions, altered states, no state), expiry and sessions ending, every
//! held child request that gets an answer gets it from a retry of the very
//! session and call it was held for, carrying that session's response for
//! that request's key, at most once. (The end-to-end bridge through a real
//! daemon is in tests/e2e/era_interop.rs.)

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::Value;
use stdioproxy::era::bridge::{Bridge, BridgeError};
use stdioproxy::era::mrtr::Retry;
use stdioproxy::era::state::{call_fingerprint, StateKey};

const SESSIONS: u64 = 3;
const CALLS: u64 = 2;
const TTL: u64 = 50;

/// A held child request: who it was held for, and a serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ChildReq {
    session: u64,
    call: u64,
    serial: u64,
}

#[derive(Clone, Debug)]
enum Op {
    /// A child asks for input while serving `session`'s call `call`.
    Ask { session: u64, call: u64 },
    /// `session` retries its call `call` with the state of round `round`
    /// (of whichever session; index into every round opened so far),
    /// optionally altered.
    Retry {
        session: u64,
        call: u64,
        round: usize,
        alter: bool,
    },
    /// Time passes.
    Tick(u64),
    /// A session ends.
    End { session: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SESSIONS, 0..CALLS).prop_map(|(session, call)| Op::Ask { session, call }),
        4 => (0..SESSIONS, 0..CALLS, 0..16usize, prop::bool::weighted(0.15))
            .prop_map(|(session, call, round, alter)| Op::Retry { session, call, round, alter }),
        1 => (1..30u64).prop_map(Op::Tick),
        1 => (0..SESSIONS).prop_map(|session| Op::End { session }),
    ]
}

fn fingerprint(call: u64) -> u64 {
    call_fingerprint("tools/call", &format!("srv__tool{call}"))
}

/// The child call in flight upstream for (session, call).
fn upstream(session: u64, call: u64) -> u64 {
    session * 100 + call
}

proptest! {
    #![proptest_config(crate::config(512))]

    #[test]
    fn held_requests_are_answered_only_by_their_own_session(ops in prop::collection::vec(op(), 1..60)) {
        let bridge: Bridge<u64, ChildReq> = Bridge::new(std::sync::Arc::new(StateKey::from_bytes([9; 32])));
        let mut now = 0u64;
        let mut serial = 0u64;
        // Every input_required result sent so far: (session it was sent to, result).
        let mut rounds: Vec<(u64, String)> = Vec::new();
        let mut answered: HashSet<ChildReq> = HashSet::new();
        let mut ended: HashSet<u64> = HashSet::new();
        for op in ops {
            match op {
                Op::Ask { session, call } => {
                    if ended.contains(&session) { continue; }
                    serial += 1;
                    let req = ChildReq { session, call, serial };
                    let held = bridge.held(req, "elicitation/create", Some(&format!("{{\"message\":\"{serial}\"}}")));
                    if let Err(held) = bridge.queue(session, &upstream(session, call), held) {
                        let result = bridge.open(session, fingerprint(call), upstream(session, call), vec![held], now, TTL);
                        rounds.push((session, result));
                    }
                }
                Op::Retry { session, call, round, alter } => {
                    if ended.contains(&session) || rounds.is_empty() { continue; }
                    let (_, result) = &rounds[round % rounds.len()];
                    let v: Value = serde_json::from_str(result).unwrap();
                    let mut state = v["requestState"].as_str().unwrap().to_string();
                    if alter {
                        state.push('0');
                    }
                    // The retrying session answers every key with its own id.
                    let responses = v["inputRequests"].as_object().unwrap().keys()
                        .map(|k| (k.clone(), serde_json::from_str(&format!("{{\"from\":{session}}}")).unwrap()))
                        .collect();
                    let retry = Retry { responses, state: Some(state) };
                    match bridge.resume(session, fingerprint(call), &retry, now) {
                        Ok(resumed) => {
                            prop_assert!(!alter, "an altered state was accepted");
                            prop_assert_eq!(resumed.upstream, upstream(session, call));
                            for (held, answer) in resumed.answers {
                                prop_assert_eq!(held.child.session, session, "another session's request");
                                prop_assert_eq!(held.child.call, call, "another call's request");
                                prop_assert!(answered.insert(held.child), "answered twice: {:?}", held.child);
                                let a: Value = serde_json::from_str(answer.unwrap().get()).unwrap();
                                prop_assert_eq!(a["from"].as_u64(), Some(session));
                            }
                            // Queued requests open the next round, sent to the same session.
                            if !resumed.queued.is_empty() {
                                let result = bridge.open(session, fingerprint(call), resumed.upstream, resumed.queued, now, TTL);
                                rounds.push((session, result));
                            }
                        }
                        Err(BridgeError::State(_)) | Err(BridgeError::Gone) => {}
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
                Op::Tick(ms) => {
                    now += ms;
                    for r in bridge.expire(now) {
                        for h in r.requests.iter().chain(&r.queued) {
                            prop_assert!(!answered.contains(&h.child), "expired after being answered");
                        }
                    }
                }
                Op::End { session } => {
                    ended.insert(session);
                    for r in bridge.drain_session(session) {
                        for h in r.requests.iter().chain(&r.queued) {
                            prop_assert_eq!(h.child.session, session);
                        }
                    }
                }
            }
        }
    }
}
