//! The daemon's Unix socket: binding it safely, and accepting connections.
//!
//! Binding: the socket's directory is private (0700) when the daemon creates
//! it, the socket is 0600, a stale socket left by a dead daemon is replaced,
//! and a live daemon's socket is never stolen. Accepting: every peer's uid
//! (SO_PEERCRED) must equal the daemon's; the first line decides whether the
//! connection is a shim hello, a control request, or a plain MCP session (see
//! [`crate::proto`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon::Daemon;
use crate::error::ListenError;
use crate::framing::{Frame, LineReader};
use crate::proto::{self, HelloReply};
use crate::session::{self, SessionOptions};

/// How long a new connection may stay silent before its first line.
pub const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds the socket at `path` (see the module docs for the rules).
pub fn bind(path: &Path) -> Result<StdUnixListener, ListenError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        prepare_dir(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(ListenError::NotASocket(path.to_path_buf()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(ListenError::AlreadyRunning(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(socket = %path.display(), "replacing a stale socket left by a daemon that is gone");
                    std::fs::remove_file(path).map_err(|e| {
                        ListenError::Io(path.to_path_buf(), "removing stale socket", e)
                    })?;
                }
                Err(e) => {
                    return Err(ListenError::Io(
                        path.to_path_buf(),
                        "probing existing socket",
                        e,
                    ))
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ListenError::Io(path.to_path_buf(), "inspecting", e)),
    }
    let listener = StdUnixListener::bind(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            // Lost a race with another daemon starting at the same moment.
            ListenError::AlreadyRunning(path.to_path_buf())
        } else {
            ListenError::Io(path.to_path_buf(), "binding", e)
        }
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ListenError::Io(path.to_path_buf(), "setting permissions of", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ListenError::Io(path.to_path_buf(), "configuring", e))?;
    Ok(listener)
}

/// Creates the socket directory 0700, or checks an existing one: it must be
/// ours, or root's and not writable by others without the sticky bit (like
/// /tmp is sticky). A directory we own that is our dedicated one
/// (`.../stdioproxy`) is tightened to 0700.
fn prepare_dir(dir: &Path) -> Result<(), ListenError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| ListenError::Io(dir.to_path_buf(), "creating socket directory", e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ListenError::Io(dir.to_path_buf(), "setting permissions of", e))?;
            Ok(())
        }
        Err(e) => Err(ListenError::Io(
            dir.to_path_buf(),
            "inspecting socket directory",
            e,
        )),
        Ok(meta) => {
            let me = nix::unistd::getuid().as_raw();
            let mode = meta.mode() & 0o7777;
            if meta.uid() != me && meta.uid() != 0 {
                return Err(ListenError::UnsafeDirectory(
                    dir.to_path_buf(),
                    format!("owned by uid {}, not by us (uid {me})", meta.uid()),
                ));
            }
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                return Err(ListenError::UnsafeDirectory(
                    dir.to_path_buf(),
                    format!("writable by everyone without the sticky bit (mode {mode:04o})"),
                ));
            }
            let dedicated = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("stdioproxy"));
            if meta.uid() == me && dedicated && mode & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| ListenError::Io(dir.to_path_buf(), "setting permissions of", e))?;
            }
            Ok(())
        }
    }
}

/// Accepts connections until the daemon shuts down. Accept errors (such as
/// running out of fds) are retried with backoff instead of ending the loop.
pub async fn accept_loop(listener: UnixListener, daemon: Arc<Daemon>) {
    let mut shutdown = daemon.shutdown_signal();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::flag::raised(&mut shutdown) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                tokio::spawn(handle(stream, daemon.clone()));
            }
            Err(e) => {
                tracing::error!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn handle(stream: UnixStream, daemon: Arc<Daemon>) {
    let me = nix::unistd::getuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => {}
        Ok(cred) => {
            tracing::warn!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), "refused a connection from another user");
            return;
        }
        Err(e) => {
            tracing::warn!("refused a connection whose peer cannot be identified: {e}");
            return;
        }
    }
    let (read, mut write) = stream.into_split();
    let max = daemon.settings().max_message_size;
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, read), max);
    let first = match tokio::time::timeout(FIRST_LINE_TIMEOUT, reader.next_frame()).await {
        Err(_) => {
            tracing::info!("dropped a connection that sent nothing for {FIRST_LINE_TIMEOUT:?}");
            return;
        }
        Ok(Err(_)) | Ok(Ok(Frame::Eof)) => return,
        Ok(Ok(Frame::TooLong { .. })) => {
            tracing::warn!("dropped a connection whose first line exceeds {max} bytes");
            return;
        }
        Ok(Ok(Frame::Line(line))) => line,
    };
    let Some(hello) = parse_hello(&first) else {
        let opts = SessionOptions::default();
        return session::run(daemon, reader, write, None, Some(first), opts).await;
    };
    if hello["stdioproxy"].as_u64() != Some(u64::from(proto::PROTO_VERSION)) {
        let msg = format!(
            "this daemon speaks stdioproxy protocol {}, the client sent {}; use matching versions of stdioproxy and stdioproxy-shim",
            proto::PROTO_VERSION,
            hello["stdioproxy"]
        );
        let _ = write.write_all(refusal(&msg).as_bytes()).await;
        return;
    }
    if let Some(verb) = hello["control"].as_str() {
        let reply = crate::control::handle(&daemon, verb, &hello).await;
        let _ = write.write_all(reply.as_bytes()).await;
        let _ = write.shutdown().await;
        return;
    }
    let servers = match hello.get("servers") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(items)) => {
            let names: Option<_> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            match names {
                Some(n) => Some(n),
                None => {
                    let _ = write
                        .write_all(refusal("servers must be a list of names").as_bytes())
                        .await;
                    return;
                }
            }
        }
        Some(_) => {
            let _ = write
                .write_all(refusal("servers must be a list of names").as_bytes())
                .await;
            return;
        }
    };
    let opts = SessionOptions { servers };
    session::run(daemon, reader, write, Some(HelloReply::ok()), None, opts).await;
}

/// A first line is a hello when it is a JSON object with a `stdioproxy` key
/// and no `jsonrpc` key; anything else is the first MCP message.
fn parse_hello(line: &[u8]) -> Option<serde_json::Value> {
    let key = format!("\"{}\"", proto::HELLO_KEY);
    if !line.windows(key.len()).any(|w| w == key.as_bytes()) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    (v.get(proto::HELLO_KEY).is_some() && v.get("jsonrpc").is_none()).then_some(v)
}

fn refusal(message: &str) -> String {
    let v =
        serde_json::json!({ "stdioproxy": proto::PROTO_VERSION, "ok": false, "error": message });
    format!("{v}\n")
}
