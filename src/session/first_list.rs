//! A session's first `tools/list` while the daemon's first start is under
//! way.
//!
//! With no cached lists, a client that connects a second after the daemon
//! started would list only the servers that happened to be ready: a partial
//! catalog, followed by `list_changed`, which many clients ignore. So the
//! first `tools/list` of a session (without a cursor) is held while any
//! server the session can see has neither cached lists nor a decided first
//! start (ready, or failed once), for at most `[daemon] first_list_wait`.
//! A warm daemon, or one whose cache covers every server, answers at once.
//! What was still missing when the wait ended is logged.
//!
//! The wait runs in a task of its own and reports back through a oneshot
//! channel, so the session keeps serving everything else meanwhile; its
//! `tools` list_changed is not sent while the list is held (the answer is
//! the current view anyway).

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{Hub, Session};
use crate::catalog::ListKind;
use crate::wire::SessionLink;

/// A `tools/list` waiting for the first start.
pub(super) struct Held {
    id: Box<RawValue>,
    params: Option<Box<RawValue>>,
    since: Instant,
}

impl Session {
    /// Holds the session's first `tools/list` when servers it can see are
    /// still in their first start. Returns false when it should be answered
    /// now.
    pub(super) fn hold_first_list(&mut self, id: &RawValue, params: Option<&RawValue>) -> bool {
        if self.listed_tools || self.held.is_some() {
            return false;
        }
        self.listed_tools = true;
        let cursor = params
            .and_then(crate::jsonrpc::RawObject::parse)
            .and_then(|p| p.get_str("cursor"));
        let limit = self.hub.settings.get().first_list_wait.0;
        if cursor.is_some() || limit.is_zero() || unknown(&self.hub, &self.link).is_empty() {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        let (hub, link) = (self.hub.clone(), self.link.clone());
        tokio::spawn(async move {
            let all = async {
                for up in hub.supervisor.upstreams() {
                    if link.visible(&up.name) {
                        up.wait_known().await;
                    }
                }
            };
            let _ = tokio::time::timeout(limit, all).await;
            let _ = tx.send(unknown(&hub, &link));
        });
        self.held = Some(Held {
            id: id.to_owned(),
            params: params.map(ToOwned::to_owned),
            since: Instant::now(),
        });
        self.new_hold = Some(rx);
        true
    }

    /// Answers the held `tools/list`; `missing` are the servers that were
    /// still starting.
    pub(super) fn answer_held(&mut self, missing: Vec<String>) {
        let Some(held) = self.held.take() else {
            return;
        };
        let waited_ms = held.since.elapsed().as_millis() as u64;
        if missing.is_empty() {
            tracing::debug!(
                session = self.link.id,
                waited_ms,
                "first tools/list: every server is ready or failed"
            );
        } else {
            tracing::info!(session = self.link.id, waited_ms, missing = %missing.join(", "),
                "first tools/list answered while these servers were still starting; their tools follow with list_changed");
        }
        self.list(ListKind::Tools, &held.id, held.params.as_deref());
    }
}

/// The servers `link` can see whose first start is not decided yet and
/// that have no cached lists.
fn unknown(hub: &Arc<Hub>, link: &SessionLink) -> Vec<String> {
    hub.supervisor
        .upstreams()
        .iter()
        .filter(|u| link.visible(&u.name) && !u.is_known())
        .map(|u| u.name.to_string())
        .collect()
}
