//! A minimal MCP client over a child's stdio, built for timing.
//!
//! One thread per session and no reader thread: a request is written, and the
//! same thread reads the answer, so no thread hand-off sits inside a measured
//! round trip. Each line is timestamped when the `read` that completed it
//! returned. Requests in the hot loops are pre-rendered bytes; responses are
//! parsed only as far as the envelope.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::procs::{own_group, stop_group, Res};

pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// The envelope of a message from the server.
#[derive(Deserialize)]
pub struct Head<'a> {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
}

/// Result of the handshake.
pub struct Handshake {
    /// Spawn -> initialize result.
    pub init: Duration,
    /// Spawn -> last tools/list page.
    pub list: Duration,
    pub pages: usize,
    pub tools: Vec<String>,
    pub list_bytes: usize,
}

pub struct Conn {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buf: Vec<u8>,
    start: usize,
    last_read: Instant,
    pub spawned: Instant,
    next_id: u64,
    /// Notifications received: (arrival, method).
    pub notifications: Vec<(Instant, String)>,
    pub label: String,
    /// tools/list listings restarted from the first page because the
    /// daemon refused a cursor as stale.
    pub list_restarts: usize,
}

impl Conn {
    /// Spawns `argv` as an MCP server (or a proxy's client side).
    pub fn spawn(
        argv: &[String],
        env: &[(String, String)],
        stderr: &File,
        label: &str,
    ) -> Res<Conn> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().map_err(|e| e.to_string())?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        own_group(&mut cmd);
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{label}: cannot start {}: {e}", argv[0]))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Conn {
            child,
            stdin,
            stdout,
            buf: Vec::with_capacity(256 * 1024),
            start: 0,
            last_read: spawned,
            spawned,
            next_id: 1,
            notifications: Vec::new(),
            label: label.to_string(),
            list_restarts: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn write(&mut self, bytes: &[u8]) -> Res<()> {
        let label = &self.label;
        self.stdin
            .as_mut()
            .ok_or_else(|| format!("{label}: stdin closed"))?
            .write_all(bytes)
            .map_err(|e| format!("{label}: write failed: {e}"))
    }

    /// Closes the child's stdin (the client going away).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// A complete line already buffered, without reading.
    pub fn try_line(&mut self) -> Option<(Instant, &[u8])> {
        let avail = &self.buf[self.start..];
        let pos = avail.iter().position(|&c| c == b'\n')?;
        let s = self.start;
        self.start += pos + 1;
        Some((self.last_read, &self.buf[s..s + pos]))
    }

    /// Reads until a complete line is buffered (or the deadline passes).
    fn fill(&mut self, deadline: Instant) -> Res<()> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 128 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("{}: timed out waiting for the server", self.label));
        }
        let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: self.stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Safety: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if r == 0 {
            return Err(format!("{}: timed out waiting for the server", self.label));
        }
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        let n = loop {
            match self.stdout.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(format!("{}: read failed: {e}", self.label));
                }
            }
        };
        self.last_read = Instant::now();
        self.buf.truncate(len + n);
        if n == 0 {
            return Err(format!("{}: the server closed its stdout", self.label));
        }
        Ok(())
    }

    /// The next line, read if needed. Returns its arrival time and a copy.
    pub fn next_line(&mut self, deadline: Instant) -> Res<(Instant, Vec<u8>)> {
        loop {
            if let Some((t, line)) = self.try_line() {
                return Ok((t, line.to_vec()));
            }
            self.fill(deadline)?;
        }
    }

    /// Handles a line that is not the awaited response: notifications are
    /// recorded, server requests refused. Returns the response id, if it is
    /// a response.
    fn dispatch(&mut self, t: Instant, line: &[u8]) -> Res<Option<u64>> {
        let head: Head<'_> = serde_json::from_slice(line).map_err(|e| {
            format!(
                "{}: server wrote a line that is not JSON-RPC ({e}): {}",
                self.label,
                String::from_utf8_lossy(&line[..line.len().min(200)])
            )
        })?;
        match (&head.method, &head.id) {
            (Some(m), None) => {
                self.notifications.push((t, m.to_string()));
                Ok(None)
            }
            (Some(_), Some(id)) => {
                let reply = json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"not supported by the benchmark client"}});
                let mut bytes = reply.to_string().into_bytes();
                bytes.push(b'\n');
                self.write(&bytes)?;
                Ok(None)
            }
            (None, Some(id)) => Ok(id.as_u64()),
            (None, None) => Ok(None),
        }
    }

    /// Waits for the response to `id`; returns its arrival time and line.
    pub fn wait(&mut self, id: u64, deadline: Instant) -> Res<(Instant, Vec<u8>)> {
        loop {
            let (t, line) = self.next_line(deadline)?;
            if self.dispatch(t, &line)? == Some(id) {
                return Ok((t, line));
            }
        }
    }

    /// Sends a request and waits for its response.
    pub fn request(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Res<(Instant, Instant, Value)> {
        let id = self.new_id();
        let mut bytes = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
            .to_string()
            .into_bytes();
        bytes.push(b'\n');
        let t0 = Instant::now();
        self.write(&bytes)?;
        let (t, line) = self.wait(id, t0 + timeout)?;
        let v: Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
        if let Some(err) = v.get("error") {
            return Err(format!("{}: {method} failed: {err}", self.label));
        }
        Ok((t0, t, v))
    }

    pub fn notify(&mut self, method: &str) -> Res<()> {
        let mut bytes = json!({"jsonrpc":"2.0","method":method})
            .to_string()
            .into_bytes();
        bytes.push(b'\n');
        self.write(&bytes)
    }

    /// initialize, notifications/initialized, tools/list (all pages).
    pub fn handshake(&mut self, timeout: Duration) -> Res<Handshake> {
        let (_, t_init, _) = self.request(
            "initialize",
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "stdioproxy-bench", "version": "1"}}),
            timeout,
        )?;
        self.notify("notifications/initialized")?;
        let (_, t_list, pages, tools, list_bytes) = self.list_tools(timeout)?;
        Ok(Handshake {
            init: t_init - self.spawned,
            list: t_list - self.spawned,
            pages,
            tools,
            list_bytes,
        })
    }

    /// Every page of tools/list: (sum of round trips, arrival of the last
    /// page, pages, names, bytes).
    pub fn list_tools(
        &mut self,
        timeout: Duration,
    ) -> Res<(Duration, Instant, usize, Vec<String>, usize)> {
        let mut cursor: Option<String> = None;
        let mut names = Vec::new();
        let mut rtt = Duration::ZERO;
        let mut pages = 0;
        let mut bytes = 0;
        loop {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let id = self.new_id();
            let mut req = json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":params})
                .to_string()
                .into_bytes();
            req.push(b'\n');
            let t0 = Instant::now();
            self.write(&req)?;
            let (t, line) = self.wait(id, t0 + timeout)?;
            rtt += t - t0;
            pages += 1;
            bytes += line.len() + 1;
            let v: Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
            if let Some(err) = v.get("error") {
                // A stale cursor means "list again from the start" (the
                // catalog was rebuilt meanwhile); anything else is a failure.
                let stale = err["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cursor"));
                if stale && cursor.is_some() && self.list_restarts < 100 {
                    self.list_restarts += 1;
                    cursor = None;
                    names.clear();
                    pages = 0;
                    bytes = 0;
                    continue;
                }
                return Err(format!("{}: tools/list failed: {err}", self.label));
            }
            let r = &v["result"];
            for t in r["tools"].as_array().into_iter().flatten() {
                if let Some(n) = t["name"].as_str() {
                    names.push(n.to_string());
                }
            }
            match r["nextCursor"].as_str() {
                Some(c) if pages < 10_000 => cursor = Some(c.to_string()),
                _ => return Ok((rtt, t, pages, names, bytes)),
            }
        }
    }

    /// Stops the child: stdin closed first (a client going away), then its
    /// process group is ended.
    pub fn close(mut self, grace: Duration) {
        self.close_stdin();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop_group(&mut self.child, Duration::from_millis(500));
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stdin = None;
        stop_group(&mut self.child, Duration::from_millis(500));
    }
}

/// Picks the echo tool: `echo`, or the shortest `<server>__echo`.
pub fn echo_tool(names: &[String]) -> Option<String> {
    if names.iter().any(|n| n == "echo") {
        return Some("echo".into());
    }
    names
        .iter()
        .filter(|n| n.ends_with("__echo"))
        .min_by_key(|n| n.len())
        .cloned()
}

/// The `_meta` a 2026-07-28 request carries.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stdioproxy-bench", "version": "1"},
    })
}

/// A pre-rendered tools/call: `head` + id + `tail`.
pub struct Call {
    head: Vec<u8>,
}

impl Call {
    pub fn new(tool: &str, text: &str) -> Call {
        let params = json!({"name": tool, "arguments": {"message": text, "text": text}});
        let head = format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{params},"id":"#);
        Call {
            head: head.into_bytes(),
        }
    }

    /// The same call as a 2026-07-28 client sends it: the `_meta` envelope
    /// (version, capabilities, client info) on every request.
    pub fn modern(tool: &str, text: &str) -> Call {
        let params = json!({"name": tool, "arguments": {"message": text, "text": text},
            "_meta": modern_meta()});
        let head = format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{params},"id":"#);
        Call {
            head: head.into_bytes(),
        }
    }

    pub fn render(&self, id: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(b"}\n");
    }
}

/// Checks one response line: Ok(true) for a result, Ok(false) for an error
/// or a tool error.
pub fn is_ok(line: &[u8]) -> bool {
    match serde_json::from_slice::<Head<'_>>(line) {
        Ok(h) => {
            h.error.is_none()
                && h.result
                    .is_some_and(|r| !r.get().contains("\"isError\":true"))
        }
        Err(_) => false,
    }
}

/// One call, checked end to end (the text comes back).
pub fn call_checked(conn: &mut Conn, call: &Call, want: &str, timeout: Duration) -> Res<()> {
    let id = conn.new_id();
    let mut req = Vec::new();
    call.render(id, &mut req);
    conn.write(&req)?;
    let (_, line) = conn.wait(id, Instant::now() + timeout)?;
    let text = String::from_utf8_lossy(&line);
    if !is_ok(&line) || !text.contains(want) {
        return Err(format!("{}: tools/call did not echo: {text}", conn.label));
    }
    Ok(())
}

/// `k` calls one at a time; latencies in ns.
pub fn sequential(
    conn: &mut Conn,
    call: &Call,
    k: usize,
    timeout: Duration,
) -> Res<(Vec<u64>, usize)> {
    let mut lats = Vec::with_capacity(k);
    let mut errors = 0;
    let mut req = Vec::with_capacity(256);
    for _ in 0..k {
        let id = conn.new_id();
        req.clear();
        call.render(id, &mut req);
        let t0 = Instant::now();
        conn.write(&req)?;
        let (t, line) = conn.wait(id, t0 + timeout)?;
        lats.push((t - t0).as_nanos() as u64);
        if !is_ok(&line) {
            errors += 1;
        }
    }
    Ok((lats, errors))
}

/// Outcome of a pipelined run.
pub struct Pipelined {
    pub first_send: Instant,
    pub last_recv: Instant,
    pub done: usize,
    pub errors: usize,
    pub lats: Vec<u64>,
}

/// `n` calls with up to `depth` outstanding.
pub fn pipelined(
    conn: &mut Conn,
    call: &Call,
    n: usize,
    depth: usize,
    timeout: Duration,
) -> Res<Pipelined> {
    let base = conn.next_id;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(n);
    let mut lats = Vec::with_capacity(n);
    let (mut sent, mut done, mut errors) = (0usize, 0usize, 0usize);
    let mut batch = Vec::with_capacity(depth * 200);
    let first_send = Instant::now();
    let mut last_recv = first_send;
    while done < n {
        batch.clear();
        let now = Instant::now();
        while sent < n && sent - done < depth {
            let id = conn.new_id();
            call.render(id, &mut batch);
            sent_at.push(now);
            sent += 1;
        }
        if !batch.is_empty() {
            conn.write(&batch)?;
        }
        // Take one line (reading if needed), then everything already buffered.
        let (t, line) = conn.next_line(Instant::now() + timeout)?;
        let mut lines = vec![(t, line)];
        while let Some((t, l)) = conn.try_line() {
            lines.push((t, l.to_vec()));
        }
        for (t, line) in lines {
            let head: Head<'_> = serde_json::from_slice(&line)
                .map_err(|e| format!("{}: bad line in pipelined phase: {e}", conn.label))?;
            if head.method.is_some() {
                if head.id.is_none() {
                    conn.notifications
                        .push((t, head.method.unwrap_or_default().to_string()));
                }
                continue;
            }
            let Some(id) = head.id.as_ref().and_then(Value::as_u64) else {
                continue;
            };
            let Some(i) = id
                .checked_sub(base)
                .map(|i| i as usize)
                .filter(|&i| i < sent)
            else {
                continue;
            };
            lats.push((t - sent_at[i]).as_nanos() as u64);
            if head.error.is_some() {
                errors += 1;
            }
            done += 1;
            last_recv = t;
        }
    }
    Ok(Pipelined {
        first_send,
        last_recv,
        done,
        errors,
        lats,
    })
}
