//! Control requests over the daemon's socket (`status`, `reload`): both the
//! daemon's handler and the CLI's client.
//!
//! A control connection sends one hello line with a `control` verb and reads
//! one JSON line back. Only the daemon's own uid can connect at all (the
//! listener checks SO_PEERCRED), so control needs no further authentication.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod commands;
mod servers;

use crate::proto::{Hello, PROTO_VERSION};
use crate::reload::{Reloader, Trigger};
use crate::slots::Slots;
use crate::supervisor::Supervisor;

/// What control requests read and drive: the reloader (config state,
/// reloads), the supervisor (servers, catalog), the open sessions.
pub struct Control {
    reloader: Arc<Reloader>,
    supervisor: Arc<Supervisor>,
    sessions: Arc<Slots>,
    socket_path: PathBuf,
    started: Instant,
    /// Sessions a shim resumed here after a daemon restart.
    resumes: AtomicU64,
}

impl Control {
    /// The control side of a daemon listening on `socket_path`, started now.
    pub fn new(
        reloader: Arc<Reloader>,
        supervisor: Arc<Supervisor>,
        sessions: Arc<Slots>,
        socket_path: PathBuf,
    ) -> Self {
        Self {
            reloader,
            supervisor,
            sessions,
            socket_path,
            started: Instant::now(),
            resumes: AtomicU64::new(0),
        }
    }

    /// Counts a session that a shim resumed (shown in `status`).
    pub fn count_resume(&self) {
        self.resumes.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers one control request with a JSON line.
    pub async fn handle(&self, verb: &str, request: &Hello) -> String {
        let args = request.args.as_ref().unwrap_or(&Value::Null);
        let reply = match verb {
            "status" => self.status(),
            "restart" => self.restart(args).await,
            "tools-pending" => self.tools_pending(),
            "tools-approve" => self.tools_approve(args),
            "reload" => match self.reloader.reload(Trigger::Control).await {
                Ok(d) => json!({
                    "ok": true,
                    "changes": d.summary(),
                    "added": d.added,
                    "removed": d.removed,
                    "restarted": d.replaced,
                    "updated": d.updated,
                    "unchanged": d.unchanged,
                }),
                Err(e) => json!({ "ok": false, "error": e }),
            },
            other => json!({ "ok": false, "error": format!("unknown control request {other:?}") }),
        };
        format!("{reply}\n")
    }

    /// Where the pin store is and why it was refused, if it was.
    fn pins_status(&self) -> Value {
        let store = self.supervisor.pins().lock();
        json!({ "store": store.path().display().to_string(), "error": store.error() })
    }

    /// The `status` document. Never contains env values.
    pub fn status(&self) -> Value {
        let servers = self.supervisor.status();
        json!({
            "ok": true,
            "daemon": {
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_secs": self.started.elapsed().as_secs(),
                "socket": self.socket_path.display().to_string(),
                // Resource figures, for watching a long-running daemon (and
                // for the soak test, which checks they return to their
                // baseline).
                "tasks": tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_alive_tasks())
                    .ok(),
                "fds": open_fds(),
                "rss_bytes": rss_bytes(),
            },
            "config": {
                "path": self.reloader.config_path().display().to_string(),
                "error": self.reloader.config_error(),
                "last_reload": self.reloader.last_reload(),
            },
            "pins": self.pins_status(),
            "sessions": self.sessions.taken(),
            // Sessions resumed by a shim after a daemon restart (since this
            // daemon started).
            "resumed_sessions": self.resumes.load(Ordering::Relaxed),
            "tools": self.supervisor.catalog().len(),
            "servers": servers,
        })
    }
}

/// Open file descriptors of this process.
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Sends a control request to the daemon at `socket` and returns its reply.
/// Errors are sentences for a person.
pub fn request(socket: &Path, verb: &str, timeout: Duration) -> Result<Value, String> {
    request_with(socket, verb, json!({}), timeout)
}

/// [`request`] with arguments (the hello's `args` object).
pub fn request_with(
    socket: &Path,
    verb: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, String> {
    let mut reader = send_control(socket, verb, params, Some(timeout))?;
    read_reply(socket, &mut reader)?.ok_or_else(|| closed_without_answer(socket))
}

/// A control request whose answer is a stream of JSON lines (`logs
/// --follow`): `each` gets every line until the daemon closes or `each`
/// returns false. The first line is checked like [`request`]'s reply.
pub fn stream(
    socket: &Path,
    verb: &str,
    params: Value,
    mut each: impl FnMut(&Value) -> bool,
) -> Result<(), String> {
    let mut reader = send_control(socket, verb, params, None)?;
    let first = read_reply(socket, &mut reader)?.ok_or_else(|| closed_without_answer(socket))?;
    if !each(&first) {
        return Ok(());
    }
    while let Some(v) = read_reply(socket, &mut reader)? {
        if !each(&v) {
            break;
        }
    }
    Ok(())
}

fn closed_without_answer(socket: &Path) -> String {
    format!(
        "the daemon at {} closed the connection without answering (it only answers its own user; you are uid {})",
        socket.display(),
        nix::unistd::getuid()
    )
}

/// Connects and sends the control hello; the reader yields the answer.
fn send_control(
    socket: &Path,
    verb: &str,
    params: Value,
    timeout: Option<Duration>,
) -> Result<BufReader<UnixStream>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the stdioproxy daemon at {}: {e} (start it with `systemctl --user start stdioproxy` or `stdioproxy serve`)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let hello = Hello {
        stdioproxy: PROTO_VERSION,
        control: Some(verb.to_string()),
        args: params
            .as_object()
            .is_some_and(|p| !p.is_empty())
            .then_some(params),
        ..Hello::default()
    };
    // The daemon closes at once on connections from another user: before
    // our write (broken pipe), with our request unread (reset) or after it
    // (EOF). All three mean "no answer".
    let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    match stream.write_all(hello.line().as_bytes()) {
        Err(e) if closed(&e) => {}
        Err(e) => return Err(format!("cannot send to the daemon: {e}")),
        Ok(()) => {}
    }
    Ok(reader)
}

fn closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// The next JSON line of an answer (`None` at EOF); `ok: false` is an error.
fn read_reply(socket: &Path, reader: &mut BufReader<UnixStream>) -> Result<Option<Value>, String> {
    let mut line = String::new();
    let n = match reader.read_line(&mut line) {
        Ok(n) => n,
        Err(e) if closed(&e) => 0,
        Err(e) => {
            return Err(format!(
                "no answer from the daemon at {}: {e}",
                socket.display()
            ))
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| format!("unreadable answer from the daemon: {e}"))?;
    if v["ok"] == Value::Bool(false) {
        return Err(v["error"]
            .as_str()
            .unwrap_or("the daemon refused the request")
            .to_string());
    }
    Ok(Some(v))
}
