//! Test support: the real daemon and real shims in temp dirs.
//!
//! Nothing here sleeps and hopes: waits are on events (a log line, a response,
//! a status condition), each bounded by a timeout that fails the test with
//! what was seen so far. Every process started here is killed on drop.

#![allow(dead_code)]
// Test support: a poisoned lock means a test already failed.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Generous bound for anything that should happen "soon" on a loaded 2-core
/// machine.
pub const WAIT: Duration = Duration::from_secs(20);

pub const DAEMON: &str = env!("CARGO_BIN_EXE_stdioproxy");
pub const SHIM: &str = env!("CARGO_BIN_EXE_stdioproxy-shim");
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_stdioproxy-fixture-server");

/// A temp dir with a config path and a socket path inside.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sp-test")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("config.toml");
        let socket = dir.path().join("run").join("stdioproxy.sock");
        Env {
            dir,
            config,
            socket,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the config with safe permissions (0600).
    pub fn write_config(&self, text: &str) {
        write_private(&self.config, text);
    }

    /// Runs `stdioproxy serve` on this env's config and socket to its exit
    /// (for configs it must refuse).
    pub fn serve_and_exit(&self) -> std::process::Output {
        Command::new(DAEMON)
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("XDG_STATE_HOME", self.path().join("state"))
            .output()
            .expect("run stdioproxy serve")
    }

    /// Starts a daemon on this env's config and socket.
    pub fn start(&self, config: &str) -> Daemon {
        self.write_config(config);
        Daemon::start(self, &[])
    }
}

pub fn write_private(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// A `[servers.NAME]` table running the fixture server.
pub fn fixture_server(name: &str, extra_env: &[(&str, &str)]) -> String {
    let mut env = format!("FIXTURE_NAME = \"{name}\"");
    for (k, v) in extra_env {
        env.push_str(&format!(", {k} = \"{v}\""));
    }
    format!("[servers.{name}]\ncommand = \"{FIXTURE}\"\nenv = {{ {env} }}\n")
}

/// A daemon running two fixture servers, `alpha` and `beta`, both ready.
pub fn two_fixtures(env: &Env) -> Daemon {
    let d = env.start(&format!(
        "{}\n{}",
        fixture_server("alpha", &[]),
        fixture_server("beta", &[])
    ));
    d.wait_ready(&["alpha", "beta"]);
    d
}

/// Locks a log, also after a panic while it was held: a test that failed
/// inside `wait_for` must still print the log and kill its daemon on drop (a
/// second panic there would abort and leak the daemon).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines of a process's stderr, collected by a thread, with waiting.
#[derive(Clone, Default)]
pub struct Log {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Log {
    pub fn collect(&self, stream: impl std::io::Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*log.inner;
                lock(lines).push(line);
                cv.notify_all();
            }
        });
    }

    pub fn lines(&self) -> Vec<String> {
        lock(&self.inner.0).clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }

    /// Waits for a line containing every needle; returns it.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        self.wait_for_from(0, needles)
    }

    /// Like `wait_for`, looking only at lines from index `from` on.
    pub fn wait_for_from(&self, from: usize, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        let (lines, cv) = &*self.inner;
        let mut guard = lock(lines);
        loop {
            if let Some(l) = guard
                .iter()
                .skip(from)
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "no log line with {needles:?} within {WAIT:?}; log:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner.0).len()
    }

    /// Waits until `n` lines from index `from` on contain every needle.
    pub fn wait_for_count(&self, from: usize, needles: &[&str], n: usize) {
        let deadline = Instant::now() + WAIT;
        let (lines, cv) = &*self.inner;
        let mut guard = lock(lines);
        loop {
            let seen = guard
                .iter()
                .skip(from)
                .filter(|l| needles.iter().all(|x| l.contains(x)))
                .count();
            if seen >= n {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "{seen} of {n} log lines with {needles:?} within {WAIT:?}; log:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running `stdioproxy serve`.
pub struct Daemon {
    pub child: Child,
    pub log: Log,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until it listens.
    pub fn start(env: &Env, extra_env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(env, extra_env, |_| {})
    }

    /// [`Daemon::start`], with `configure` applied to the command last (a
    /// working directory, a PATH).
    pub fn start_with(
        env: &Env,
        extra_env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mut cmd = Command::new(DAEMON);
        cmd.arg("serve")
            .arg("--config")
            .arg(&env.config)
            .arg("--socket")
            .arg(&env.socket)
            .env("RUST_LOG", "info,stdioproxy=debug")
            .env_remove("STDIOPROXY_CONFIG")
            .env_remove("STDIOPROXY_SOCKET")
            .env("XDG_CACHE_HOME", env.path().join("cache"))
            .env("XDG_STATE_HOME", env.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn daemon");
        let log = Log::default();
        log.collect(child.stderr.take().expect("stderr"));
        let d = Daemon {
            child,
            log,
            socket: env.socket.clone(),
            config: env.config.clone(),
        };
        d.log.wait_for(&["stdioproxy listening"]);
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `stdioproxy status --json`.
    pub fn status(&self) -> Value {
        let out = Command::new(DAEMON)
            .arg("status")
            .arg("--json")
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run status");
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// A server's entry in status.
    pub fn server_status(&self, name: &str) -> Value {
        self.status()["servers"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until `pred(status)` holds; returns that status. Status is
    /// re-read whenever the daemon logs a new line (every state change is
    /// logged), so this waits on events rather than on a clock.
    pub fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_status_within(WAIT, what, pred)
    }

    /// [`Daemon::wait_status`] with another bound, for children that are
    /// slow to start on a loaded machine (Python servers).
    pub fn wait_status_within(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.log.len();
            let st = self.status();
            if pred(&st) {
                return st;
            }
            if Instant::now() >= deadline {
                panic!("status never showed {what} within {limit:?}; last: {st:#}");
            }
            // Wait for the next log line (or a short tick), then look again.
            let (lines, cv) = &*self.log.inner;
            let guard = lock(lines);
            if guard.len() == seen {
                let _ = cv.wait_timeout(guard, Duration::from_millis(200));
            }
        }
    }

    /// Waits until every named server is ready.
    pub fn wait_ready(&self, names: &[&str]) -> Value {
        self.wait_ready_within(WAIT, names)
    }

    /// [`Daemon::wait_ready`] with another bound.
    pub fn wait_ready_within(&self, limit: Duration, names: &[&str]) -> Value {
        self.wait_status_within(limit, &format!("{names:?} ready"), |st| {
            names.iter().all(|n| {
                st["servers"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|s| s["name"] == *n && s["state"] == "ready"))
            })
        })
    }

    /// SIGTERM and wait for exit (bounded).
    pub fn stop(&mut self) -> ExitStatus {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        wait_exit(&mut self.child, WAIT).expect("daemon did not exit after SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ----\n{}\n--------",
                self.log.lines().join("\n")
            );
        }
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
            if wait_exit(&mut self.child, Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Waits for a child to exit, up to `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True while a pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until a pid is gone.
pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still alive after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An MCP client speaking through a real `stdioproxy-shim`.
pub struct Client {
    pub child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    /// Messages received while waiting for something else.
    backlog: VecDeque<Value>,
    next_id: i64,
    pub stderr: Log,
}

impl Client {
    /// Starts a shim on `socket` with extra args.
    pub fn connect_with(socket: &Path, args: &[&str]) -> Client {
        Self::spawn(Command::new(SHIM), socket, args)
    }

    /// Starts a shim on `socket` with extra args, in working directory `dir`.
    pub fn connect_in(socket: &Path, dir: &Path, args: &[&str]) -> Client {
        let mut cmd = Command::new(SHIM);
        cmd.current_dir(dir);
        Self::spawn(cmd, socket, args)
    }

    /// Starts the shim `cmd` (set up by the caller, e.g. with env) on
    /// `socket` with extra args.
    pub fn spawn(mut cmd: Command, socket: &Path, args: &[&str]) -> Client {
        let mut child = cmd
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shim");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = Log::default();
        stderr.collect(child.stderr.take().expect("stderr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| json!({"__unparseable__": line, "error": e.to_string()}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Client {
            stdin: child.stdin.take(),
            child,
            rx,
            backlog: VecDeque::new(),
            next_id: 1000,
            stderr,
        }
    }

    pub fn connect(socket: &Path) -> Client {
        Self::connect_with(socket, &[])
    }

    /// Connects and completes the MCP handshake.
    pub fn initialized(socket: &Path) -> Client {
        let mut c = Self::connect(socket);
        c.initialize();
        c
    }

    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).expect("write to shim");
        stdin.write_all(b"\n").expect("write to shim");
        stdin.flush().expect("flush");
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(&v.to_string());
    }

    /// Closes the shim's stdin (the client quits).
    pub fn close(&mut self) {
        self.stdin.take();
    }

    /// The next message, from the backlog first.
    pub fn recv(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        self.recv_new(WAIT)
            .expect("no message from the shim in time")
    }

    fn recv_new(&mut self, limit: Duration) -> Option<Value> {
        match self.rx.recv_timeout(limit) {
            Ok(v) => Some(v),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("shim stdout closed; shim stderr: {:?}", self.stderr.lines())
            }
        }
    }

    /// Waits for the first message matching `pred`, keeping others for later.
    pub fn recv_matching(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).expect("index");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_new(left) {
                Some(v) if pred(&v) => return v,
                Some(v) => self.backlog.push_back(v),
                None => panic!(
                    "no {what} within {WAIT:?}; received meanwhile: {:?}",
                    self.backlog
                ),
            }
        }
    }

    /// The next response (anything with an id), skipping notifications.
    pub fn next_response(&mut self) -> Value {
        self.recv_matching("a response", |v| v.get("id").is_some())
    }

    /// Takes the first already-received message matching `pred`, without
    /// waiting.
    pub fn try_backlog(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        while let Ok(v) = self.rx.try_recv() {
            self.backlog.push_back(v);
        }
        let i = self.backlog.iter().position(pred)?;
        self.backlog.remove(i)
    }

    /// Waits for the response with this id (compared as JSON, so 1 != "1").
    pub fn response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_matching(&format!("response to id {id}"), move |v| {
            v.get("id") == Some(&id) && (v.get("result").is_some() || v.get("error").is_some())
        })
    }

    /// Sends a request with a fresh numeric id without waiting; returns the id.
    pub fn send_request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Waits for a notification with this method.
    pub fn notification(&mut self, method: &str) -> Value {
        let m = method.to_string();
        self.recv_matching(&format!("a {method} notification"), move |v| {
            v.get("id").is_none() && v["method"] == m.as_str()
        })
    }

    /// Waits for a request from the daemon (a child's request routed here).
    pub fn incoming_request(&mut self, method: &str) -> Value {
        let m = method.to_string();
        self.recv_matching(&format!("a {method} request"), move |v| {
            v.get("id").is_some() && v["method"] == m.as_str()
        })
    }

    /// Sends a request with a fresh numeric id and waits for its response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response(&id)
    }

    pub fn initialize(&mut self) -> Value {
        self.initialize_with(json!({}))
    }

    /// Completes the handshake declaring `capabilities`.
    pub fn initialize_with(&mut self, capabilities: Value) -> Value {
        let r = self.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "e2e", "version": "1"}}),
        );
        assert!(r.get("result").is_some(), "initialize failed: {r}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        r
    }

    /// All tools, following cursors.
    pub fn list_tools(&mut self) -> Vec<Value> {
        let mut tools = Vec::new();
        let mut params = json!({});
        loop {
            let r = self.request("tools/list", params);
            let result = r
                .get("result")
                .unwrap_or_else(|| panic!("tools/list failed: {r}"));
            tools.extend(
                result["tools"]
                    .as_array()
                    .expect("tools array")
                    .iter()
                    .cloned(),
            );
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(c) => params = json!({ "cursor": c }),
                None => return tools,
            }
        }
    }

    pub fn tool_names(&mut self) -> Vec<String> {
        self.list_tools()
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Calls a tool; returns the whole response.
    pub fn call(&mut self, name: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": args}))
    }

    /// Calls a tool and returns its first text content (panics on error).
    pub fn call_text(&mut self, name: &str, args: Value) -> String {
        let r = self.call(name, args);
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("call {name} failed: {r}"))
            .to_string()
    }

    /// Waits for the shim to exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, WAIT).expect("shim did not exit")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stdin.take();
        if wait_exit(&mut self.child, Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Client {
    /// Writes raw bytes (a line that need not be UTF-8) and a newline.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to shim");
        stdin.write_all(b"\n").expect("write to shim");
        stdin.flush().expect("flush");
    }

    /// Waits until `tools/list` shows `name` (listing again after each
    /// `list_changed`), for servers that are still starting.
    pub fn wait_for_tool(&mut self, name: &str) {
        loop {
            if self.tool_names().iter().any(|n| n == name) {
                return;
            }
            self.recv_matching("tools/list_changed", |v| {
                v["method"] == "notifications/tools/list_changed"
            });
        }
    }

    /// Messages received so far without waiting (drains the channel into the
    /// backlog and returns a copy of it).
    pub fn received(&mut self) -> Vec<Value> {
        while let Ok(v) = self.rx.try_recv() {
            self.backlog.push_back(v);
        }
        self.backlog.iter().cloned().collect()
    }
}

/// A plain client on a raw Unix socket (no shim, no hello), for peers that
/// misbehave at the byte level or stop reading.
pub struct RawConn {
    pub stream: std::os::unix::net::UnixStream,
    reader: BufReader<std::os::unix::net::UnixStream>,
}

impl RawConn {
    pub fn connect(socket: &Path) -> RawConn {
        let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        RawConn { stream, reader }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send_line(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    /// The next line, or None at EOF. Panics after WAIT without one.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("no line from the daemon within {WAIT:?}: {e}"),
        }
    }

    /// The next line as JSON.
    pub fn read_json(&mut self) -> Value {
        let line = self.read_line().expect("daemon closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Waits until the daemon closes the connection, discarding what it sends.
    pub fn expect_eof(&mut self) {
        while self.read_line().is_some() {}
    }
}

/// Open fds of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Pids whose parent is `pid`, with their state letter (`Z` for zombies).
pub fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push((child, state));
        }
    }
    out
}

/// A child process killed (and reaped) when dropped, also when a test fails.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A test that cannot run its real check: a failure under CI (`CI` set),
/// else one line on the real stderr. It bypasses the test harness's capture
/// (which hides a passing test's output), so a skip never reads as a pass.
pub fn unavailable(reason: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {reason}, but CI is set: .ci/run must provide it"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: {reason} (this test is required under CI)"
    );
}

/// A program a test needs that CI installs (from Debian package `package`):
/// `None`, with a note, when it is missing on a developer's machine; a
/// failure when it is missing under CI.
pub fn ci_tool(tool: &str, package: &str) -> Option<PathBuf> {
    let found = which(tool);
    if found.is_none() {
        unavailable(&format!(
            "{tool} is not installed (Debian package {package})"
        ));
    }
    found
}

/// True when the suite can act as a second user (root, and `setpriv` from
/// util-linux); otherwise says so through `unavailable` (CI runs as root).
pub fn can_switch_user() -> bool {
    let root = nix::unistd::getuid().is_root();
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (root, setpriv) {
        (true, true) => true,
        (false, _) => {
            unavailable("needs root to act as another user");
            false
        }
        (true, false) => {
            unavailable("needs setpriv (Debian package util-linux) to act as another user");
            false
        }
    }
}

/// A program on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

/// `systemd-socket-activate -l SOCKET` running the daemon on `env`'s config
/// (its own `--socket` points elsewhere, so it must use the passed one),
/// with `extra` activator arguments (e.g. `--setenv=...`); its stderr is
/// collected. Waits until the activator listens.
pub fn socket_activate(
    tool: &Path,
    env: &Env,
    socket: &Path,
    extra: &[String],
) -> (KillOnDrop, Log) {
    let mut activator = KillOnDrop(
        Command::new(tool)
            .arg("-l")
            .arg(socket)
            .args(extra)
            .arg("--setenv=RUST_LOG=info,stdioproxy=debug")
            .arg(format!(
                "--setenv=XDG_CACHE_HOME={}",
                env.path().join("cache").display()
            ))
            .arg(DAEMON)
            .arg("serve")
            .arg("--config")
            .arg(&env.config)
            .arg("--socket")
            .arg(env.path().join("unused.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn systemd-socket-activate"),
    );
    let log = Log::default();
    log.collect(activator.0.stderr.take().expect("stderr"));
    log.wait_for(&["Listening on"]);
    (activator, log)
}
