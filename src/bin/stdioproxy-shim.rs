//! `stdioproxy-shim`: what an MCP client runs as its "server".
//!
//! It connects stdin/stdout to the stdioproxy daemon's Unix socket and copies
//! bytes both ways; nothing but the daemon's MCP bytes ever reaches stdout.
//! Std only, so it starts in about a millisecond and stays small. The hello
//! line it sends first is not waited for: the client's first message follows
//! immediately, and the daemon's one-line reply is consumed before any byte
//! is copied to stdout.
//!
//! Exit codes: 0 when the client closed stdin, 1 when the daemon cannot be
//! reached, refused the session, or went away, 2 for bad arguments.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stdioproxy::paths;
use stdioproxy::proto::{shim_hello, HelloReply};

const USAGE: &str = "usage: stdioproxy-shim [--socket PATH] [--servers a,b,...]

Connects an MCP client's stdio to the stdioproxy daemon.
  --socket PATH     daemon socket (default: $STDIOPROXY_SOCKET, else
                    $XDG_RUNTIME_DIR/stdioproxy/stdioproxy.sock)
  --servers a,b     only show this client the listed servers";

fn main() -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut servers: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--socket" | "--servers" => {
                let Some(value) = inline.or_else(|| args.next()) else {
                    eprintln!("stdioproxy-shim: {flag} needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                if flag == "--socket" {
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
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("stdioproxy-shim {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("stdioproxy-shim: unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
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
    match relay(stream, &servers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stdioproxy-shim: {message}");
            ExitCode::from(1)
        }
    }
}

fn relay(stream: UnixStream, servers: &[String]) -> Result<(), String> {
    let mut up = stream.try_clone().map_err(|e| e.to_string())?;
    up.write_all(shim_hello(env!("CARGO_PKG_VERSION"), servers).as_bytes())
        .map_err(|e| format!("cannot talk to the daemon: {e}"))?;

    let client_done = Arc::new(AtomicBool::new(false));
    let done = client_done.clone();
    // stdin -> socket. Reads return as soon as any bytes are available, so a
    // message is forwarded without waiting for a full buffer.
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        let _ = up.shutdown(Shutdown::Write);
    });

    // socket -> stdout, after consuming the daemon's hello reply.
    let mut down = BufReader::with_capacity(64 * 1024, stream);
    let mut reply = String::new();
    match down.read_line(&mut reply) {
        Ok(0) => return Err("the daemon closed the connection before answering".into()),
        Ok(_) => {
            HelloReply::parse(&reply).map_err(|e| format!("the daemon refused the session: {e}"))?
        }
        Err(e) => return Err(format!("cannot read from the daemon: {e}")),
    }
    let mut stdout = io::stdout().lock();
    loop {
        let chunk = match down.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("lost the connection to the daemon: {e}")),
        };
        let n = chunk.len();
        if stdout
            .write_all(chunk)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The client went away; nothing left to do.
            return Ok(());
        }
        down.consume(n);
    }
    if client_done.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err("the daemon closed the connection (was it stopped or restarted?)".into())
    }
}
