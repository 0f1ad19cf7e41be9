//! The fixture's MCP surface beyond tools: prompts, completions, resources
//! (with templates and subscriptions), logging, tasks, and requests to the
//! client. Each piece is as small as a test needs and fully deterministic.
//!
//! - Prompts: `greet {who}` (answers "Hello <who> from <NAME>") and
//!   `odd.prompt name` (a name the proxy must sanitise).
//! - Completions: `ref/prompt greet` argument `who` completes from
//!   alice/albert/bob; `ref/resource` on the item template from 1/2/3.
//! - Resources: `fixture://<NAME>/readme` (listed), template
//!   `fixture://<NAME>/items/{id}`, and `fixture://<NAME>/hidden/<x>`
//!   (readable but neither listed nor templated, for fallback routing).
//!   Anything else is -32002. Subscriptions are recorded; with
//!   `FIXTURE_HANG_SUBSCRIBE=<uri>`, a subscribe to that URI is never answered
//!   (a child wedged in one call).
//! - Logging: `logging/setLevel` is recorded; messages below it are not sent.
//! - Tasks: a `tools/call` with `params.task` runs in the background and
//!   answers a `CreateTaskResult`; `tasks/get|result|list|cancel` and
//!   `notifications/tasks/status` on completion.
//!
//! Tools (listed by [`tools`]): `log {level, data, logger?}`, `log_level {}`,
//! `touch {uri}` (resources/updated if subscribed), `subscriptions {}`,
//! `ask {method, params?, cancel_after_ms?}` (sends a request to the client,
//! answers with the client's response as JSON text, or "cancelled" after
//! sending notifications/cancelled), `add_resource {name}` (adds a listed
//! resource and sends resources/list_changed).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::{lock, RpcError, Server, INVALID_PARAMS};

const RESOURCE_NOT_FOUND: i64 = -32002;
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// State of the extra surface.
#[derive(Default)]
pub struct Surface {
    subscribed: Mutex<BTreeSet<String>>,
    log_level: Mutex<Option<usize>>,
    extra_resources: Mutex<Vec<String>>,
    tasks: Mutex<HashMap<String, Task>>,
    task_done: Condvar,
    next_task: AtomicU64,
    /// Requests sent to the client, waiting for its response.
    asked: Mutex<HashMap<String, mpsc::Sender<Value>>>,
    next_ask: AtomicU64,
}

#[derive(Clone)]
struct Task {
    status: &'static str,
    result: Option<Result<Value, (i64, String)>>,
}

fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Capabilities the fixture declares besides tools.
pub fn capabilities() -> Value {
    json!({
        "logging": {},
        "completions": {},
        "prompts": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}},
    })
}

/// Tool definitions of this module.
pub fn tools() -> Vec<Value> {
    let string = json!({"type": "string"});
    let def = |name: &str, description: &str, props: Value| {
        json!({"name": name, "description": description,
               "inputSchema": {"type": "object", "properties": props}})
    };
    vec![
        def(
            "log",
            "Sends notifications/message",
            json!({"level": string, "data": string, "logger": string}),
        ),
        def("log_level", "The level set by logging/setLevel", json!({})),
        def(
            "touch",
            "Sends resources/updated for a subscribed uri",
            json!({"uri": string}),
        ),
        def("subscriptions", "The subscribed URIs", json!({})),
        def(
            "ask",
            "Sends a request to the client and returns its response",
            json!({"method": string, "params": {"type": "object"}, "cancel_after_ms": {"type": "integer"}}),
        ),
        def(
            "add_resource",
            "Adds a listed resource and sends resources/list_changed",
            json!({"name": string}),
        ),
    ]
}

/// How a request of this module was handled.
pub enum Handled {
    /// Answer with this.
    Reply(Result<Value, RpcError>),
    /// A thread answers later.
    Deferred,
}

impl Server {
    /// Requests of the extra surface; `None` when `method` is not one.
    pub fn handle_surface_request(
        self: &Arc<Self>,
        id: &Value,
        method: &str,
        params: &Value,
    ) -> Option<Handled> {
        let s = &self.surface;
        Some(Handled::Reply(match method {
            "prompts/list" => Ok(json!({"prompts": [
                {"name": "greet", "description": "Greets someone",
                 "arguments": [{"name": "who", "required": true}]},
                {"name": "odd.prompt name", "description": "A name to sanitise"},
            ]})),
            "prompts/get" => self.get_prompt(params),
            "completion/complete" => Ok(complete(params)),
            "resources/list" => {
                let mut resources = vec![json!({
                    "uri": format!("fixture://{}/readme", self.name),
                    "name": "readme",
                    "mimeType": "text/plain",
                })];
                for name in lock(&s.extra_resources).iter() {
                    resources.push(
                        json!({"uri": format!("fixture://{}/{name}", self.name), "name": name}),
                    );
                }
                Ok(json!({"resources": resources}))
            }
            "resources/templates/list" => Ok(json!({"resourceTemplates": [{
                "uriTemplate": format!("fixture://{}/items/{{id}}", self.name),
                "name": "item",
            }]})),
            "resources/read" => self.read(params),
            "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                    return Some(Handled::Reply(Err(RpcError::new(
                        INVALID_PARAMS,
                        "uri is required",
                    ))));
                };
                if method == "resources/subscribe"
                    && std::env::var("FIXTURE_HANG_SUBSCRIBE").is_ok_and(|u| u == uri)
                {
                    eprintln!("fixture {}: holding resources/subscribe {uri}", self.name);
                    return Some(Handled::Deferred);
                }
                let mut set = lock(&s.subscribed);
                if method == "resources/subscribe" {
                    set.insert(uri.to_string());
                } else {
                    set.remove(uri);
                }
                Ok(json!({}))
            }
            "logging/setLevel" => match params
                .get("level")
                .and_then(Value::as_str)
                .and_then(level_rank)
            {
                Some(rank) => {
                    *lock(&s.log_level) = Some(rank);
                    Ok(json!({}))
                }
                None => Err(RpcError::new(INVALID_PARAMS, "bad level")),
            },
            "tasks/get" => self.task_op(params, |id, t| Ok(task_json(id, t))),
            "tasks/cancel" => {
                let r = self.task_op(params, |id, t| {
                    t.status = "cancelled";
                    Ok(task_json(id, t))
                });
                s.task_done.notify_all();
                r
            }
            "tasks/list" => {
                let tasks = lock(&s.tasks);
                let list: Vec<Value> = tasks.iter().map(|(id, t)| task_json(id, t)).collect();
                Ok(json!({"tasks": list}))
            }
            "tasks/result" => {
                // Blocks until the task ends: run on its own thread.
                let (server, id, params) = (self.clone(), id.clone(), params.clone());
                thread::spawn(move || {
                    let reply = server.task_result(&params);
                    server.respond(id, reply);
                });
                return Some(Handled::Deferred);
            }
            _ => return None,
        }))
    }

    fn get_prompt(&self, params: &Value) -> Result<Value, RpcError> {
        match params.get("name").and_then(Value::as_str) {
            Some("greet") => {
                let who = params
                    .pointer("/arguments/who")
                    .and_then(Value::as_str)
                    .unwrap_or("nobody");
                Ok(json!({"messages": [{"role": "user", "content": {
                    "type": "text", "text": format!("Hello {who} from {}", self.name)}}]}))
            }
            Some("odd.prompt name") => Ok(json!({"messages": [{"role": "user", "content": {
                "type": "text", "text": "odd"}}]})),
            other => Err(RpcError::new(
                INVALID_PARAMS,
                format!("Unknown prompt: {other:?}"),
            )),
        }
    }

    fn read(&self, params: &Value) -> Result<Value, RpcError> {
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
        let prefix = format!("fixture://{}/", self.name);
        let text = match uri.strip_prefix(&prefix) {
            Some("readme") => format!("readme of {}", self.name),
            Some(rest) if rest.starts_with("items/") => {
                format!("item {} of {}", &rest["items/".len()..], self.name)
            }
            Some(rest) if rest.starts_with("hidden/") => format!("hidden of {}", self.name),
            Some(rest)
                if lock(&self.surface.extra_resources)
                    .iter()
                    .any(|r| r == rest) =>
            {
                format!("{rest} of {}", self.name)
            }
            _ => {
                return Err(RpcError::new(
                    RESOURCE_NOT_FOUND,
                    format!("Resource not found: {uri}"),
                ))
            }
        };
        Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}))
    }

    fn task_op(
        &self,
        params: &Value,
        f: impl FnOnce(&str, &mut Task) -> Result<Value, RpcError>,
    ) -> Result<Value, RpcError> {
        let id = params.get("taskId").and_then(Value::as_str).unwrap_or("");
        let mut tasks = lock(&self.surface.tasks);
        match tasks.get_mut(id) {
            Some(t) => f(id, t),
            None => Err(RpcError::new(INVALID_PARAMS, format!("Unknown task: {id}"))),
        }
    }

    fn task_result(&self, params: &Value) -> Result<Value, RpcError> {
        let id = params
            .get("taskId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let s = &self.surface;
        let mut tasks = lock(&s.tasks);
        loop {
            match tasks.get(&id) {
                None => return Err(RpcError::new(INVALID_PARAMS, format!("Unknown task: {id}"))),
                Some(Task {
                    result: Some(r), ..
                }) => {
                    return match r.clone() {
                        Ok(mut v) => {
                            v["_meta"] =
                                json!({"io.modelcontextprotocol/related-task": {"taskId": id}});
                            Ok(v)
                        }
                        Err((code, message)) => Err(RpcError::new(code, message)),
                    }
                }
                Some(Task {
                    status: "cancelled",
                    ..
                }) => return Err(RpcError::new(INVALID_PARAMS, "task was cancelled")),
                Some(_) => {}
            }
            tasks = s
                .task_done
                .wait(tasks)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// A `tools/call` with `params.task`: answers a CreateTaskResult now and
    /// runs the call in the background.
    pub fn start_task(self: &Arc<Self>, id: Value, params: Value) {
        let s = &self.surface;
        let task_id = format!("task-{}", s.next_task.fetch_add(1, Ordering::Relaxed) + 1);
        let task = Task {
            status: "working",
            result: None,
        };
        lock(&s.tasks).insert(task_id.clone(), task.clone());
        self.respond(id, Ok(json!({"task": task_json(&task_id, &task)})));
        let server = self.clone();
        thread::spawn(move || {
            let outcome = server.call_tool(&params);
            let status = {
                let mut tasks = lock(&server.surface.tasks);
                let Some(t) = tasks.get_mut(&task_id) else {
                    return;
                };
                if t.status == "cancelled" {
                    return;
                }
                t.status = "completed";
                t.result = Some(outcome.map_err(|e| (e.code, e.message)));
                task_json(&task_id, t)
            };
            server.surface.task_done.notify_all();
            server.notify("notifications/tasks/status", Some(status));
        });
    }

    /// The extra tools; `None` when `name` is not one of them.
    pub fn call_surface_tool(&self, name: &str, args: &Value) -> Option<Value> {
        let s = &self.surface;
        let text = |t: String| json!({"content": [{"type": "text", "text": t}]});
        let arg = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Some(match name {
            "log" => {
                let level = arg("level");
                let wanted = *lock(&s.log_level);
                let rank = level_rank(&level).unwrap_or(0);
                if wanted.is_none_or(|w| rank >= w) {
                    let mut params = json!({"level": level, "data": arg("data")});
                    if args.get("logger").is_some() {
                        params["logger"] = json!(arg("logger"));
                    }
                    self.notify("notifications/message", Some(params));
                    text("sent".into())
                } else {
                    text("filtered".into())
                }
            }
            "log_level" => text(
                lock(&s.log_level)
                    .map_or("<unset>", |r| LEVELS[r])
                    .to_string(),
            ),
            "touch" => {
                let uri = arg("uri");
                if lock(&s.subscribed).contains(&uri) {
                    self.notify("notifications/resources/updated", Some(json!({"uri": uri})));
                    text("updated".into())
                } else {
                    text("not subscribed".into())
                }
            }
            "subscriptions" => text(json!(*lock(&s.subscribed)).to_string()),
            "add_resource" => {
                lock(&s.extra_resources).push(arg("name"));
                self.notify("notifications/resources/list_changed", None);
                text("added".into())
            }
            "ask" => text(self.ask(args)),
            _ => return None,
        })
    }

    /// Sends a request to the client and waits for its response.
    pub fn ask(&self, args: &Value) -> String {
        let s = &self.surface;
        let id = format!("fx-{}", s.next_ask.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::channel();
        lock(&s.asked).insert(id.clone(), tx);
        let mut request = json!({"jsonrpc": "2.0", "id": id,
            "method": args.get("method").cloned().unwrap_or(json!("ping"))});
        if let Some(p) = args.get("params") {
            request["params"] = p.clone();
        }
        self.send(&request);
        if let Some(ms) = args.get("cancel_after_ms").and_then(Value::as_u64) {
            thread::sleep(Duration::from_millis(ms));
            lock(&s.asked).remove(&id);
            self.notify(
                "notifications/cancelled",
                Some(json!({"requestId": id, "reason": "the fixture gave up"})),
            );
            return "cancelled".into();
        }
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(response) => response.to_string(),
            Err(_) => "no response".into(),
        }
    }

    /// A response from the client to one of our requests.
    pub fn on_client_response(&self, id: &Value, message: Value) -> bool {
        let Some(key) = id.as_str() else { return false };
        match lock(&self.surface.asked).remove(key) {
            Some(tx) => {
                let _ = tx.send(message);
                true
            }
            None => false,
        }
    }
}

fn task_json(id: &str, t: &Task) -> Value {
    json!({"taskId": id, "status": t.status, "createdAt": "2026-01-01T00:00:00Z",
           "lastUpdatedAt": "2026-01-01T00:00:00Z", "ttl": 60000, "pollInterval": 100})
}

fn complete(params: &Value) -> Value {
    let prefix = params
        .pointer("/argument/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let pool: &[&str] = match params.pointer("/ref/type").and_then(Value::as_str) {
        Some("ref/prompt") if params.pointer("/ref/name") == Some(&json!("greet")) => {
            &["alice", "albert", "bob"]
        }
        Some("ref/resource") => &["1", "2", "3"],
        _ => &[],
    };
    let values: Vec<&str> = pool
        .iter()
        .copied()
        .filter(|v| v.starts_with(prefix))
        .collect();
    json!({"completion": {"values": values, "total": values.len(), "hasMore": false}})
}
