//! `stdioproxy-shim`: what an MCP client runs as its "server".
//!
//! It connects stdin/stdout to the stdioproxy daemon's Unix socket and copies
//! bytes both ways; nothing but the daemon's MCP bytes ever reaches stdout.
//! Std only, so it starts in about a millisecond and stays small. The hello
//! line it sends first is not waited for: the client's first message follows
//! immediately, and the daemon's one-line reply is consumed before any byte
//! is copied to stdout. The main thread copies stdin -> socket (the first
//! message goes out before a second thread even exists), a second thread
//! socket -> stdout.
//!
//! Exit codes: 0 when the client closed stdin, 1 when the daemon cannot be
//! reached, refused the session, or went away, 2 for bad arguments.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stdioproxy::fit_options::{self, Fit};
use stdioproxy::paths;
use stdioproxy::proto::{shim_hello_fit, HelloReply};

const USAGE: &str = "usage: stdioproxy-shim [--socket PATH] [--servers a,b,... | --server NAME]
                       [--name-max N] [--tools search]

Connects an MCP client's stdio to the stdioproxy daemon.
  --socket PATH     daemon socket (default: $STDIOPROXY_SOCKET, else
                    $XDG_RUNTIME_DIR/stdioproxy/stdioproxy.sock)
  --servers a,b     only show this client the listed servers";

/// The whole `--help` text: the shim's flags, then the fitting ones.
fn usage_text() -> String {
    format!("{USAGE}\n{}", fit_options::USAGE)
}

fn main() -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut servers: Vec<String> = Vec::new();
    let mut fit = Fit::default();
    let usage = |message: String| {
        eprintln!("stdioproxy-shim: {message}\n{}", usage_text());
        ExitCode::from(2)
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            f if f == "--socket" || f == "--servers" || fit_options::FLAGS.contains(&f) => {
                let Some(value) = inline.or_else(|| args.next()) else {
                    eprintln!("stdioproxy-shim: {flag} needs a value\n{}", usage_text());
                    return ExitCode::from(2);
                };
                if fit_options::FLAGS.contains(&flag.as_str()) {
                    if let Err(e) = fit.set(&flag, value) {
                        return usage(e);
                    }
                } else if flag == "--socket" {
                    socket = Some(PathBuf::from(value));
                } else {
                    servers.extend(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    );
                }
            }
            "-h" | "--help" => {
                println!("{}", usage_text());
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("stdioproxy-shim {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!(
                    "stdioproxy-shim: unknown argument {arg:?}\n{}",
                    usage_text()
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = fit.check(&servers) {
        return usage(e);
    }
    let path = paths::socket_path(socket.as_deref());
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
    match relay(stream, &servers, &fit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stdioproxy-shim: {message}");
            ExitCode::from(1)
        }
    }
}

fn relay(stream: UnixStream, servers: &[String], fit: &Fit) -> Result<(), String> {
    // Raw duplicates of fds 0 and 1 behind our own buffers: every read and
    // write is one syscall (stdout's LineWriter would split a chunk that
    // ends mid-line in two writes and copy the tail), nothing else buffers
    // MCP bytes, and the buffers are never zeroed (BufReader leaves them
    // uninitialised: no page is touched that no byte was read into).
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(File::from)
            .map_err(|e| format!("cannot use stdio: {e}"))
    };
    let mut stdin = BufReader::with_capacity(BUF, dup(io::stdin().as_fd())?);
    let mut stdout = dup(io::stdout().as_fd())?;
    let mut up = stream.try_clone().map_err(|e| e.to_string())?;
    // Allocated here, before the second thread exists, so that thread
    // normally allocates nothing (and glibc sets up no second arena).
    let mut down = BufReader::with_capacity(BUF, stream);

    // The hello goes out at once, so the daemon sets the session up while
    // the client is still writing its first message.
    let hello = shim_hello_fit(env!("CARGO_PKG_VERSION"), servers, fit);
    up.write_all(hello.as_bytes())
        .map_err(|e| format!("cannot talk to the daemon: {e}"))?;
    // The client's first message (initialize) is forwarded by this thread,
    // which is already running, before a second thread is started.
    match forward_chunk(&mut stdin, &mut up) {
        Forwarded::Eof => {
            // The client left without a word: still tell it whether the
            // daemon would have taken the session (exit 1 if not).
            let _ = up.shutdown(Shutdown::Write);
            read_reply(&mut down)?;
            let _ = copy_down(&mut down, &mut stdout);
            return Ok(());
        }
        Forwarded::Failed(e) => {
            // A refusal closes the connection: its reason beats "broken pipe".
            read_reply(&mut down)?;
            return Err(format!("cannot talk to the daemon: {e}"));
        }
        Forwarded::Chunk => {}
    }

    let client_done = Arc::new(AtomicBool::new(false));
    let done = client_done.clone();
    // socket -> stdout on a second thread. It ends the process itself when
    // the daemon refuses, fails or goes away while the client still talks.
    let pump = std::thread::spawn(move || {
        let fail = |message: String| -> ! {
            eprintln!("stdioproxy-shim: {message}");
            std::process::exit(1);
        };
        if let Err(e) = read_reply(&mut down) {
            fail(e);
        }
        match copy_down(&mut down, &mut stdout) {
            Ok(()) => {}
            Err(_) if done.load(Ordering::SeqCst) => {}
            Err(message) => fail(message),
        }
    });

    // stdin -> socket. Reads return as soon as any bytes are available, so a
    // message is forwarded without waiting for a full buffer.
    loop {
        match forward_chunk(&mut stdin, &mut up) {
            Forwarded::Chunk => {}
            Forwarded::Eof => {
                client_done.store(true, Ordering::SeqCst);
                break;
            }
            // The daemon is gone; the other thread reports it.
            Forwarded::Failed(_) => break,
        }
    }
    let _ = up.shutdown(Shutdown::Write);
    // The daemon answers what is in flight, then closes: relay it all.
    let _ = pump.join();
    Ok(())
}

/// Size of each direction's buffer (a read never waits for it to fill).
const BUF: usize = 64 * 1024;

enum Forwarded {
    Chunk,
    /// The client closed stdin (or it failed).
    Eof,
    /// Writing to the daemon failed.
    Failed(io::Error),
}

/// Copies whatever the client has written so far (one read) to the daemon.
fn forward_chunk(stdin: &mut BufReader<File>, up: &mut UnixStream) -> Forwarded {
    let chunk = loop {
        match stdin.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok([]) | Err(_) => return Forwarded::Eof,
            Ok(chunk) => break chunk,
        }
    };
    let n = chunk.len();
    if let Err(e) = up.write_all(chunk) {
        return Forwarded::Failed(e);
    }
    stdin.consume(n);
    Forwarded::Chunk
}

/// Reads and checks the daemon's one-line hello reply (never forwarded).
/// Any failure here is the user's to see, even if the client already left.
fn read_reply(down: &mut BufReader<UnixStream>) -> Result<(), String> {
    let closed = || "the daemon closed the connection before answering".to_string();
    let chunk = loop {
        match down.fill_buf() {
            Ok([]) => return Err(closed()),
            Ok(chunk) => break chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read from the daemon: {e}")),
        }
    };
    let refused = |e| format!("the daemon refused the session: {e}");
    if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
        // The usual case: the whole line in one read, checked in place.
        HelloReply::parse(&String::from_utf8_lossy(&chunk[..end])).map_err(refused)?;
        down.consume(end + 1);
        return Ok(());
    }
    let mut line = Vec::new();
    match down.read_until(b'\n', &mut line) {
        Ok(_) if line.ends_with(b"\n") => {
            HelloReply::parse(&String::from_utf8_lossy(&line)).map_err(refused)
        }
        Ok(_) => Err(closed()),
        Err(e) => Err(format!("cannot read from the daemon: {e}")),
    }
}

/// Copies socket -> stdout until the daemon closes. `Ok` also when the
/// client stopped reading (nothing left to do).
fn copy_down(down: &mut BufReader<UnixStream>, stdout: &mut File) -> Result<(), String> {
    loop {
        let chunk = match down.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("lost the connection to the daemon: {e}")),
        };
        let n = chunk.len();
        if stdout.write_all(chunk).is_err() {
            // The client went away; nothing left to do.
            return Ok(());
        }
        down.consume(n);
    }
    Err("the daemon closed the connection (was it stopped or restarted?)".into())
}
