//! The handshake of one child instance, within `startup_timeout` (the
//! lifecycle task bounds it): a legacy child's `initialize` (as client
//! `stdioproxy`, declaring `sampling` and `elicitation`, which the daemon
//! routes to a client, and `roots` only when the server has roots) and
//! `notifications/initialized`, or a modern child's `server/discover`; then
//! every page of each list the child declares.

use std::time::Duration;

use serde_json::Value;

use super::{InitInfo, Upstream};
use crate::catalog::{ListKind, Lists};
use crate::error::UpstreamError;
use crate::jsonrpc::RawObject;
use crate::wire::{Connection, Reply, CHILD_PROTOCOL_VERSION, SUPPORTED_VERSIONS};

impl Upstream {
    pub(super) async fn handshake(
        &self,
        conn: &Connection,
    ) -> Result<(InitInfo, Lists), UpstreamError> {
        let init = if conn.is_modern() {
            self.discover(conn).await?
        } else {
            self.initialize(conn).await?
        };
        // The outer startup timeout bounds the whole handshake.
        let forever = Duration::from_secs(24 * 3600);
        let mut lists = Lists::default();
        for kind in ListKind::ALL {
            if init.capabilities.get(kind.capability()).is_none() {
                continue;
            }
            match self.list_with_hint(conn, kind, forever).await {
                Ok(items) => *lists.get_mut(kind) = items,
                // Tools are what clients come for: a server that cannot list
                // them is not ready. The other lists are optional extras.
                Err(e) if kind == ListKind::Tools => return Err(e),
                Err(e) => tracing::warn!(server = %self.name, list = kind.method(),
                    "cannot read the list; serving none: {e}"),
            }
        }
        if conn.is_modern() {
            conn.listen_upstream();
        }
        Ok((init, lists))
    }

    /// The legacy handshake: `initialize`, `notifications/initialized`.
    async fn initialize(&self, conn: &Connection) -> Result<InitInfo, UpstreamError> {
        let mut capabilities = serde_json::json!({
            "sampling": {},
            "elicitation": { "form": {}, "url": {} },
        });
        if self.ctx.roots().is_some() || self.ctx.roots_owner().is_some() {
            capabilities["roots"] = serde_json::json!({ "listChanged": true });
        }
        let params = serde_json::json!({
            "protocolVersion": CHILD_PROTOCOL_VERSION,
            "capabilities": capabilities,
            "clientInfo": { "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") },
        })
        .to_string();
        // The outer startup timeout bounds the whole handshake.
        let forever = Duration::from_secs(24 * 3600);
        let result = match conn.request("initialize", Some(&params), forever).await? {
            Reply::Result(r) => r,
            Reply::Error(e) => {
                self.refused_initialize(e.get());
                return Err(UpstreamError::Rpc(e.get().to_string()));
            }
        };
        // Only the members the daemon reads are parsed, so an odd value
        // elsewhere (a number no f64 holds) does not fail the handshake.
        let v = RawObject::parse(&result)
            .ok_or_else(|| UpstreamError::Protocol("initialize result is not an object".into()))?;
        let value = |key: &str| {
            v.get(key)
                .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                .unwrap_or(Value::Null)
        };
        let init = InitInfo {
            protocol_version: v.get_str("protocolVersion").unwrap_or_default(),
            capabilities: value("capabilities"),
            server_info: value("serverInfo"),
            instructions: v.get_str("instructions"),
        };
        if !SUPPORTED_VERSIONS.contains(&init.protocol_version.as_str()) {
            tracing::warn!(server = %self.name, version = %init.protocol_version,
                "server answered with a protocol version stdioproxy does not know; continuing");
        }
        conn.notify("notifications/initialized", None).await?;
        Ok(init)
    }
}
