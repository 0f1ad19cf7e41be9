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
//! ([`crate::slots`]) taken before the work and held by the connection until it ends,
//! so two connections racing for the last slot cannot both win. Control
//! requests take no session slot: `status` works even when sessions are full.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

use crate::config::DaemonSettings;
use crate::control::Control;
use crate::error::ListenError;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, Envelope};
use crate::proto::{self, HelloReply};
use crate::session::{self, Hub, SessionOptions, SESSION_BUFFER};
use crate::slots::{Slot, Slots};

/// Connections that may wait for their first line beyond `max_sessions`, so
/// that a burst of clients past the limit still reads their first line and
/// gets the clear refusal, and `status` still gets through.
pub const HANDSHAKE_HEADROOM: usize = 64;

/// Where the listener hands each connection (a session through the session
/// [`Hub`], a control request to [`Control`]), and its reservations:
/// connections still waiting for their first line, and open sessions (the
/// daemon's one session counter, shared with `status`).
pub struct Handoff {
    hub: Arc<Hub>,
    control: Arc<Control>,
    sessions: Arc<Slots>,
    handshakes: Arc<Slots>,
}

impl Handoff {
    /// Hands sessions to `hub` and control requests to `control`; counts
    /// open sessions in `sessions`.
    pub fn new(hub: Arc<Hub>, control: Arc<Control>, sessions: Arc<Slots>) -> Self {
        Self {
            hub,
            control,
            sessions,
            handshakes: Arc::default(),
        }
    }
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
pub async fn accept_loop(listener: UnixListener, handoff: Arc<Handoff>) {
    let mut shutdown = handoff.hub.shutdown_signal();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::flag::raised(&mut shutdown) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                tokio::spawn(handle(stream, handoff.clone()));
            }
            Err(e) => {
                tracing::error!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A connection's first line.
enum First {
    /// A whole line: a hello, a control request, or the first MCP message.
    Line(Vec<u8>),
    /// Longer than the message limit: the start of the first MCP message of
    /// a plain session, which is answered with `error` and goes on.
    TooLong { prefix: Vec<u8>, error: String },
}

/// What a hello line asks for.
enum Hello {
    /// A hello this daemon cannot take (another protocol version, an
    /// unknown field, a malformed one): refused with this message.
    Refused(String),
    /// A control request: its verb and the whole hello.
    Control(String, proto::Hello),
    /// A session with these options.
    Session(SessionOptions),
}

async fn handle(stream: UnixStream, h: Arc<Handoff>) {
    if !peer_is_us(&stream) {
        return;
    }
    let settings = h.hub.settings.get();
    let (read, mut write) = stream.into_split();
    let max = settings.max_message_size;
    let mut reader = LineReader::new(BufReader::with_capacity(SESSION_BUFFER, read), max);
    let Some(first) = first_line(&h, &mut reader, &settings).await else {
        return;
    };
    let hello = match &first {
        First::Line(line) => read_hello(line),
        First::TooLong { .. } => None,
    };
    let options = match hello {
        Some(Hello::Refused(msg)) => {
            let _ = write.write_all(HelloReply::refusal(&msg).as_bytes()).await;
            return;
        }
        Some(Hello::Control(verb, request)) if verb == "logs" => {
            // The one streaming answer (`logs --follow`): it ends when the
            // peer closes its side.
            let peer_gone = async move {
                while let Ok(Frame::Line(_) | Frame::TooLong { .. }) = reader.next_frame().await {}
            };
            let shutdown = h.hub.shutdown_signal();
            h.control
                .logs(&request, &mut write, shutdown, peer_gone)
                .await;
            let _ = write.shutdown().await;
            return;
        }
        Some(Hello::Control(verb, request)) => {
            let reply = h.control.handle(&verb, &request).await;
            let _ = write.write_all(reply.as_bytes()).await;
            let _ = write.shutdown().await;
            return;
        }
        Some(Hello::Session(options)) => Some(options),
        None => None,
    };
    // From here on the connection is a session: reserve its slot for as long
    // as it lives.
    let Some(_session_slot) = reserve_session(&h, options.is_some(), &first, &mut write).await
    else {
        return;
    };
    let hub = h.hub.clone();
    match (options, first) {
        (None, First::TooLong { error, .. }) => {
            let opts = SessionOptions::default();
            session::run(hub, reader, write, Some(error), None, opts).await;
        }
        (None, First::Line(line)) => {
            let opts = SessionOptions::default();
            session::run(hub, reader, write, None, Some(line), opts).await;
        }
        (Some(opts), _) => {
            if let Err(msg) = session::check_options(&hub, &opts) {
                let _ = write.write_all(HelloReply::refusal(&msg).as_bytes()).await;
                return;
            }
            if opts.resumed.is_some() {
                h.control.count_resume();
            }
            session::run(hub, reader, write, Some(HelloReply::ok()), None, opts).await;
        }
    }
}

/// True when the peer runs as our uid (SO_PEERCRED); logs why not.
fn peer_is_us(stream: &UnixStream) -> bool {
    let me = nix::unistd::getuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => true,
        Ok(cred) => {
            tracing::warn!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), "refused a connection from another user");
            false
        }
        Err(e) => {
            tracing::warn!("refused a connection whose peer cannot be identified: {e}");
            false
        }
    }
}

/// Reads the first line within `handshake_timeout`, holding a handshake slot
/// meanwhile. `None`: the connection is dropped (no slot, silent, closed).
async fn first_line(
    h: &Handoff,
    reader: &mut LineReader<BufReader<OwnedReadHalf>>,
    settings: &DaemonSettings,
) -> Option<First> {
    let waiting_limit = settings.max_sessions.saturating_add(HANDSHAKE_HEADROOM);
    let Some(_handshake) = h.handshakes.try_take(waiting_limit) else {
        tracing::warn!(
            waiting = h.handshakes.taken(),
            "dropped a connection: too many connections are waiting to send their first line (max_sessions + {HANDSHAKE_HEADROOM})"
        );
        return None;
    };
    let (max, limit) = (settings.max_message_size, settings.handshake_timeout.0);
    match tokio::time::timeout(limit, reader.next_frame()).await {
        Err(_) => {
            tracing::info!(
                "dropped a connection that sent no first line within {limit:?} (handshake_timeout)"
            );
            None
        }
        Ok(Err(_)) | Ok(Ok(Frame::Eof)) => None,
        // An oversized first line cannot be a hello (those are tiny): it is
        // the first MCP message of a plain session, answered -32005 like any
        // other oversized message, and the session goes on.
        Ok(Ok(Frame::TooLong { prefix })) => {
            tracing::warn!(
                max,
                "client sent a first message larger than the limit; skipped"
            );
            let error = jsonrpc::error_response(
                jsonrpc::recover_id(&prefix).as_deref(),
                jsonrpc::code::MESSAGE_TOO_LARGE,
                &format!("message larger than the limit of {max} bytes; it was skipped"),
                None,
            );
            Some(First::TooLong { prefix, error })
        }
        Ok(Ok(Frame::Line(line))) => Some(First::Line(line)),
    }
}

/// Reserves a session slot under `max_sessions`; when all are taken, answers
/// the refusal (a hello refusal to a shim, a JSON-RPC error to a plain
/// client) and returns `None`.
async fn reserve_session(
    h: &Handoff,
    said_hello: bool,
    first: &First,
    write: &mut OwnedWriteHalf,
) -> Option<Slot> {
    let max_sessions = h.hub.settings.get().max_sessions;
    if let Some(slot) = h.sessions.try_take(max_sessions) {
        return Some(slot);
    }
    let msg = format!(
        "too many client sessions: {max_sessions} are open (max_sessions in the [daemon] section of the config); close unused MCP clients or raise the limit"
    );
    tracing::warn!(max_sessions, "refused a session: {msg}");
    let line = if said_hello {
        HelloReply::refusal(&msg)
    } else {
        let id = match first {
            First::TooLong { prefix, .. } => jsonrpc::recover_id(prefix),
            First::Line(line) => Envelope::parse(line)
                .ok()
                .and_then(|e| e.id.map(|i| i.get().to_string())),
        };
        jsonrpc::error_response(
            id.as_deref(),
            jsonrpc::code::TOO_MANY_SESSIONS,
            &format!("stdioproxy refused the session: {msg}"),
            None,
        )
    };
    let _ = write.write_all(line.as_bytes()).await;
    let _ = write.shutdown().await;
    None
}

/// Reads a first line as a hello (the typed [`proto::Hello`], shared with
/// the shim): `None` when it is not one, then it is the first MCP message.
fn read_hello(line: &[u8]) -> Option<Hello> {
    let hello = match proto::Hello::parse(line)? {
        Ok(hello) => hello,
        Err(msg) => return Some(Hello::Refused(msg)),
    };
    if let Some(verb) = hello.control.clone() {
        return Some(Hello::Control(verb, hello));
    }
    // A workspace that is not an existing directory refuses this session
    // only, with the reason.
    let workspace = match crate::workspace::Workspace::from_hello(hello.workspace.as_ref()) {
        Ok(w) => w,
        Err(why) => return Some(Hello::Refused(why)),
    };
    Some(match session::options_from_hello(hello) {
        Ok(options) => Hello::Session(SessionOptions {
            workspace,
            ..options
        }),
        Err(msg) => Hello::Refused(msg),
    })
}
