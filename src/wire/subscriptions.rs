//! Resource subscriptions of one server, counted across sessions.
//!
//! Many sessions may subscribe to the same URI of a shared child; the child
//! gets one `resources/subscribe` when the first session subscribes and one
//! `resources/unsubscribe` when the last one leaves (or disconnects), and its
//! `notifications/resources/updated` reaches exactly the sessions subscribed
//! to that URI. The set survives child restarts: a new instance is
//! re-subscribed to every URI that still has subscribers. A 2026-07-28
//! child, which has no `resources/subscribe`, gets a `subscriptions/listen`
//! for the URI instead, cancelled for the unsubscribe.
//!
//! Subscribe and unsubscribe calls to the child are serialised per URI by an
//! async lock, so two sessions racing on one URI never send two subscribes,
//! while a child that never answers one URI's call holds up only that URI:
//! every other URI's subscribe and unsubscribe goes on. A URI's lock exists
//! only while a call on it is under way or waiting. The subscriber map itself
//! is behind a plain lock so the child's reader can look it up without
//! waiting.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::OwnedMutexGuard;

use super::connection::{Connection, Reply};
use crate::error::UpstreamError;

/// Subscribers per URI.
#[derive(Default)]
pub struct Subscriptions {
    subscribers: Mutex<HashMap<String, BTreeSet<u64>>>,
    /// Per URI, the lock its calls to the child hold (see the module docs).
    ops: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The right to call the child about one URI; dropping it lets the next
/// caller for that URI go, and forgets the URI's lock when nobody waits.
struct UriTurn<'a> {
    subs: &'a Subscriptions,
    uri: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for UriTurn<'_> {
    fn drop(&mut self) {
        let mut ops = self.subs.ops.lock();
        // Ours and the map's: nobody else holds or waits for this URI.
        if ops
            .get(&self.uri)
            .is_some_and(|m| Arc::strong_count(m) == 2)
        {
            ops.remove(&self.uri);
        }
        self.guard = None;
    }
}

/// Why a subscribe or unsubscribe failed.
pub enum SubscribeError {
    /// The child answered with this JSON-RPC error object (raw).
    Rpc(Box<serde_json::value::RawValue>),
    /// The child could not be asked.
    Upstream(UpstreamError),
}

impl Subscriptions {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, BTreeSet<u64>>> {
        self.subscribers.lock()
    }

    /// Waits for this URI's turn to call the child.
    async fn turn(&self, uri: &str) -> UriTurn<'_> {
        let op = self.ops.lock().entry(uri.to_string()).or_default().clone();
        let guard = op.lock_owned().await;
        UriTurn {
            subs: self,
            uri: uri.to_string(),
            guard: Some(guard),
        }
    }

    /// Subscribes `session` to `uri`; asks the child only for the first
    /// subscriber of a URI.
    pub async fn subscribe(
        &self,
        conn: &Connection,
        session: u64,
        uri: &str,
        timeout: Duration,
    ) -> Result<(), SubscribeError> {
        let _turn = self.turn(uri).await;
        if let Some(set) = self.lock().get_mut(uri) {
            set.insert(session);
            return Ok(());
        }
        call(conn, "resources/subscribe", uri, timeout).await?;
        self.lock()
            .entry(uri.to_string())
            .or_default()
            .insert(session);
        Ok(())
    }

    /// Unsubscribes `session` from `uri`; tells the child when it was the
    /// last subscriber.
    pub async fn unsubscribe(
        &self,
        conn: Option<&Connection>,
        session: u64,
        uri: &str,
        timeout: Duration,
    ) -> Result<(), SubscribeError> {
        let _turn = self.turn(uri).await;
        let last = {
            let mut map = self.lock();
            let Some(set) = map.get_mut(uri) else {
                return Ok(());
            };
            set.remove(&session);
            let last = set.is_empty();
            if last {
                map.remove(uri);
            }
            last
        };
        match conn {
            Some(conn) if last => call(conn, "resources/unsubscribe", uri, timeout).await,
            _ => Ok(()),
        }
    }

    /// Drops every subscription of a session that went away.
    pub async fn remove_session(&self, conn: Option<&Connection>, session: u64, timeout: Duration) {
        let uris: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, set)| set.contains(&session))
            .map(|(uri, _)| uri.clone())
            .collect();
        for uri in uris {
            let _ = self.unsubscribe(conn, session, &uri, timeout).await;
        }
    }

    /// Re-subscribes a new child instance to every URI that has subscribers.
    pub async fn resubscribe(&self, conn: &Connection, timeout: Duration) {
        let uris: Vec<String> = self.lock().keys().cloned().collect();
        for uri in uris {
            let _turn = self.turn(&uri).await;
            if !self.lock().contains_key(&uri) {
                continue; // its last subscriber left meanwhile
            }
            if let Err(e) = call(conn, "resources/subscribe", &uri, timeout).await {
                let why = match e {
                    SubscribeError::Rpc(r) => r.get().to_string(),
                    SubscribeError::Upstream(e) => e.to_string(),
                };
                tracing::warn!(server = %conn.server(), uri = %uri,
                    "cannot renew a resource subscription after a restart: {why}");
            }
        }
    }

    /// The sessions subscribed to `uri`.
    pub fn subscribers(&self, uri: &str) -> Vec<u64> {
        self.lock()
            .get(uri)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Number of URIs with subscribers.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn call(
    conn: &Connection,
    method: &str,
    uri: &str,
    timeout: Duration,
) -> Result<(), SubscribeError> {
    if conn.is_modern() {
        // 2026-07-28 has no resources/subscribe: a listen per URI instead.
        conn.listen_resource(uri, method == "resources/subscribe");
        return Ok(());
    }
    let params = json!({ "uri": uri }).to_string();
    match conn.request(method, Some(&params), timeout).await {
        Ok(Reply::Result(_)) => Ok(()),
        Ok(Reply::Error(e)) => Err(SubscribeError::Rpc(e)),
        Err(e) => Err(SubscribeError::Upstream(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_per_uri_and_forgotten_when_done() {
        let subs = Subscriptions::default();
        let a = subs.turn("a").await;
        // Another URI's turn does not wait for a's.
        let b = tokio::time::timeout(Duration::from_secs(5), subs.turn("b"))
            .await
            .expect("b waited for a");
        // The same URI's does.
        let waited = tokio::time::timeout(Duration::from_millis(50), subs.turn("a")).await;
        assert!(waited.is_err(), "a second turn on a while a is held");
        assert_eq!(subs.ops.lock().len(), 2);
        drop(a);
        drop(b);
        assert!(subs.ops.lock().is_empty(), "locks outlived their turns");
        let _again = subs.turn("a").await;
    }
}
