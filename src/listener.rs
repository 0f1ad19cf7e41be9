//! The daemon's Unix socket: binding it safely, and accepting connections.
//!
//! Binding: the socket's directory is private (0700) when the daemon creates
//! it, the socket is 0600, a stale socket left by a dead daemon is replaced,
//! and a live daemon's socket is never stolen. Accepting: every peer's uid
//! (SO_PEERCRED) must equal the daemon's; the first line decides whether the
//! connection is a shim hello, a control request, or a plain MCP session (see
//! [`crate::proto`]).
//!
//! Limits: a connection must send its first line within `handshake_timeout`;
//! at most `max_sessions` + [`HANDSHAKE_HEADROOM`] connections wait for their
//! first line at once (each holds a 64 KiB read buffer), and at most
//! `max_sessions` sessions are open at once. Both are reservations
//! ([`Slots`]) taken before the work and held by the connection until it ends,
//! so two connections racing for the last slot cannot both win. Control
//! requests take no session slot: `status` works even when sessions are full.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon::Daemon;
use crate::error::ListenError;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, Envelope};
use crate::proto::{Hello, HelloReply};
use crate::session::{self, SessionOptions, SESSION_BUFFER};

/// How long a new connection may stay silent before its first line, unless
/// `[daemon] handshake_timeout` says otherwise.
pub const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections that may wait for their first line beyond `max_sessions`, so
/// that a burst of clients past the limit still reads their first line and
/// gets the clear refusal, and `status` still gets through.
pub const HANDSHAKE_HEADROOM: usize = 64;

/// A counter of reserved slots with a limit read at each reservation (the
/// limit can change on reload; a lower one only affects new reservations).
#[derive(Debug, Default)]
pub struct Slots {
    taken: AtomicUsize,
}

/// One reserved slot, released when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    /// Reserves a slot if fewer than `limit` are taken.
    pub fn try_take(self: &Arc<Self>, limit: usize) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The listener's reservations: connections still waiting for their first
/// line, and open sessions.
#[derive(Debug, Default)]
struct Admission {
    handshakes: Arc<Slots>,
    sessions: Arc<Slots>,
}

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

/// Tightens a socket passed by systemd to what [`bind`] would have made:
/// the socket file 0600 and, when it is our dedicated directory
/// (`.../stdioproxy`), its directory 0700 (systemd creates the directories of
/// `ListenStream=` 0755 unless the unit says `DirectoryMode=`). Problems are
/// logged, never fatal: systemd owns that socket, and the uid check on every
/// connection is what keeps other users out.
pub fn secure_activated(listener: &StdUnixListener) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let Some(path) = addr.as_pathname() else {
        return; // abstract or unnamed: no file to protect
    };
    let me = nix::unistd::getuid().as_raw();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.uid() == me && meta.mode() & 0o077 != 0 => {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {
                    tracing::info!(socket = %path.display(), "made the activated socket private (0600)")
                }
                Err(e) => {
                    tracing::warn!(socket = %path.display(), "cannot make the activated socket private: {e}")
                }
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(socket = %path.display(), "cannot inspect the activated socket: {e}")
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = prepare_dir(dir) {
            tracing::warn!("{e}");
        }
    }
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
    let admission = Arc::new(Admission::default());
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
                tokio::spawn(handle(stream, daemon.clone(), admission.clone()));
            }
            Err(e) => {
                tracing::error!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn handle(stream: UnixStream, daemon: Arc<Daemon>, admission: Arc<Admission>) {
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
    let settings = daemon.settings();
    let waiting_limit = settings.max_sessions.saturating_add(HANDSHAKE_HEADROOM);
    let Some(handshake) = admission.handshakes.try_take(waiting_limit) else {
        tracing::warn!(
            waiting = admission.handshakes.taken(),
            "dropped a connection: too many connections are waiting to send their first line (max_sessions + {HANDSHAKE_HEADROOM})"
        );
        return;
    };
    let (read, mut write) = stream.into_split();
    let max = settings.max_message_size;
    let limit = settings.handshake_timeout.0;
    let mut reader = LineReader::new(BufReader::with_capacity(SESSION_BUFFER, read), max);
    // An oversized first line cannot be a hello (those are tiny): it is the
    // first MCP message of a plain session, answered -32005 like any other
    // oversized message, and the session goes on.
    let mut too_long = None;
    let first = match tokio::time::timeout(limit, reader.next_frame()).await {
        Err(_) => {
            tracing::info!(
                "dropped a connection that sent no first line within {limit:?} (handshake_timeout)"
            );
            return;
        }
        Ok(Err(_)) | Ok(Ok(Frame::Eof)) => return,
        Ok(Ok(Frame::TooLong { prefix })) => {
            tracing::warn!(
                max,
                "client sent a first message larger than the limit; skipped"
            );
            too_long = Some(jsonrpc::error_response(
                jsonrpc::recover_id(&prefix).as_deref(),
                jsonrpc::code::MESSAGE_TOO_LARGE,
                &format!("message larger than the limit of {max} bytes; it was skipped"),
                None,
            ));
            prefix
        }
        Ok(Ok(Frame::Line(line))) => line,
    };
    drop(handshake);
    let hello = match too_long {
        Some(_) => None,
        None => match Hello::parse(&first) {
            None => None,
            Some(Ok(hello)) => Some(hello),
            Some(Err(msg)) => {
                let _ = write.write_all(HelloReply::refusal(&msg).as_bytes()).await;
                return;
            }
        },
    };
    if let Some(verb) = hello.as_ref().and_then(|h| h.control.as_deref()) {
        let reply = crate::control::handle(&daemon, verb).await;
        let _ = write.write_all(reply.as_bytes()).await;
        let _ = write.shutdown().await;
        return;
    }
    // From here on the connection is a session: reserve its slot for as long
    // as it lives.
    let max_sessions = daemon.settings().max_sessions;
    let Some(_session_slot) = admission.sessions.try_take(max_sessions) else {
        let msg = format!(
            "too many client sessions: {max_sessions} are open (max_sessions in the [daemon] section of the config); close unused MCP clients or raise the limit"
        );
        tracing::warn!(max_sessions, "refused a session: {msg}");
        let line = match &hello {
            Some(_) => HelloReply::refusal(&msg),
            None => {
                let id = match too_long {
                    Some(_) => jsonrpc::recover_id(&first),
                    None => Envelope::parse(&first)
                        .ok()
                        .and_then(|e| e.id.map(|i| i.get().to_string())),
                };
                jsonrpc::error_response(
                    id.as_deref(),
                    jsonrpc::code::TOO_MANY_SESSIONS,
                    &format!("stdioproxy refused the session: {msg}"),
                    None,
                )
            }
        };
        let _ = write.write_all(line.as_bytes()).await;
        let _ = write.shutdown().await;
        return;
    };
    let Some(hello) = hello else {
        let opts = SessionOptions::default();
        if too_long.is_some() {
            return session::run(daemon, reader, write, too_long, None, opts).await;
        }
        return session::run(daemon, reader, write, None, Some(first), opts).await;
    };
    if let Some(resumed) = &hello.resume {
        tracing::info!(
            client = resumed.client.as_deref().unwrap_or("(unnamed)"),
            resumes = resumed.count,
            "session resumed: a shim reconnected and replays its client's session"
        );
    }
    let servers = hello.servers.map(|names| names.into_iter().collect());
    let opts = SessionOptions { servers };
    session::run(daemon, reader, write, Some(HelloReply::ok()), None, opts).await;
}
