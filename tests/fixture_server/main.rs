//! `stdioproxy-fixture-server`: the integration tests' scriptable MCP child.
//!
//! The tests configure it as a `[servers.X]` command and steer its behaviour
//! through environment variables and tool calls. It speaks newline-delimited
//! JSON-RPC 2.0 on stdin/stdout (one compact JSON message per line) and writes
//! diagnostics to stderr only. Lines that are not JSON objects are reported on
//! stderr and skipped; they never get an answer.
//!
//! On start it prints `fixture <NAME> started pid=<pid>` to stderr.
//!
//! # Environment knobs
//! - `FIXTURE_NAME=<name>`: `serverInfo.name` and the name in messages (default `fixture`).
//! - `FIXTURE_EXIT_AT_START=<code>`: print `fixture exiting at start` and exit with `code`
//!   before reading anything.
//! - `FIXTURE_STARTUP_DELAY_MS=<n>`: sleep `n` ms before answering anything.
//! - `FIXTURE_IGNORE_PING=1`: never answer `ping` requests.
//! - `FIXTURE_IGNORE_SIGTERM=1`: ignore SIGTERM (so only SIGKILL stops it).
//! - `FIXTURE_IGNORE_EOF=1`: on stdin EOF keep running (sleeping) instead of exiting 0.
//! - `FIXTURE_EXTRA_TOOLS=<n>`: add tools `tool_0`..`tool_{n-1}`, each answering its own name.
//! - `FIXTURE_TOOL_NAMES=<a,b,...>`: add tools with exactly these names, each answering
//!   `called <name>`.
//! - `FIXTURE_PAGE_SIZE=<n>`: paginate `tools/list` with an opaque `nextCursor`
//!   (default: one page).
//! - `FIXTURE_INSTRUCTIONS=<text>`: `instructions` in the initialize result.
//! - `FIXTURE_RAW_TOOL=<json>`: one more tool definition, given as raw JSON text and
//!   written into `tools/list` byte for byte (for JSON a `serde_json::Value` cannot hold,
//!   such as the number `1e999`).
//! - `FIXTURE_INSTANCE=1`: also list `instance` (below), for the tests of per-client and
//!   per-workspace instances (unlisted by default, like the hostile tools).
//! - `FIXTURE_TOOLS_ONLY=1`: declare only the `tools` capability (no prompts,
//!   resources, completions, logging or tasks), like many real servers.
//! - `FIXTURE_HOSTILE=1`: also list the tools that make the fixture a hostile peer
//!   (`raw`, `reply`, `flood`; marked (hostile) below). They are unlisted by default so that tool
//!   counts in other tests do not depend on them.
//!
//! # Requests
//! `initialize` (echoes the client's protocol version when it is one of
//! [`SUPPORTED_VERSIONS`], else answers [`LATEST_VERSION`]; records the client's
//! capabilities), `ping`, `tools/list`, `tools/call` (with `params.task`: as a
//! task), and the requests of [`surface`]. Anything else gets
//! `-32601 Method not found: <method>`. Ids (string or integer) are echoed back
//! exactly as received. Notifications are never answered (`notifications/roots/list_changed`
//! prints `fixture <NAME> pid=<pid>: roots changed` to stderr); `notifications/cancelled`
//! is only recorded: the call it names still completes and answers, so tests can
//! check that the proxy drops late responses.
//!
//! # Tools
//! Each `tools/call` runs on its own thread, so a `sleep` never blocks other requests.
//! - `echo {text}`: the text, plus `structuredContent` and `_meta` (`fixture/server`).
//!   Its definition also carries `title`, `annotations`, `outputSchema` and an unknown
//!   `x-fixture-extra` field, to check that the proxy passes definitions through verbatim.
//! - `add {a, b}`: the sum as text, e.g. `5`.
//! - `sleep {ms, tag?}`: sleeps, then `slept <ms>` (`slept <ms> <tag>` with a tag, so
//!   concurrent sleeps can be told apart).
//! - `whoami {}`: `<NAME> <pid>`.
//! - `env {name}`: the variable's value or `<unset>`.
//! - `crash {code?}`: exits at once with `code` (default 3), answering nothing.
//! - `stderr {text}`: writes `text` as one stderr line, answers `ok`.
//! - `add_tool {name}`: adds a tool (answering `called <name>`), sends
//!   `notifications/tools/list_changed`, then answers `added <name>`.
//! - `progress {steps, ms?}`: with `params._meta.progressToken`, sends `steps`
//!   `notifications/progress` (`progress` 1..=steps, `total` steps), waiting `ms`
//!   (default 10) after each, then answers `done <steps>`.
//! - `spawn_grandchild {}`: spawns `sleep 1000` (stdio to /dev/null, never killed by
//!   the fixture) and answers its pid, for process-group cleanup tests.
//! - `hang_pings {}`: from now on `ping` is never answered; answers `ok`.
//! - `big {bytes}`: a text of that many `x`.
//! - `garbage {}`: writes the line `this is not json` to stdout, then answers `ok`.
//! - `raw {text?, hex?}` (hostile): writes `text` (or the bytes spelled by `hex`, which may be
//!   invalid UTF-8) plus a newline to stdout verbatim, then answers `ok`: any hostile
//!   line a test needs a child to print.
//! - `endless {}` (hostile): writes `x` to stdout without ever ending the line, until
//!   stdout fails (the proxy kills it); answers nothing.
//! - `stop_reading {}` (hostile): answers `ok`, then stops reading stdin (after at most
//!   one more line) while staying alive, like a child wedged in a blocking call.
//! - `reply {json}` (hostile): answers the call with `json` parsed as the whole `result`
//!   (e.g. `null`).
//! - `flood {count, kind?}` (hostile): sends `count` notifications back to back, then answers
//!   `flooded <count>`. `kind` is `message` (default: `notifications/message`, level
//!   info), `progress` (`notifications/progress` for this call's progressToken, or
//!   none without one), or `bogus` (progress with tokens nobody issued and params
//!   that are not objects).
//! - `client_capabilities {}`: the capabilities the client declared, as JSON text.
//! - `instance {}` (with `FIXTURE_INSTANCE=1`): which process this is and what it was
//!   given, as JSON text: `{"name", "pid", "cwd", "roots"}`. `roots` is the client's
//!   answer to a `roots/list` this tool sends (its `result`, or `{"error": ...}`), or
//!   `null` when the client did not declare the `roots` capability.
//! - `cancelled {}`: the JSON array of `requestId`s seen in `notifications/cancelled`.
//!
//! An unknown tool gets `-32602 Unknown tool: <name>`; bad arguments to a known tool
//! get a tool result with `isError: true`.
//!
//! Prompts, completions, resources (templates, subscriptions), logging, tasks and
//! requests to the client (`ask`) are in [`surface`], whose header lists them.

use std::io::{self, BufRead, Write};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{json, Map, Value};

mod surface;

/// Protocol versions echoed back when a client asks for them.
const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The version answered when the client asks for one not in [`SUPPORTED_VERSIONS`].
const LATEST_VERSION: &str = "2025-11-25";

const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const INTERNAL_ERROR: i64 = -32603;

fn main() {
    let config = Config::from_env();
    let pid = std::process::id();
    eprintln!("fixture {} started pid={pid}", config.name);

    if let Some(code) = config.exit_at_start {
        eprintln!("fixture exiting at start");
        std::process::exit(code);
    }
    if config.ignore_sigterm {
        ignore_sigterm();
    }
    if let Some(delay) = config.startup_delay {
        thread::sleep(delay);
    }

    let server = Arc::new(Server::new(&config, pid));
    read_loop(&server);

    if config.ignore_eof {
        eprintln!("fixture {}: stdin closed, staying up", config.name);
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Everything the environment can set, read once at start.
struct Config {
    name: String,
    exit_at_start: Option<i32>,
    startup_delay: Option<Duration>,
    ignore_ping: bool,
    ignore_sigterm: bool,
    ignore_eof: bool,
    extra_tools: usize,
    tool_names: Vec<String>,
    page_size: Option<usize>,
    instructions: Option<String>,
    hostile: bool,
    instance_tool: bool,
    raw_tool: Option<String>,
}

impl Config {
    fn from_env() -> Config {
        Config {
            name: env_string("FIXTURE_NAME").unwrap_or_else(|| "fixture".to_owned()),
            exit_at_start: env_parse("FIXTURE_EXIT_AT_START"),
            startup_delay: env_parse("FIXTURE_STARTUP_DELAY_MS").map(Duration::from_millis),
            ignore_ping: env_flag("FIXTURE_IGNORE_PING"),
            ignore_sigterm: env_flag("FIXTURE_IGNORE_SIGTERM"),
            ignore_eof: env_flag("FIXTURE_IGNORE_EOF"),
            extra_tools: env_parse("FIXTURE_EXTRA_TOOLS").unwrap_or(0),
            tool_names: env_string("FIXTURE_TOOL_NAMES")
                .map(|names| {
                    names
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            page_size: env_parse("FIXTURE_PAGE_SIZE").filter(|&n: &usize| n > 0),
            instructions: std::env::var("FIXTURE_INSTRUCTIONS").ok(),
            hostile: env_flag("FIXTURE_HOSTILE"),
            instance_tool: env_flag("FIXTURE_INSTANCE"),
            raw_tool: env_string("FIXTURE_RAW_TOOL"),
        }
    }
}

/// A non-empty environment variable.
fn env_string(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn env_flag(key: &str) -> bool {
    env_string(key).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

/// A parsed environment variable; an unparsable value is reported and ignored.
fn env_parse<T: FromStr>(key: &str) -> Option<T> {
    let raw = env_string(key)?;
    match raw.parse() {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("fixture: ignoring {key}={raw:?}: not a valid number");
            None
        }
    }
}

fn ignore_sigterm() {
    // Blocked before any other thread exists, so no thread of this process
    // (nor a program it runs) ever takes SIGTERM.
    let mut term = nix::sys::signal::SigSet::empty();
    term.add(nix::sys::signal::Signal::SIGTERM);
    if let Err(e) = term.thread_block() {
        eprintln!("fixture: cannot block SIGTERM: {e}");
    }
}

/// Reads stdin line by line until EOF (or a read error), handling each message.
fn read_loop(server: &Arc<Server>) {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                handle_line(server, &line);
                if server.stop_reading.load(Ordering::SeqCst) {
                    eprintln!("fixture {}: no longer reading stdin", server.name);
                    loop {
                        thread::sleep(Duration::from_secs(3600));
                    }
                }
            }
            Err(e) => {
                eprintln!("fixture: reading stdin failed: {e}");
                return;
            }
        }
    }
}

fn handle_line(server: &Arc<Server>, line: &[u8]) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(message)) => handle_message(server, message),
        Ok(_) => eprintln!(
            "fixture: skipping a line that is not a JSON object: {}",
            String::from_utf8_lossy(line)
        ),
        Err(e) => eprintln!(
            "fixture: skipping a line that is not JSON ({e}): {}",
            String::from_utf8_lossy(line)
        ),
    }
}

fn handle_message(server: &Arc<Server>, mut message: Map<String, Value>) {
    let id = message.remove("id");
    let params = message.remove("params").unwrap_or(Value::Null);
    match (message.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => handle_request(server, id, method, params),
        (Some(Value::String(method)), None) => server.handle_notification(method, &params),
        (Some(_), Some(id)) => server.respond(
            id,
            Err(RpcError::new(
                INVALID_REQUEST,
                "Invalid request: method must be a string",
            )),
        ),
        (None, Some(id)) => {
            let mut response = message.clone();
            response.insert("id".into(), id.clone());
            let known = server.on_client_response(&id, Value::Object(response));
            if !known {
                eprintln!("fixture: ignoring a response for id {id}");
            }
        }
        (_, None) => eprintln!("fixture: skipping a message with neither method nor id"),
    }
}

fn handle_request(server: &Arc<Server>, id: Value, method: &str, params: Value) {
    match method {
        "initialize" => server.respond(id, Ok(server.initialize(&params))),
        "ping" if server.ignore_pings.load(Ordering::SeqCst) => {
            eprintln!("fixture {}: not answering ping {id}", server.name);
        }
        "ping" => server.respond(id, Ok(json!({}))),
        "tools/list" => match (&server.raw_tool, server.list_tools(&params)) {
            (Some(raw), Ok(result)) => server.respond_with_raw_tool(id, &result, raw),
            (_, reply) => server.respond(id, reply),
        },
        "tools/call" if params.get("task").is_some() => server.start_task(id, params),
        "tools/call" => spawn_call(server, id, params),
        other => match server.handle_surface_request(&id, other, &params) {
            Some(surface::Handled::Reply(reply)) => server.respond(id, reply),
            Some(surface::Handled::Deferred) => {}
            None => server.respond(
                id,
                Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    format!("Method not found: {other}"),
                )),
            ),
        },
    }
}

/// Runs one `tools/call` on its own thread; the thread writes the response.
fn spawn_call(server: &Arc<Server>, id: Value, params: Value) {
    let worker = Arc::clone(server);
    let worker_id = id.clone();
    let spawned = thread::Builder::new()
        .name("tools/call".to_owned())
        .spawn(move || {
            let reply = worker.call_tool(&params);
            worker.respond(worker_id, reply);
        });
    if let Err(e) = spawned {
        let message = format!("cannot start a thread for tools/call: {e}");
        server.respond(id, Err(RpcError::new(INTERNAL_ERROR, message)));
    }
}

/// A JSON-RPC error object.
struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// A tool added by the environment or by `add_tool`.
struct ExtraTool {
    name: String,
    /// `tool_<n>` tools answer their own name; the others answer `called <name>`.
    answers_own_name: bool,
}

/// The shared state of the fixture: settings, recorded facts and stdout.
struct Server {
    name: String,
    pid: u32,
    page_size: Option<usize>,
    instructions: Option<String>,
    hostile: bool,
    instance_tool: bool,
    raw_tool: Option<String>,
    stop_reading: AtomicBool,
    ignore_pings: AtomicBool,
    extra_tools: Mutex<Vec<ExtraTool>>,
    client_capabilities: Mutex<Value>,
    cancelled: Mutex<Vec<Value>>,
    /// Prompts, resources, logging, tasks, requests to the client.
    surface: surface::Surface,
    /// Every stdout write goes through this lock, one whole line at a time.
    stdout: Mutex<io::Stdout>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    fn new(config: &Config, pid: u32) -> Server {
        let numbered = (0..config.extra_tools).map(|i| ExtraTool {
            name: format!("tool_{i}"),
            answers_own_name: true,
        });
        let named = config.tool_names.iter().map(|name| ExtraTool {
            name: name.clone(),
            answers_own_name: false,
        });
        Server {
            name: config.name.clone(),
            pid,
            page_size: config.page_size,
            instructions: config.instructions.clone(),
            hostile: config.hostile,
            instance_tool: config.instance_tool,
            raw_tool: config.raw_tool.clone(),
            stop_reading: AtomicBool::new(false),
            ignore_pings: AtomicBool::new(config.ignore_ping),
            extra_tools: Mutex::new(numbered.chain(named).collect()),
            client_capabilities: Mutex::new(Value::Null),
            cancelled: Mutex::new(Vec::new()),
            surface: surface::Surface::default(),
            stdout: Mutex::new(io::stdout()),
        }
    }

    // ----- output -------------------------------------------------------

    /// Writes one line to stdout and flushes it, under the stdout lock.
    fn write_line(&self, line: &str) {
        self.write_bytes(line.as_bytes());
    }

    fn write_bytes(&self, line: &[u8]) {
        let mut out = lock(&self.stdout);
        let written = out
            .write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            eprintln!("fixture {}: writing stdout failed: {e}", self.name);
        }
    }

    /// Writes one message as compact JSON (strings are escaped, so no raw newlines).
    fn send(&self, message: &Value) {
        match serde_json::to_string(message) {
            Ok(line) => self.write_line(&line),
            Err(e) => eprintln!("fixture {}: cannot serialise a message: {e}", self.name),
        }
    }

    fn notify(&self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send(&message);
    }

    /// Answers a tools/list with `raw` spliced in as the first tool, verbatim.
    fn respond_with_raw_tool(&self, id: Value, result: &Value, raw: &str) {
        let message = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        let line = message.replacen("\"tools\":[", &format!("\"tools\":[{raw},"), 1);
        self.write_line(&line);
    }

    fn respond(&self, id: Value, reply: Result<Value, RpcError>) {
        let message = match reply {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": e.code, "message": e.message},
            }),
        };
        self.send(&message);
    }

    // ----- lifecycle and lists --------------------------------------------

    fn initialize(&self, params: &Value) -> Value {
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = requested
            .filter(|v| SUPPORTED_VERSIONS.contains(v))
            .unwrap_or(LATEST_VERSION);
        *lock(&self.client_capabilities) =
            params.get("capabilities").cloned().unwrap_or(Value::Null);
        let mut capabilities = if std::env::var_os("FIXTURE_TOOLS_ONLY").is_some() {
            json!({})
        } else {
            surface::capabilities()
        };
        capabilities["tools"] = json!({"listChanged": true});
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": {"name": self.name, "version": "1.0.0"},
        });
        if let Some(instructions) = &self.instructions {
            result["instructions"] = json!(instructions);
        }
        result
    }

    fn handle_notification(&self, method: &str, params: &Value) {
        if method == "notifications/roots/list_changed" {
            eprintln!("fixture {} pid={}: roots changed", self.name, self.pid);
        }
        if method == "notifications/cancelled" {
            let request_id = params.get("requestId").cloned().unwrap_or(Value::Null);
            eprintln!("fixture {}: cancelled {request_id}", self.name);
            lock(&self.cancelled).push(request_id);
        }
    }

    /// Every tool definition: the built-in tools, then the extra ones.
    fn all_tools(&self) -> Vec<Value> {
        let extra = lock(&self.extra_tools);
        let extra = extra
            .iter()
            .map(|tool| tool_def(&tool.name, "A tool added by the test", json!({}), &[]));
        let hostile = if self.hostile {
            hostile_tools()
        } else {
            Vec::new()
        };
        let instance = self.instance_tool.then(|| {
            tool_def(
                "instance",
                "Reports this process's pid, cwd and the roots the client gives it",
                json!({}),
                &[],
            )
        });
        builtin_tools()
            .into_iter()
            .chain(surface::tools())
            .chain(hostile)
            .chain(instance)
            .chain(extra)
            .collect()
    }

    fn list_tools(&self, params: &Value) -> Result<Value, RpcError> {
        let tools = self.all_tools();
        let Some(page_size) = self.page_size else {
            return Ok(json!({ "tools": tools }));
        };
        let start = match params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(cursor) => parse_cursor(cursor)
                .filter(|&offset| offset <= tools.len())
                .ok_or_else(|| {
                    RpcError::new(INVALID_PARAMS, format!("Invalid cursor: {cursor}"))
                })?,
        };
        let end = start.saturating_add(page_size).min(tools.len());
        let mut result = json!({ "tools": tools[start..end] });
        if end < tools.len() {
            result["nextCursor"] = json!(make_cursor(end));
        }
        Ok(result)
    }

    // ----- tools ----------------------------------------------------------

    /// What `instance` answers: who this process is and what it was given.
    fn instance_report(&self) -> Value {
        let declared = lock(&self.client_capabilities).get("roots").is_some();
        let roots = if declared {
            let answer = self.ask(&json!({"method": "roots/list"}));
            match serde_json::from_str::<Value>(&answer) {
                Ok(response) => match response.get("result") {
                    Some(result) => result.clone(),
                    None => json!({"error": response.get("error").cloned().unwrap_or(Value::Null)}),
                },
                Err(_) => json!({"error": answer}),
            }
        } else {
            Value::Null
        };
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|e| format!("<error: {e}>"));
        json!({"name": self.name, "pid": self.pid, "cwd": cwd, "roots": roots})
    }

    fn call_tool(&self, params: &Value) -> Result<Value, RpcError> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "tools/call needs a string params.name",
            ));
        };
        let args = params.get("arguments").unwrap_or(&Value::Null);
        let outcome = match name {
            "echo" => self.tool_echo(args),
            "add" => tool_add(args),
            "sleep" => tool_sleep(args),
            "whoami" => Ok(text_result(format!("{} {}", self.name, self.pid))),
            "env" => tool_env(args),
            "cwd" => Ok(text_result(
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|e| format!("<error: {e}>")),
            )),
            "crash" => tool_crash(args),
            "stderr" => tool_stderr(args),
            "add_tool" => self.tool_add_tool(args),
            "progress" => self.tool_progress(args, params),
            "spawn_grandchild" => tool_spawn_grandchild(),
            "hang_pings" => {
                self.ignore_pings.store(true, Ordering::SeqCst);
                Ok(text_result("ok"))
            }
            "big" => tool_big(args),
            "garbage" => {
                self.write_line("this is not json");
                Ok(text_result("ok"))
            }
            "raw" => self.tool_raw(args),
            "endless" => self.tool_endless(),
            "stop_reading" => {
                self.stop_reading.store(true, Ordering::SeqCst);
                Ok(text_result("ok"))
            }
            "reply" => tool_reply(args),
            "flood" => self.tool_flood(args, params),
            "client_capabilities" => Ok(text_result(lock(&self.client_capabilities).to_string())),
            "instance" if self.instance_tool => Ok(text_result(self.instance_report().to_string())),
            "cancelled" => Ok(text_result(
                Value::Array(lock(&self.cancelled).clone()).to_string(),
            )),
            other => match self.call_surface_tool(other, args) {
                Some(result) => Ok(result),
                None => self.call_extra_tool(other),
            },
        };
        match outcome {
            Ok(result) => Ok(result),
            Err(ToolError::Unknown) => Err(RpcError::new(
                INVALID_PARAMS,
                format!("Unknown tool: {name}"),
            )),
            Err(ToolError::BadArguments(message)) => Ok(json!({
                "content": [{"type": "text", "text": format!("{name}: {message}")}],
                "isError": true,
            })),
        }
    }

    fn call_extra_tool(&self, name: &str) -> Result<Value, ToolError> {
        let tools = lock(&self.extra_tools);
        let tool = tools
            .iter()
            .find(|tool| tool.name == name)
            .ok_or(ToolError::Unknown)?;
        let text = if tool.answers_own_name {
            tool.name.clone()
        } else {
            format!("called {}", tool.name)
        };
        Ok(text_result(text))
    }

    fn tool_echo(&self, args: &Value) -> Result<Value, ToolError> {
        let text = str_arg(args, "text")?;
        Ok(json!({
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"text": text},
            "_meta": {"fixture/server": self.name},
        }))
    }

    fn tool_add_tool(&self, args: &Value) -> Result<Value, ToolError> {
        let name = str_arg(args, "name")?;
        {
            let mut tools = lock(&self.extra_tools);
            if !tools.iter().any(|tool| tool.name == name) {
                tools.push(ExtraTool {
                    name: name.to_owned(),
                    answers_own_name: false,
                });
            }
        }
        self.notify("notifications/tools/list_changed", None);
        Ok(text_result(format!("added {name}")))
    }

    fn tool_raw(&self, args: &Value) -> Result<Value, ToolError> {
        let bytes = match (args.get("text"), args.get("hex")) {
            (Some(Value::String(text)), _) => text.clone().into_bytes(),
            (_, Some(Value::String(hex))) => decode_hex(hex)
                .ok_or_else(|| ToolError::BadArguments("hex must be pairs of hex digits".into()))?,
            _ => return Err(ToolError::BadArguments("raw needs text or hex".into())),
        };
        self.write_bytes(&bytes);
        Ok(text_result("ok"))
    }

    fn tool_endless(&self) -> Result<Value, ToolError> {
        let mut out = lock(&self.stdout);
        let chunk = [b'x'; 64 * 1024];
        loop {
            if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
                eprintln!("fixture {}: endless line ended: {e}", self.name);
                std::process::exit(5);
            }
        }
    }

    fn tool_flood(&self, args: &Value, params: &Value) -> Result<Value, ToolError> {
        let count = u64_arg(args, "count")?;
        let kind = args
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("message");
        let token = params
            .get("_meta")
            .and_then(|meta| meta.get("progressToken"))
            .cloned();
        for i in 1..=count {
            match kind {
                "message" => self.notify(
                    "notifications/message",
                    Some(
                        json!({"level": "info", "logger": "fixture", "data": format!("flood {i}")}),
                    ),
                ),
                "progress" => {
                    if let Some(token) = &token {
                        self.notify(
                            "notifications/progress",
                            Some(json!({"progressToken": token, "progress": i, "total": count})),
                        );
                    }
                }
                "bogus" => {
                    let params = match i % 4 {
                        0 => {
                            json!({"progressToken": format!("sp-{}", 1_000_000_000 + i), "progress": i})
                        }
                        1 => json!({"progressToken": {"nested": i}, "progress": "lots"}),
                        2 => json!("not an object"),
                        _ => json!([i]),
                    };
                    self.notify("notifications/progress", Some(params));
                }
                other => return Err(ToolError::BadArguments(format!("unknown kind {other:?}"))),
            }
        }
        Ok(text_result(format!("flooded {count}")))
    }

    fn tool_progress(&self, args: &Value, params: &Value) -> Result<Value, ToolError> {
        let steps = u64_arg(args, "steps")?;
        let interval = Duration::from_millis(optional_u64_arg(args, "ms")?.unwrap_or(10));
        let token = params
            .get("_meta")
            .and_then(|meta| meta.get("progressToken"));
        // Wait after each notification (not before), so the last one is not
        // written back to back with the result: the TS SDK handles notifications
        // a microtask later than responses and drops progress that arrives in
        // the same read as its request's response.
        for step in 1..=steps {
            if let Some(token) = token {
                self.notify(
                    "notifications/progress",
                    Some(json!({"progressToken": token, "progress": step, "total": steps})),
                );
            }
            thread::sleep(interval);
        }
        Ok(text_result(format!("done {steps}")))
    }
}

/// Why a tool call did not produce a result.
enum ToolError {
    /// No tool has this name: a JSON-RPC error.
    Unknown,
    /// The tool exists but its arguments are wrong: an `isError` tool result.
    BadArguments(String),
}

type ToolOutcome = Result<Value, ToolError>;

fn tool_add(args: &Value) -> ToolOutcome {
    let (a, b) = (number_arg(args, "a")?, number_arg(args, "b")?);
    let integer_sum = match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => a.checked_add(b).map(|sum| sum.to_string()),
        _ => None,
    };
    // Integers stay exact; anything else is added as f64 (whose Display prints 5.0 as "5").
    let sum = integer_sum.unwrap_or_else(|| {
        (a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN)).to_string()
    });
    Ok(text_result(sum))
}

fn tool_sleep(args: &Value) -> ToolOutcome {
    let ms = u64_arg(args, "ms")?;
    thread::sleep(Duration::from_millis(ms));
    match args.get("tag").and_then(Value::as_str) {
        Some(tag) => Ok(text_result(format!("slept {ms} {tag}"))),
        None => Ok(text_result(format!("slept {ms}"))),
    }
}

fn tool_reply(args: &Value) -> ToolOutcome {
    let text = str_arg(args, "json")?;
    serde_json::from_str(text)
        .map_err(|e| ToolError::BadArguments(format!("json is not JSON: {e}")))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn tool_env(args: &Value) -> ToolOutcome {
    let name = str_arg(args, "name")?;
    let value = std::env::var_os(name)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "<unset>".to_owned());
    Ok(text_result(value))
}

fn tool_crash(args: &Value) -> ToolOutcome {
    let code = match optional_u64_arg(args, "code")? {
        None => 3,
        Some(code) => i32::try_from(code)
            .map_err(|_| ToolError::BadArguments(format!("code {code} is out of range")))?,
    };
    std::process::exit(code);
}

fn tool_stderr(args: &Value) -> ToolOutcome {
    let text = str_arg(args, "text")?;
    eprintln!("{}", text.replace(['\r', '\n'], " "));
    Ok(text_result("ok"))
}

fn tool_spawn_grandchild() -> ToolOutcome {
    let spawned = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child =
        spawned.map_err(|e| ToolError::BadArguments(format!("cannot spawn `sleep 1000`: {e}")))?;
    let pid = child.id();
    // Reap it if it dies while the fixture lives, so tests never see a zombie.
    thread::spawn(move || child.wait());
    Ok(text_result(pid.to_string()))
}

fn tool_big(args: &Value) -> ToolOutcome {
    let bytes = u64_arg(args, "bytes")?;
    let bytes = usize::try_from(bytes)
        .map_err(|_| ToolError::BadArguments(format!("{bytes} bytes is too many")))?;
    Ok(text_result("x".repeat(bytes)))
}

// ----- helpers ---------------------------------------------------------------

fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::BadArguments(format!("argument `{key}` must be a string")))
}

fn number_arg<'a>(args: &'a Value, key: &str) -> Result<&'a serde_json::Number, ToolError> {
    match args.get(key) {
        Some(Value::Number(n)) => Ok(n),
        _ => Err(ToolError::BadArguments(format!(
            "argument `{key}` must be a number"
        ))),
    }
}

fn u64_arg(args: &Value, key: &str) -> Result<u64, ToolError> {
    optional_u64_arg(args, key)?
        .ok_or_else(|| ToolError::BadArguments(format!("argument `{key}` is required")))
}

fn optional_u64_arg(args: &Value, key: &str) -> Result<Option<u64>, ToolError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            ToolError::BadArguments(format!("argument `{key}` must be a non-negative integer"))
        }),
    }
}

fn make_cursor(offset: usize) -> String {
    format!("fixture-cursor-{offset}")
}

fn parse_cursor(cursor: &Value) -> Option<usize> {
    cursor
        .as_str()?
        .strip_prefix("fixture-cursor-")?
        .parse()
        .ok()
}

/// One tool definition; `required` lists the required properties.
fn tool_def(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn builtin_tools() -> Vec<Value> {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer", "minimum": 0});
    let number = json!({"type": "number"});

    let mut echo = tool_def(
        "echo",
        "Returns its text",
        json!({"text": string}),
        &["text"],
    );
    echo["title"] = json!("Echo");
    echo["annotations"] = json!({"readOnlyHint": true});
    echo["outputSchema"] = json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    });
    echo["x-fixture-extra"] = json!({"kept": true});

    vec![
        echo,
        tool_def(
            "add",
            "Adds a and b",
            json!({"a": number, "b": number}),
            &["a", "b"],
        ),
        tool_def(
            "sleep",
            "Sleeps ms milliseconds",
            json!({"ms": integer, "tag": string}),
            &["ms"],
        ),
        tool_def("whoami", "Returns `<name> <pid>`", json!({}), &[]),
        tool_def(
            "env",
            "Returns an environment variable",
            json!({"name": string}),
            &["name"],
        ),
        tool_def("cwd", "Returns the working directory", json!({}), &[]),
        tool_def(
            "crash",
            "Exits at once with code (default 3)",
            json!({"code": integer}),
            &[],
        ),
        tool_def(
            "stderr",
            "Writes text to stderr",
            json!({"text": string}),
            &["text"],
        ),
        tool_def(
            "add_tool",
            "Adds a tool and sends tools/list_changed",
            json!({"name": string}),
            &["name"],
        ),
        tool_def(
            "progress",
            "Sends steps progress notifications, ms apart",
            json!({"steps": integer, "ms": integer}),
            &["steps"],
        ),
        tool_def(
            "spawn_grandchild",
            "Spawns `sleep 1000`, returns its pid",
            json!({}),
            &[],
        ),
        tool_def("hang_pings", "Stops answering ping", json!({}), &[]),
        tool_def(
            "big",
            "Returns bytes times 'x'",
            json!({"bytes": integer}),
            &["bytes"],
        ),
        tool_def(
            "garbage",
            "Writes a non-JSON line to stdout",
            json!({}),
            &[],
        ),
        tool_def(
            "client_capabilities",
            "Returns the client's declared capabilities",
            json!({}),
            &[],
        ),
        tool_def(
            "cancelled",
            "Returns the requestIds of notifications/cancelled received",
            json!({}),
            &[],
        ),
    ]
}

/// Tools listed only with `FIXTURE_HOSTILE=1`.
fn hostile_tools() -> Vec<Value> {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer", "minimum": 0});
    vec![
        tool_def(
            "raw",
            "Writes text (or hex bytes) as one stdout line",
            json!({"text": string, "hex": string}),
            &[],
        ),
        tool_def("endless", "Writes one line that never ends", json!({}), &[]),
        tool_def(
            "stop_reading",
            "Stops reading stdin, staying alive",
            json!({}),
            &[],
        ),
        tool_def(
            "reply",
            "Answers with json as the whole result",
            json!({"json": string}),
            &["json"],
        ),
        tool_def(
            "flood",
            "Sends count notifications back to back",
            json!({"count": integer, "kind": string}),
            &["count"],
        ),
    ]
}
