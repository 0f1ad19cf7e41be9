//! The two eras of MCP and how the daemon bridges them.
//!
//! MCP up to `2025-11-25` (the *legacy* era) is a stateful session opened by
//! `initialize`; `2026-07-28` (the *modern* era) is stateless: every request
//! carries its protocol version and the client's capabilities in `_meta`,
//! `server/discover` replaces the handshake, results carry `resultType`, and
//! a server that needs input from the client answers `input_required`
//! instead of sending a request of its own (MRTR). The daemon speaks both to
//! clients, one era per session, decided by how the session opens; the
//! routing core (catalog, id maps, supervisor) does not care which.
//!
//! This module owns what is era-specific and free of routing state:
//!
//! - [`bridge`]: rounds of a legacy child's requests held for a modern
//!   client between its call and its retries;
//! - [`child`]: speaking to a modern child (discover, envelope, verdict key,
//!   its errors);
//! - [`meta`]: reading and validating a modern request's `_meta`;
//! - [`decorate`]: what a modern client's results carry besides the child's
//!   payload (`resultType`, `serverInfo`, cache hints), and the discover
//!   result;
//! - [`state`]: the `requestState` the daemon mints for an MRTR round trip
//!   it bridges (HMAC with a per-daemon key, expiry, bound to a session);
//! - [`listen`]: a session's `subscriptions/listen` requests and their tags;
//! - [`held`]: children's requests held while a modern client is asked for
//!   the input (the other half of the MRTR bridge);
//! - [`mrtr`]: the wire shapes of `input_required` results and retries;
//! - [`probe`]: finding out which era a child speaks;
//! - [`session`]: the era state a session's link carries.

pub mod bridge;
pub mod child;
pub mod decorate;
pub mod held;
pub mod listen;
pub mod meta;
pub mod mrtr;
pub mod probe;
pub mod session;
pub mod state;

use serde_json::value::RawValue;

use crate::jsonrpc::RawObject;

/// The modern protocol revision the daemon speaks.
pub const MODERN_VERSION: &str = "2026-07-28";

/// Modern revisions the daemon accepts from clients, newest first.
pub const MODERN_VERSIONS: &[&str] = &[MODERN_VERSION];

/// Reserved `_meta` keys of the modern era.
pub mod key {
    /// The request's protocol revision (required).
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// The client's capabilities for this request (required).
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// Who the client is (optional).
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    /// The most verbose log level the client wants for this request.
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    /// Who the server is, on every result.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    /// Which `subscriptions/listen` a notification belongs to.
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
}

/// Error codes of the modern era.
pub mod code {
    /// A required client capability is missing from the request's `_meta`.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// The request's protocol version is not served.
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// Which era a peer speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Era {
    /// `2024-11-05` to `2025-11-25`: `initialize`, one capability set per
    /// session, server→client requests.
    Legacy,
    /// `2026-07-28`: stateless, per-request `_meta`, MRTR.
    Modern,
}

impl Era {
    /// Lower-case name, as in logs and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        }
    }
}

/// The era a session's first request opens: `initialize` is legacy;
/// `server/discover`, or any request whose `_meta` names a protocol
/// version, is modern. Anything else (a legacy client that lists before
/// initializing, as TS SDK v1 servers allow) is legacy.
pub fn opening_era(method: &str, params: Option<&RawValue>) -> Era {
    if method == "initialize" {
        Era::Legacy
    } else if method == "server/discover" || carries_version(params) {
        Era::Modern
    } else {
        Era::Legacy
    }
}

/// True when `params._meta` has the modern protocol-version key.
pub fn carries_version(params: Option<&RawValue>) -> bool {
    // Cheap pre-check: most legacy requests have no such text at all.
    let Some(p) = params.filter(|p| p.get().contains(key::PROTOCOL_VERSION)) else {
        return false;
    };
    RawObject::parse(p)
        .and_then(|o| o.get("_meta"))
        .and_then(RawObject::parse)
        .is_some_and(|m| m.get(key::PROTOCOL_VERSION).is_some())
}

/// The params of a client's request as its child gets them: for a legacy
/// child, a modern client's reserved `_meta` keys removed (it would not
/// know them); a modern child's connection puts its own envelope on
/// (keeping the client's log level). `client_modern`: the session's era
/// (`link.era.is_modern()`), passed as a value so that era stays below the
/// wire (no import cycle through `wire::link`).
pub fn params_for_child(client_modern: bool, child_modern: bool, params: String) -> String {
    if client_modern && !child_modern && params.contains("io.modelcontextprotocol/") {
        meta::strip_for_legacy(&params)
    } else {
        params
    }
}

/// Requests that exist only in the legacy era: a modern session that sends
/// one gets -32600 (it cannot switch eras). `ping` and `logging/setLevel`
/// are among them: the modern era has no such methods. The 2025-11-25
/// `tasks/*` requests are not: a modern session keeps today's task handling
/// (the 2026-07-28 tasks extension is not mapped).
pub fn legacy_only(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe"
    )
}

/// Requests that exist only in the modern era: a legacy session that sends
/// one gets -32600.
pub fn modern_only(method: &str) -> bool {
    matches!(method, "server/discover" | "subscriptions/listen")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn the_opening_request_decides_the_era() {
        assert_eq!(opening_era("initialize", None), Era::Legacy);
        assert_eq!(opening_era("server/discover", None), Era::Modern);
        let modern = raw(
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}"#,
        );
        assert_eq!(opening_era("tools/list", Some(&modern)), Era::Modern);
        assert_eq!(opening_era("tools/list", Some(&raw("{}"))), Era::Legacy);
        // The key must be in _meta, not anywhere in the params.
        let elsewhere = raw(r#"{"arguments":{"io.modelcontextprotocol/protocolVersion":"x"}}"#);
        assert_eq!(opening_era("tools/call", Some(&elsewhere)), Era::Legacy);
        assert_eq!(opening_era("ping", None), Era::Legacy);
        assert_eq!(
            opening_era("initialize", Some(&modern)),
            Era::Legacy,
            "initialize is legacy"
        );
    }

    #[test]
    fn era_only_methods() {
        for m in [
            "initialize",
            "ping",
            "logging/setLevel",
            "resources/subscribe",
        ] {
            assert!(legacy_only(m) && !modern_only(m), "{m}");
        }
        for m in ["server/discover", "subscriptions/listen"] {
            assert!(modern_only(m) && !legacy_only(m), "{m}");
        }
        for m in [
            "tools/call",
            "tools/list",
            "resources/read",
            "completion/complete",
        ] {
            assert!(!modern_only(m) && !legacy_only(m), "{m}");
        }
    }
}
