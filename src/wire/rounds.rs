//! What one server's MRTR bridge holds (see `mrtr` and
//! [`crate::era::bridge`]): the child's call a round waits on, the child's
//! request held for a client, and the bridge type the server's
//! [`super::Context`] keeps. Apart from `mrtr` so that the context does not
//! import the bridge's session-side code (an import cycle through the
//! session link).

use std::sync::Weak;

use serde_json::value::RawValue;

use super::connection::Connection;
use crate::era::bridge::Bridge;

/// The child's call a round waits on.
#[derive(Clone, Debug)]
pub struct ChildCall {
    /// The child instance.
    pub conn: Weak<Connection>,
    /// Its id there.
    pub id: u64,
    /// The client's id of the call this round answered (raw), so that a
    /// `notifications/cancelled` for it ends the round.
    pub client_id: Box<str>,
}

impl PartialEq for ChildCall {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && Weak::ptr_eq(&self.conn, &other.conn)
    }
}

/// A child's request held for a client.
#[derive(Debug)]
pub struct ChildAsk {
    /// The child instance that asked.
    pub conn: Weak<Connection>,
    /// Its id for the request, raw.
    pub child_id: Box<RawValue>,
}

/// Every server's bridge type.
pub type ServerBridge = Bridge<ChildCall, ChildAsk>;
