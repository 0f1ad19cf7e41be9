//! `tasks/*` requests: each goes to the child instance that runs the task,
//! under the child's own task id; a session sees and reaches only the tasks
//! it created (see `wire::tasks` for the id translation in results).

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::route::send;
use super::Session;
use crate::jsonrpc::{self, code, RawObject};
use crate::wire::{Reply, Rewrite};

impl Session {
    /// `tasks/get`, `tasks/result`, `tasks/cancel`: to the child instance
    /// that owns the task, under its own task id.
    pub(super) fn task_request(&self, method: &str, id: &RawValue, params: Option<&RawValue>) {
        let obj = params.and_then(RawObject::parse);
        let Some(task_id) = obj.as_ref().and_then(|o| o.get_str("taskId")) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("{method} needs params.taskId (a string)"),
                None,
            );
        };
        let Some(task) = self.link.task(&task_id) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!("Unknown task: {task_id}"),
                None,
            );
        };
        let Some(conn) = task.conn.upgrade().filter(|c| !c.is_closed()) else {
            return self.error(
                Some(id),
                code::INVALID_PARAMS,
                &format!(
                    "Task {task_id} was lost: server '{}' restarted since it was created",
                    task.server
                ),
                None,
            );
        };
        let mut child = String::new();
        jsonrpc::push_json_str(&mut child, &task.child_id);
        let params = obj
            .as_ref()
            .map_or_else(String::new, |o| o.to_string_with(&[("taskId", &child)]));
        let Some(ticket) = self.begin(id) else { return };
        let rewrite = Rewrite::Task {
            child: task.child_id.clone(),
            client: task_id,
        };
        send(&self.link, &conn, method, id, ticket, params, rewrite);
    }

    /// `tasks/list`: this session's tasks only, each asked of its child.
    pub(super) fn tasks_list(&self, id: &RawValue) {
        let tasks = self.link.tasks();
        let link = self.link.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let mut listed = Vec::new();
            for (client_id, task) in tasks {
                let Some(conn) = task.conn.upgrade().filter(|c| !c.is_closed()) else {
                    continue;
                };
                let params = json!({ "taskId": task.child_id }).to_string();
                let timeout = conn.request_timeout();
                if let Ok(Reply::Result(r)) =
                    conn.request("tasks/get", Some(&params), timeout).await
                {
                    if let Ok(mut v) = serde_json::from_str::<Value>(r.get()) {
                        crate::wire::replace_task_ids(&mut v, &task.child_id, &client_id);
                        listed.push(v);
                    }
                }
            }
            let result = json!({ "tasks": listed }).to_string();
            link.outbox.send(link.era.result_line(id.get(), &result));
        });
    }
}
