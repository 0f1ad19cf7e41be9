//! `stdioproxy-shim`: what an MCP client runs as its "server".
//!
//! It connects stdin/stdout to the stdioproxy daemon's Unix socket and
//! relays complete lines both ways; nothing but the daemon's MCP bytes (and
//! the few messages the shim writes itself, below) ever reaches stdout. The
//! hello line it sends first is not waited for: the client's first message
//! follows immediately, and the daemon's one-line reply is consumed before
//! any byte is copied to stdout. The main thread copies stdin -> socket (the
//! first message goes out before a second thread even exists), a second
//! thread socket -> stdout.
//!
//! When the connection is lost (daemon restart, upgrade, crash), the session
//! survives: [`stdioproxy::shim::resume`] answers the requests that were in
//! flight with an error, queues what the client sends meanwhile, and this
//! file reconnects with backoff (20 ms doubling to 1 s) for up to
//! `--reconnect-timeout`, replays the session and sends the queue (on a
//! third, short-lived thread, so the socket is always read while a long
//! queue is written).
//!
//! Exit codes: 0 when the client closed stdin, 1 when the daemon cannot be
//! reached, refused the session, or did not come back in time, 2 for bad
//! arguments.

use std::fs::File;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stdioproxy::config::ConfigDuration;
use stdioproxy::paths;
use stdioproxy::proto::{HelloReply, Resumed};
use stdioproxy::shim::lines::LineBuf;
use stdioproxy::shim::options::{Command, Options, USAGE};
use stdioproxy::shim::resume::{FromClient, Phase, Resume};

/// Size of each direction's buffer (a read never waits for it to fill).
/// Both are allocated by the main thread before the second thread exists,
/// so that thread normally allocates nothing and glibc sets up no second
/// arena. 128 KiB is glibc's mmap threshold: an allocation that size is
/// fresh zero pages from the kernel, which calloc does not write, so only
/// the pages reads actually reach count in the shim's memory (a smaller
/// zeroed buffer would be memset, every page touched at start).
const BUF: usize = 128 * 1024;
/// First reconnect delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let command = Options::from_env(|k| std::env::var(k).ok())
        .and_then(|o| o.parse(std::env::args().skip(1)));
    let options = match command {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("stdioproxy-shim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("stdioproxy-shim: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let path = paths::socket_path(options.socket.as_deref());
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "stdioproxy-shim: cannot reach the stdioproxy daemon at {}: {e}; start it with `systemctl --user start stdioproxy` (or run `stdioproxy serve`)",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    match run(options, path, stream) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stdioproxy-shim: {message}");
            ExitCode::from(1)
        }
    }
}

/// What both threads share.
struct Shared {
    state: Mutex<State>,
    /// Held for each write, so the shim's own lines never cut into a
    /// message and exiting never cuts one short.
    stdout: Mutex<File>,
    path: PathBuf,
    options: Options,
}

struct State {
    resume: Resume,
    /// The current connection, for writing (`None` while down).
    conn: Option<Arc<UnixStream>>,
    client_done: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere (a bug) must not also hang the relay.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Writes the shim's or the daemon's bytes to the client; `false` when
    /// the client stopped reading.
    fn to_client(&self, bytes: &[u8]) -> bool {
        bytes.is_empty() || lock(&self.stdout).write_all(bytes).is_ok()
    }

    /// Ends the process with `code`, after any write in progress.
    fn exit(&self, code: i32, message: Option<&str>) -> ! {
        let _out = lock(&self.stdout);
        if let Some(m) = message {
            eprintln!("stdioproxy-shim: {m}");
        }
        std::process::exit(code)
    }
}

fn run(options: Options, path: PathBuf, stream: UnixStream) -> Result<(), String> {
    // Raw duplicates of fds 0 and 1 behind our own buffers: every read and
    // write is one syscall, and nothing else buffers MCP bytes.
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(File::from)
            .map_err(|e| format!("cannot use stdio: {e}"))
    };
    let mut stdin = dup(io::stdin().as_fd())?;
    let stdout = dup(io::stdout().as_fd())?;
    let up = Arc::new(stream.try_clone().map_err(|e| e.to_string())?);
    // The hello goes out at once, so the daemon sets the session up while
    // the client is still writing its first message.
    (&*up)
        .write_all(options.hello(None).line().as_bytes())
        .map_err(|e| format!("cannot talk to the daemon: {e}"))?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            resume: Resume::new(),
            conn: Some(up),
            client_done: false,
        }),
        stdout: Mutex::new(stdout),
        path,
        options,
    });
    let mut input = LineBuf::with_capacity(BUF, BUF);
    let output = LineBuf::with_capacity(BUF, BUF);
    // The client's first message (initialize) is forwarded by this thread,
    // which is already running, before a second thread is started.
    let open = forward(&shared, &mut input, &mut stdin);
    let sh = shared.clone();
    std::thread::spawn(move || daemon_side(&sh, stream, output));
    if open {
        while forward(&shared, &mut input, &mut stdin) {}
    }
    client_closed(&shared);
    // The other thread ends the process once the daemon side is done.
    loop {
        std::thread::park();
    }
}

/// One read from the client, handed on; `false` once stdin is closed.
fn forward(sh: &Shared, input: &mut LineBuf, stdin: &mut File) -> bool {
    let open = matches!(input.read_from(stdin), Ok(n) if n > 0);
    let last;
    let chunk: &[u8] = if open {
        input.lines()
    } else if input.partial() > 0 {
        // A last message without a newline still counts.
        last = [input.tail(), b"\n"].concat();
        &last
    } else {
        return false;
    };
    if chunk.is_empty() {
        return true;
    }
    let (action, conn) = {
        let mut st = lock(&sh.state);
        let action = st.resume.from_client(chunk);
        (action, st.conn.clone())
    };
    match action {
        FromClient::Send(pass) => {
            if let Some(conn) = conn {
                // A failed write means the connection is gone: the other
                // thread sees that and answers what was in flight; what
                // was not written at all goes out again after the
                // reconnect.
                send(sh, &conn, pass.bytes(chunk), false);
            }
        }
        FromClient::Queued { first } => {
            if first {
                eprintln!(
                    "stdioproxy-shim: the daemon is not back yet; the client's messages wait in a queue"
                );
            }
        }
        FromClient::Overflow(errors) => {
            sh.to_client(&errors);
            sh.exit(
                1,
                Some(&format!(
                    "the daemon at {} is unreachable and too much is queued for it (over 1000 messages or 8 MiB); giving up",
                    sh.path.display()
                )),
            );
        }
    }
    if open {
        input.consume_lines();
    }
    open
}

/// Writes lines to the daemon; on failure, hands the lines not wholly
/// written back to the session memory (they never reached the daemon;
/// `ahead` as in `Resume::undelivered`).
fn send(sh: &Shared, conn: &UnixStream, bytes: &[u8], ahead: bool) -> bool {
    let mut written = 0;
    while written < bytes.len() {
        match (&*conn).write(&bytes[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if written == bytes.len() {
        return true;
    }
    // From the start of the first line not wholly written.
    let from = bytes[..written]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    lock(&sh.state).resume.undelivered(&bytes[from..], ahead);
    false
}

/// The client closed stdin: finish what is under way, then exit 0.
fn client_closed(sh: &Shared) {
    let mut st = lock(&sh.state);
    st.client_done = true;
    match st.resume.phase() {
        Phase::Live => {
            // The daemon answers and closes; the other thread relays that.
            if let Some(conn) = &st.conn {
                let _ = conn.shutdown(Shutdown::Write);
            }
        }
        Phase::Down if !st.resume.has_queued() => {
            drop(st);
            sh.exit(0, None);
        }
        // The queue still goes out once the daemon is back.
        _ => {}
    }
}

/// Why a connection ended.
enum Ended {
    Lost(String),
    Refused(String),
}

/// The socket -> stdout side, for the first connection and every one after
/// it. Never returns: it ends the process.
fn daemon_side(sh: &Arc<Shared>, first: UnixStream, mut buf: LineBuf) -> ! {
    let mut stream = first;
    let mut flush_on_reply = false;
    // Since when the session has had no usable connection.
    let mut outage: Option<Instant> = None;
    let mut accepted = false;
    loop {
        buf.clear();
        match relay(
            sh,
            &mut stream,
            &mut buf,
            flush_on_reply,
            &mut outage,
            &mut accepted,
        ) {
            Ended::Refused(why) => {
                let errors = lock(&sh.state).resume.fail(&format!(
                    "stdioproxy: the daemon refused the session: {why}"
                ));
                sh.to_client(&errors);
                sh.exit(1, Some(&format!("the daemon refused the session: {why}")));
            }
            Ended::Lost(why) if !accepted => {
                // Never accepted at all (another user's daemon closes
                // without a word): nothing to resume.
                let errors = lock(&sh.state).resume.fail(&format!("stdioproxy: {why}"));
                sh.to_client(&errors);
                sh.exit(1, Some(&why));
            }
            Ended::Lost(why) => {
                let (errors, done, queued) = {
                    let mut st = lock(&sh.state);
                    st.conn = None;
                    let errors = st.resume.lost();
                    (errors, st.client_done, st.resume.has_queued())
                };
                sh.to_client(&errors);
                if done && !queued {
                    sh.exit(0, None);
                }
                let timeout = sh.options.reconnect_timeout;
                if timeout.is_zero() {
                    sh.exit(
                        1,
                        Some(&format!(
                            "{why} (reconnecting is off: --reconnect-timeout 0)"
                        )),
                    );
                }
                if outage.is_none() {
                    eprintln!(
                        "stdioproxy-shim: {why}; reconnecting to {} for up to {} (the session is kept)",
                        sh.path.display(),
                        ConfigDuration(timeout)
                    );
                }
                let since = *outage.get_or_insert_with(Instant::now);
                (stream, flush_on_reply) = reconnect(sh, since);
            }
        }
    }
}

/// Time left of the reconnect timeout, `None` when it ran out.
fn outage_left(since: Instant, timeout: Duration) -> Option<Duration> {
    timeout
        .checked_sub(since.elapsed())
        .filter(|d| !d.is_zero())
}

/// Connects again (with backoff) and sends the hello and the replay;
/// gives up, failing what is queued, when the reconnect timeout runs out.
fn reconnect(sh: &Arc<Shared>, since: Instant) -> (UnixStream, bool) {
    let timeout = sh.options.reconnect_timeout;
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(left) = outage_left(since, timeout) else {
            let why = format!(
                "the daemon at {} did not come back within {} (--reconnect-timeout); giving up",
                sh.path.display(),
                ConfigDuration(timeout)
            );
            let errors = lock(&sh.state)
                .resume
                .fail(&format!("stdioproxy: {why}; this request was never sent"));
            sh.to_client(&errors);
            sh.exit(1, Some(&why));
        };
        if let Ok(stream) = UnixStream::connect(&sh.path) {
            if let Some(flush) = handshake(sh, &stream, left) {
                return (stream, flush);
            }
        }
        std::thread::sleep(backoff.min(left));
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Sends the hello and the replay on a new connection; `Some(flush now)`
/// when that worked.
fn handshake(sh: &Shared, stream: &UnixStream, left: Duration) -> Option<bool> {
    // The new daemon must answer within what is left of the timeout (with
    // the socket unit, systemd accepts the connection before it runs).
    stream.set_read_timeout(Some(left)).ok()?;
    let writer = Arc::new(stream.try_clone().ok()?);
    let (mut bytes, flush) = {
        let mut st = lock(&sh.state);
        let again = st.resume.reconnected();
        let resumed = Resumed {
            client: st.resume.client_name().map(str::to_string),
            count: st.resume.resumes() + 1,
        };
        st.conn = Some(writer.clone());
        (sh.options.hello(Some(resumed)).line().into_bytes(), again)
    };
    bytes.extend_from_slice(&flush.replay);
    if (&*writer).write_all(&bytes).is_err() {
        let mut st = lock(&sh.state);
        st.conn = None;
        let errors = st.resume.lost();
        drop(st);
        sh.to_client(&errors);
        return None;
    }
    Some(flush.flush)
}

/// Relays one connection's daemon -> client bytes until it ends.
fn relay(
    sh: &Arc<Shared>,
    stream: &mut UnixStream,
    buf: &mut LineBuf,
    mut flush_on_reply: bool,
    outage: &mut Option<Instant>,
    accepted: &mut bool,
) -> Ended {
    let conn = lock(&sh.state).resume.connection();
    let mut reply_read = false;
    loop {
        match buf.read_from(stream) {
            Ok(0) => {
                return Ended::Lost(if reply_read {
                    "the daemon closed the connection".into()
                } else {
                    "the daemon closed the connection before answering".into()
                })
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ended::Lost(format!(
                    "the daemon at {} accepted the connection but did not answer",
                    sh.path.display()
                ))
            }
            Err(e) => return Ended::Lost(format!("lost the connection to the daemon: {e}")),
        }
        if !reply_read {
            let Some(line) = buf.first_line() else {
                continue;
            };
            if let Err(why) = HelloReply::parse(line) {
                return Ended::Refused(why);
            }
            let n = line.len();
            buf.consume(n);
            reply_read = true;
            *accepted = true;
            if flush_on_reply {
                flush_on_reply = false;
                resumed(sh, stream, conn, outage);
            }
        }
        let chunk = buf.lines();
        if chunk.is_empty() {
            continue;
        }
        let out = lock(&sh.state).resume.from_daemon(chunk);
        if let Some(pass) = &out.to_client {
            if !sh.to_client(pass.bytes(chunk)) {
                // The client went away; nothing left to do.
                sh.exit(0, None);
            }
        }
        for note in &out.notes {
            eprintln!("stdioproxy-shim: {note}");
        }
        if let Some(why) = out.fatal {
            sh.exit(1, Some(&why));
        }
        if out.flush {
            resumed(sh, stream, conn, outage);
        }
        buf.consume_lines();
    }
}

/// The session is resumed on connection `conn`: the outage is over, and
/// the queue goes out on its own thread.
fn resumed(sh: &Arc<Shared>, stream: &UnixStream, conn: u64, outage: &mut Option<Instant>) {
    if outage.take().is_some() {
        eprintln!("stdioproxy-shim: reconnected to {}", sh.path.display());
    }
    let _ = stream.set_read_timeout(None);
    let sh = sh.clone();
    std::thread::spawn(move || flush(&sh, conn));
}

/// Sends what was queued for connection `conn`, in order.
fn flush(sh: &Shared, conn: u64) {
    loop {
        let (batch, writer) = {
            let mut st = lock(&sh.state);
            match st.resume.take_batch(conn) {
                Some(batch) => (batch, st.conn.clone()),
                None => {
                    if st.client_done && st.resume.phase() == Phase::Live {
                        if let Some(c) = &st.conn {
                            let _ = c.shutdown(Shutdown::Write);
                        }
                    }
                    return;
                }
            }
        };
        let Some(writer) = writer else { return };
        if !send(sh, &writer, &batch, true) {
            return;
        }
    }
}
