//! A child instance's routing state besides its pending map: which session
//! owns each of the child's tasks (and where their progress goes), which
//! session handles each request the child sent to a client, and which
//! sessions used the child most recently (who gets its next request).
//! Entries whose session is gone are pruned once a map grows large.
//!
//! The connection holds it under its own lock; the reader's handlers in
//! `inbound` and `tasks` fill and read it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use serde_json::value::RawValue;

use super::link::SessionLink;

/// Entries kept per map before dead ones are pruned.
const PRUNE_AT: usize = 4096;

/// Per-instance routing state besides the pending map.
#[derive(Default)]
pub struct Routes {
    /// Child task id -> (owning session, the session's task id).
    pub(super) tasks: HashMap<String, (Weak<SessionLink>, String)>,
    /// Upstream request id of a task-creating request -> where the task's
    /// progress goes (the token lives until the task ends).
    pub(super) task_progress: HashMap<u64, TaskProgress>,
    /// The child's request id (raw) -> (session handling it, its id there).
    pub(super) child_requests: HashMap<Box<str>, (Weak<SessionLink>, u64)>,
    /// URL-mode elicitation id -> session that got it.
    pub(super) elicitations: HashMap<String, Weak<SessionLink>>,
    /// Session id -> sequence number of its latest request to this child.
    pub(super) recent: HashMap<u64, u64>,
    seq: u64,
    /// A modern child's listens for resource updates: URI -> listen id.
    pub(super) uri_listens: HashMap<String, u64>,
}

/// Progress routing for a running task.
pub(super) struct TaskProgress {
    pub(super) link: Weak<SessionLink>,
    pub(super) token: Box<RawValue>,
    pub(super) child_task: String,
}

impl Routes {
    pub(super) fn note_requester(&mut self, session: u64) {
        self.seq += 1;
        self.recent.insert(session, self.seq);
        if self.recent.len() > PRUNE_AT {
            // Keep the most recent half.
            let mut seqs: Vec<u64> = self.recent.values().copied().collect();
            seqs.sort_unstable();
            let cut = seqs[seqs.len() / 2];
            self.recent.retain(|_, s| *s >= cut);
        }
    }

    pub(super) fn task_progress(&self, upstream_id: u64) -> Option<(Arc<SessionLink>, String)> {
        let tp = self.task_progress.get(&upstream_id)?;
        Some((tp.link.upgrade()?, tp.token.get().to_string()))
    }

    pub(super) fn prune(&mut self) {
        if self.tasks.len() > PRUNE_AT {
            self.tasks.retain(|_, (l, _)| l.strong_count() > 0);
        }
        if self.task_progress.len() > PRUNE_AT {
            self.task_progress.retain(|_, t| t.link.strong_count() > 0);
        }
        if self.child_requests.len() > PRUNE_AT {
            self.child_requests.retain(|_, (l, _)| l.strong_count() > 0);
        }
        if self.elicitations.len() > PRUNE_AT {
            self.elicitations.retain(|_, l| l.strong_count() > 0);
        }
    }
}
