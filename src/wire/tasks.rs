//! Task ids (MCP 2025-11-25, experimental) across a shared child.
//!
//! A child's task ids are its own, and several sessions share the child, so
//! the client never sees them: a `CreateTaskResult` gets a daemon-minted id
//! registered with the session that asked ([`SessionLink::add_task`]), and
//! every later mention is translated back and forth: `tasks/get`,
//! `tasks/cancel` and `tasks/result` results (`taskId`, `task.taskId`, and
//! the `io.modelcontextprotocol/related-task` entry of `_meta`), and
//! `notifications/tasks/status`, which goes to the owning session only.
//! Tasks are parsed as JSON values: they are rare next to tool calls, and
//! only their ids change.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;

use super::connection::{ClientRequest, Connection, Rewrite};
use super::link::TaskRef;
use super::routes::TaskProgress;
use crate::jsonrpc::{self, Envelope};

const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Terminal task states: no more status or progress follows.
fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

impl Connection {
    /// The result of a task-related client request, with task ids in the
    /// client's space. `upstream_id` is the request's id on this child.
    pub(super) fn rewrite_task_result(
        self: &Arc<Self>,
        req: &ClientRequest,
        rewrite: &Rewrite,
        result: &RawValue,
        upstream_id: Option<u64>,
    ) -> String {
        let Ok(mut v) = serde_json::from_str::<Value>(result.get()) else {
            return result.get().to_string();
        };
        match rewrite {
            Rewrite::None => return result.get().to_string(),
            Rewrite::NewTask => {
                let Some(child) = v
                    .pointer("/task/taskId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    // The child ran it as a plain call after all.
                    return result.get().to_string();
                };
                let client = req.link.add_task(TaskRef {
                    server: self.ctx.server.clone(),
                    conn: Arc::downgrade(self),
                    child_id: child.clone(),
                });
                {
                    let mut routes = self.routes();
                    routes.prune();
                    routes
                        .tasks
                        .insert(child.clone(), (Arc::downgrade(&req.link), client.clone()));
                    if let (Some(token), Some(id)) = (&req.progress_token, upstream_id) {
                        routes.task_progress.insert(
                            id,
                            TaskProgress {
                                link: Arc::downgrade(&req.link),
                                token: token.clone(),
                                child_task: child.clone(),
                            },
                        );
                    }
                }
                tracing::debug!(server = %self.server(), session = req.link.id, task = %client, "task created");
                replace_task_ids(&mut v, &child, &client);
            }
            Rewrite::Task { child, client } => replace_task_ids(&mut v, child, client),
        }
        v.to_string()
    }

    /// `notifications/tasks/status` goes to the session that owns the task.
    pub(super) fn on_task_status(&self, env: &Envelope<'_>) {
        let Some(mut v) = env
            .params
            .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        else {
            return;
        };
        let Some(child) = v.get("taskId").and_then(Value::as_str).map(str::to_string) else {
            return;
        };
        let terminal = v
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(is_terminal);
        let owner = {
            let mut routes = self.routes();
            if terminal {
                routes.task_progress.retain(|_, t| t.child_task != child);
            }
            routes.tasks.get(&child).cloned()
        };
        let Some((link, client)) = owner else {
            tracing::debug!(server = %self.server(), task = %child, "status for a task no session owns");
            return;
        };
        let Some(link) = link.upgrade() else { return };
        replace_task_ids(&mut v, &child, &client);
        link.outbox.send(jsonrpc::notification(
            "notifications/tasks/status",
            Some(&v.to_string()),
        ));
    }
}

/// Replaces the child's task id by the client's wherever a task id appears
/// in a task-related result or notification.
pub fn replace_task_ids(v: &mut Value, child: &str, client: &str) {
    let swap = |slot: Option<&mut Value>| {
        if let Some(s) = slot {
            if s.as_str() == Some(child) {
                *s = Value::String(client.to_string());
            }
        }
    };
    swap(v.get_mut("taskId"));
    swap(v.pointer_mut("/task/taskId"));
    if let Some(meta) = v.get_mut("_meta").and_then(Value::as_object_mut) {
        swap(meta.get_mut(RELATED_TASK).and_then(|r| r.get_mut("taskId")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_ids_are_replaced_where_they_appear() {
        let mut v = json!({
            "taskId": "t1",
            "task": {"taskId": "t1", "status": "working"},
            "_meta": {RELATED_TASK: {"taskId": "t1"}, "other": {"taskId": "t1"}},
            "content": [{"type": "text", "text": "t1"}],
        });
        replace_task_ids(&mut v, "t1", "sp-x-1");
        assert_eq!(v["taskId"], "sp-x-1");
        assert_eq!(v["task"]["taskId"], "sp-x-1");
        assert_eq!(v["_meta"][RELATED_TASK]["taskId"], "sp-x-1");
        assert_eq!(v["_meta"]["other"]["taskId"], "t1", "only known places");
        assert_eq!(v["content"][0]["text"], "t1");
        let mut other = json!({"taskId": "t2"});
        replace_task_ids(&mut other, "t1", "sp-x-1");
        assert_eq!(other["taskId"], "t2");
    }
}
