//! What a session's link carries about its era: which era the session
//! opened in (decided once), its open `subscriptions/listen` requests, and
//! the log levels its modern requests in flight asked for.
//!
//! The link ([`crate::wire::SessionLink`]) holds one [`EraLink`]; children's
//! readers consult it when they deliver a result (decorated for a modern
//! client), a log message (only to a modern request that asked for that
//! level from that server) or a list change (tagged per listen).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use std::collections::HashMap;

use super::decorate::{self, CacheHint};
use super::listen::Listens;
use super::meta::Asks;
use super::Era;
use crate::jsonrpc;
use crate::loglevel::Level;

const UNDECIDED: u8 = 0;
const LEGACY: u8 = 1;
const MODERN: u8 = 2;

/// A log level one modern request in flight asked for.
struct LogWant {
    client_id: Box<str>,
    /// The server it went to, once known.
    server: Option<Arc<str>>,
    level: Level,
}

/// A session's era state.
#[derive(Default)]
pub struct EraLink {
    era: AtomicU8,
    /// The session's open listens (modern sessions only).
    pub listens: Listens,
    log_wants: Mutex<Vec<LogWant>>,
    /// The log level of the request being read, until it is routed.
    pending_want: Mutex<Option<LogWant>>,
    /// What the request being read may ask of the client (its `_meta`
    /// capabilities), until it is routed.
    pending_asks: Mutex<Option<(Box<str>, Asks)>>,
    /// Modern calls in flight that a child may answer `input_required`
    /// for (through the MRTR bridge), by client id.
    calls: Mutex<HashMap<Box<str>, MrtrCall>>,
}

/// A modern client's call as the MRTR bridge knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MrtrCall {
    /// Fingerprint of the call ([`super::state::call_fingerprint`]).
    pub call: u64,
    /// What the call's `_meta` says the client may be asked.
    pub asks: Asks,
}

impl EraLink {
    /// The session's era, once decided.
    pub fn era(&self) -> Option<Era> {
        match self.era.load(Ordering::Acquire) {
            LEGACY => Some(Era::Legacy),
            MODERN => Some(Era::Modern),
            _ => None,
        }
    }

    /// Decides the era unless it is decided already; returns the era in
    /// force.
    pub fn decide(&self, era: Era) -> Era {
        let want = match era {
            Era::Legacy => LEGACY,
            Era::Modern => MODERN,
        };
        match self
            .era
            .compare_exchange(UNDECIDED, want, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => era,
            Err(LEGACY) => Era::Legacy,
            Err(_) => Era::Modern,
        }
    }

    /// True for a modern session.
    pub fn is_modern(&self) -> bool {
        self.era.load(Ordering::Acquire) == MODERN
    }

    /// The response line for a result: decorated for a modern client.
    pub fn result_line(&self, id: &str, result: &str) -> String {
        if self.is_modern() {
            jsonrpc::response(id, &decorate::modern(result))
        } else {
            jsonrpc::response(id, result)
        }
    }

    /// The response line for a list or read result, with its cache hint for
    /// a modern client.
    pub fn cacheable_line(&self, id: &str, result: &str, hint: CacheHint) -> String {
        if self.is_modern() {
            jsonrpc::response(id, &decorate::modern_cacheable(result, hint))
        } else {
            jsonrpc::response(id, result)
        }
    }

    /// The modern request being read (`client_id`) wants log messages at
    /// `level` and above (`None`: it wants none). Takes effect once the
    /// request is routed to a server ([`EraLink::bind_server`]); a request
    /// that is refused or answered locally leaves nothing behind.
    pub fn note_request(&self, client_id: &str, level: Option<Level>, asks: Asks) {
        *self.pending_want.lock() = level.map(|level| LogWant {
            client_id: client_id.into(),
            server: None,
            level,
        });
        *self.pending_asks.lock() = Some((client_id.into(), asks));
    }

    /// Records that the request being read, `client_id`, is a call a child
    /// may answer with input requests (`tools/call`, `prompts/get`,
    /// `resources/read`) with fingerprint `call`.
    pub fn note_call(&self, client_id: &str, call: u64) {
        let asks = match self.pending_asks.lock().take() {
            Some((id, asks)) if &*id == client_id => asks,
            _ => return,
        };
        self.calls
            .lock()
            .insert(client_id.into(), MrtrCall { call, asks });
    }

    /// The modern call in flight under `client_id`, if it is one.
    pub fn mrtr_call(&self, client_id: &str) -> Option<MrtrCall> {
        self.calls.lock().get(client_id).copied()
    }

    /// Request `client_id` is routed to `server`; true when it wants log
    /// messages (so the server's level may need raising).
    pub fn bind_server(&self, client_id: &str, server: &Arc<str>) -> bool {
        let mut pending = self.pending_want.lock();
        if pending.as_ref().is_none_or(|w| &*w.client_id != client_id) {
            return false;
        }
        let Some(mut want) = pending.take() else {
            return false;
        };
        drop(pending);
        want.server = Some(server.clone());
        self.log_wants.lock().push(want);
        true
    }

    /// Request `client_id` is over.
    pub fn finished(&self, client_id: &str) {
        let mut wants = self.log_wants.lock();
        if !wants.is_empty() {
            wants.retain(|w| &*w.client_id != client_id);
        }
        drop(wants);
        let mut calls = self.calls.lock();
        if !calls.is_empty() {
            calls.remove(client_id);
        }
    }

    /// Every request is over (the session ended).
    pub fn clear(&self) {
        self.log_wants.lock().clear();
        self.calls.lock().clear();
    }

    /// The most verbose level a request in flight asked for.
    pub fn log_level(&self) -> Option<Level> {
        self.log_wants.lock().iter().map(|w| w.level).min()
    }

    /// True when a log message at `level` from `server` is wanted by a
    /// request in flight to that server. Messages of unknown level go to
    /// any request that asked for logs from that server.
    pub fn wants_log_from(&self, server: &str, level: Option<Level>) -> bool {
        self.log_wants
            .lock()
            .iter()
            .filter(|w| w.server.as_deref() == Some(server))
            .any(|w| level.is_none_or(|l| l >= w.level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_era_is_decided_once() {
        let e = EraLink::default();
        assert_eq!(e.era(), None);
        assert_eq!(e.decide(Era::Modern), Era::Modern);
        assert_eq!(e.decide(Era::Legacy), Era::Modern);
        assert!(e.is_modern());
        let line: serde_json::Value = serde_json::from_str(&e.result_line("1", "{}")).unwrap();
        assert_eq!(line["result"]["resultType"], "complete");
        let l = EraLink::default();
        assert_eq!(l.decide(Era::Legacy), Era::Legacy);
        assert_eq!(l.result_line("1", "{}"), jsonrpc::response("1", "{}"));
    }

    #[test]
    fn log_wants_follow_requests_in_flight() {
        let e = EraLink::default();
        let a: Arc<str> = "a".into();
        assert!(!e.wants_log_from("a", Some(Level::Error)));
        e.note_request("7", Some(Level::Warning), Asks::default());
        assert!(
            !e.wants_log_from("a", Some(Level::Error)),
            "server not known yet"
        );
        assert!(!e.bind_server("8", &a), "another request");
        assert!(e.bind_server("7", &a));
        assert!(!e.bind_server("7", &a), "bound once");
        e.note_request("9", Some(Level::Debug), Asks::default());
        e.note_request("10", None, Asks::default());
        assert!(
            !e.bind_server("9", &a),
            "replaced by the next request, which wants none"
        );
        assert!(e.wants_log_from("a", Some(Level::Error)));
        assert!(!e.wants_log_from("a", Some(Level::Info)));
        assert!(!e.wants_log_from("b", Some(Level::Error)));
        assert!(e.wants_log_from("a", None));
        assert_eq!(e.log_level(), Some(Level::Warning));
        e.finished("7");
        assert!(!e.wants_log_from("a", Some(Level::Error)));
        assert_eq!(e.log_level(), None);
    }

    #[test]
    fn calls_are_known_while_in_flight() {
        let e = EraLink::default();
        let asks = Asks {
            sampling: true,
            ..Asks::default()
        };
        e.note_request("1", None, asks);
        e.note_call("2", 99);
        assert_eq!(e.mrtr_call("2"), None, "another request's capabilities");
        e.note_request("3", None, asks);
        e.note_call("3", 99);
        assert_eq!(e.mrtr_call("3"), Some(MrtrCall { call: 99, asks }));
        e.finished("3");
        assert_eq!(e.mrtr_call("3"), None);
    }
}
