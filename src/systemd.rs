//! The daemon's side of the systemd service protocol: socket activation,
//! `sd_notify` state changes and the watchdog.
//!
//! # Why it looks like this
//!
//! - **Taking the environment before threads exist.** systemd passes the
//!   activated socket as fd 3 with `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES`,
//!   and the watchdog with `WATCHDOG_USEC`/`WATCHDOG_PID`. These variables
//!   must not reach the MCP servers the daemon spawns (a child that believes
//!   it was socket-activated would steal or misinterpret fd 3), so they are
//!   read *and removed* by [`take_activated_listener`] and
//!   [`take_watchdog_interval`]. Removing environment variables is only sound
//!   while the process is single-threaded, hence both must run in `main`
//!   before the tokio runtime is built.
//! - **Keeping `NOTIFY_SOCKET`.** It is re-read on every notification, so it
//!   stays in the daemon's environment; the supervisor removes it (and anything
//!   else [`is_service_manager_var`] names) from each child's environment with
//!   `Command::env_remove`.
//! - **Reloads are one datagram.** With `Type=notify-reload` (systemd >= 253)
//!   a `RELOADING=1` that does not carry `MONOTONIC_USEC=` in the *same*
//!   message makes `systemctl reload` hang until its timeout and then fail.
//!   [`notify_reloading`] therefore sends both together.
//! - **Notifications never fail the daemon.** They are a courtesy to the
//!   service manager: each function is a no-op without `NOTIFY_SOCKET` (a
//!   daemon started by hand or by `nix run`) and only logs a warning when
//!   sending fails.
//! - **Blocking fds.** systemd passes listening sockets in blocking mode, and
//!   tokio's `UnixListener::from_std` panics in debug builds on a blocking
//!   socket, so the listener is switched to non-blocking here.
//!
//! Messages are built with the `sd-notify` crate's [`NotifyState`] but sent by
//! `send_notification` here, which takes the socket address as a parameter
//! (so it can be tested against a fake receiver without touching the process
//! environment) and also understands abstract (`@name`) socket addresses.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;

use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};
use nix::sys::stat::{fstat, SFlag};
use sd_notify::NotifyState;

/// `FileDescriptorName=` of `systemd/stdioproxy.socket`.
pub const SOCKET_FD_NAME: &str = "stdioproxy";

/// The environment variable naming the notification socket.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Takes the listening socket passed by systemd socket activation, if any,
/// and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment.
///
/// Picks the descriptor named [`SOCKET_FD_NAME`], or the only descriptor when
/// there is exactly one; checks that it is a listening `AF_UNIX` stream socket
/// and makes it non-blocking, ready for `tokio::net::UnixListener::from_std`.
/// Other passed descriptors are closed. `Ok(None)` when the process was not
/// socket-activated (or when called a second time).
///
/// Must be called before any thread is started (in particular before the
/// tokio runtime is built), because it modifies the environment.
pub fn take_activated_listener() -> io::Result<Option<UnixListener>> {
    // Safety: this function's contract (documented above) is that it runs
    // while the process is still single-threaded, which is what
    // `std::env::remove_var` requires. The descriptors it yields were passed
    // to this process by the service manager (sd-notify checked that
    // LISTEN_PID is our pid) and nothing else in the process owns them.
    let fds: Vec<(RawFd, String)> =
        unsafe { sd_notify::listen_fds_with_names_and_unset_env() }?.collect();
    if fds.is_empty() {
        return Ok(None);
    }
    let chosen = pick_fd(&fds)?;
    let mut listener = None;
    for (fd, name) in fds {
        // Safety: see above; each passed descriptor is owned exactly once,
        // here, and the environment that described them is gone, so no other
        // code can claim them again.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if fd == chosen {
            listener = Some(owned);
        } else {
            tracing::warn!(
                fd,
                name,
                "closing an unexpected socket-activated descriptor"
            );
            drop(owned);
        }
    }
    match listener {
        Some(fd) => listener_from_fd(fd).map(Some),
        None => Ok(None),
    }
}

/// Chooses the descriptor to use among those passed by systemd.
fn pick_fd(fds: &[(RawFd, String)]) -> io::Result<RawFd> {
    if let Some((fd, _)) = fds.iter().find(|(_, name)| name == SOCKET_FD_NAME) {
        return Ok(*fd);
    }
    match fds {
        [(fd, _)] => Ok(*fd),
        _ => {
            let names: Vec<&str> = fds.iter().map(|(_, n)| n.as_str()).collect();
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "systemd passed {} sockets ({}) and none is named {SOCKET_FD_NAME:?}; \
                     set FileDescriptorName={SOCKET_FD_NAME} in the socket unit",
                    fds.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}

/// Validates that `fd` is a listening Unix stream socket and turns it into a
/// non-blocking listener.
fn listener_from_fd(fd: OwnedFd) -> io::Result<UnixListener> {
    let raw = fd.as_raw_fd();
    let invalid = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket-activated descriptor {raw} {what}; stdioproxy.socket must use ListenStream= with a path and Accept=no"),
        )
    };

    let st = fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(invalid("is not a socket".into()));
    }
    let local = getsockname::<SockaddrStorage>(raw)?;
    if local.family() != Some(AddressFamily::Unix) {
        return Err(invalid("is not a Unix-domain socket".into()));
    }
    if getsockopt(&fd, sockopt::SockType)? != SockType::Stream {
        return Err(invalid("is not a stream socket".into()));
    }
    if !getsockopt(&fd, sockopt::AcceptConn)? {
        return Err(invalid("is not listening".into()));
    }

    let listener = UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Returns the interval at which to send `WATCHDOG=1` (half of the unit's
/// `WatchdogSec=`, as sd_watchdog_enabled(3) recommends), or `None` when the
/// watchdog is off. Removes `WATCHDOG_USEC` and `WATCHDOG_PID` from the
/// environment.
///
/// Must be called before any thread is started (it modifies the environment).
/// Ping from the main event loop, not from an independent timer task: a task
/// that keeps pinging while the loop is wedged defeats the watchdog.
pub fn take_watchdog_interval() -> Option<Duration> {
    // Safety: this function's contract (documented above) is that it runs
    // while the process is still single-threaded, as `remove_var` requires.
    let timeout = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
    timeout.and_then(ping_interval)
}

/// Half the watchdog timeout; `None` for a zero timeout (watchdog off).
fn ping_interval(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then(|| timeout / 2)
}

/// Tells systemd the daemon is up (`READY=1`) with a one-line `STATUS=`.
/// Also ends a reload started with [`notify_reloading`].
pub fn notify_ready(status: &str) {
    let status = one_line(status);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Updates the one-line `STATUS=` shown by `systemctl --user status`.
pub fn notify_status(status: &str) {
    let status = one_line(status);
    notify(&[NotifyState::Status(&status)]);
}

/// Tells systemd a reload started: `RELOADING=1` and `MONOTONIC_USEC=` (the
/// current `CLOCK_MONOTONIC` time) in one datagram, as `Type=notify-reload`
/// requires. Follow it with [`notify_ready`] when the reload is done,
/// whether the new config was applied or rejected.
pub fn notify_reloading() {
    let Some(socket) = notify_socket() else {
        return;
    };
    match reloading_message() {
        Ok(states) => send_or_warn(&socket, &states),
        // Without MONOTONIC_USEC, RELOADING=1 would make the reload hang, so
        // send nothing; the READY=1 that follows keeps the state consistent.
        Err(e) => tracing::warn!(error = %e, "cannot read CLOCK_MONOTONIC for RELOADING=1"),
    }
}

/// The states of a reload notification.
fn reloading_message() -> io::Result<[NotifyState<'static>; 3]> {
    Ok([
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now()?,
        NotifyState::Status("reloading configuration"),
    ])
}

/// Keeps the watchdog happy (`WATCHDOG=1`). Call it at the interval returned
/// by [`take_watchdog_interval`], from the main loop.
pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// Tells systemd the daemon is shutting down (`STOPPING=1`).
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// True for environment variables that belong to the daemon's own
/// relationship with the service manager and must not be inherited by
/// children: `NOTIFY_SOCKET`, `LISTEN_*` and `WATCHDOG_*`.
pub fn is_service_manager_var(key: &str) -> bool {
    key == NOTIFY_SOCKET || key.starts_with("LISTEN_") || key.starts_with("WATCHDOG_")
}

/// The notification socket address, if the service manager gave one.
fn notify_socket() -> Option<std::ffi::OsString> {
    std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty())
}

/// Sends `states` if `NOTIFY_SOCKET` is set; logs failures.
fn notify(states: &[NotifyState<'_>]) {
    if let Some(socket) = notify_socket() {
        send_or_warn(&socket, states);
    }
}

fn send_or_warn(socket: &OsStr, states: &[NotifyState<'_>]) {
    if let Err(e) = send_notification(socket, states) {
        tracing::warn!(
            error = %e,
            socket = %socket.to_string_lossy(),
            message = %format_message(states).trim_end().replace('\n', " "),
            "cannot notify the service manager"
        );
    }
}

/// `KEY=VALUE` lines, one per state.
fn format_message(states: &[NotifyState<'_>]) -> String {
    states.iter().map(|s| format!("{s}\n")).collect()
}

/// Sends `states` as a single datagram to the notification socket `socket`:
/// a filesystem path, or an abstract address written `@name`.
fn send_notification(socket: &OsStr, states: &[NotifyState<'_>]) -> io::Result<()> {
    let message = format_message(states);
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(message.as_bytes(), &addr)?
    } else {
        sock.send_to(message.as_bytes(), socket)?
    };
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram was truncated",
        ));
    }
    Ok(())
}

/// A status must be a single line: a newline would end the `STATUS=`
/// assignment and start another one.
fn one_line(status: &str) -> String {
    status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    /// A fake NOTIFY_SOCKET receiver.
    fn receiver() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (dir, path, sock)
    }

    fn recv_all(sock: &UnixDatagram) -> Vec<String> {
        sock.set_nonblocking(true).expect("nonblocking");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    fn monotonic_usec() -> i128 {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
        i128::from(ts.tv_sec()) * 1_000_000 + i128::from(ts.tv_nsec()) / 1000
    }

    #[test]
    fn reloading_is_one_datagram_with_monotonic_usec() {
        let (_dir, path, sock) = receiver();
        let before = monotonic_usec();
        let states = reloading_message().expect("clock");
        send_notification(path.as_os_str(), &states).expect("send");
        let after = monotonic_usec();

        let datagrams = recv_all(&sock);
        assert_eq!(datagrams.len(), 1, "{datagrams:?}");
        let lines: Vec<&str> = datagrams[0].lines().collect();
        assert!(lines.contains(&"RELOADING=1"), "{lines:?}");
        let usec: i128 = lines
            .iter()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC line")
            .parse()
            .expect("decimal microseconds");
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
        assert!(datagrams[0].ends_with('\n'));
    }

    #[test]
    fn ready_status_and_stopping_are_sent_as_key_value_lines() {
        let (_dir, path, sock) = receiver();
        let status = one_line("serving; 3 servers\nREADY=0");
        send_notification(
            path.as_os_str(),
            &[NotifyState::Ready, NotifyState::Status(&status)],
        )
        .expect("send");
        send_notification(path.as_os_str(), &[NotifyState::Watchdog]).expect("send");
        send_notification(path.as_os_str(), &[NotifyState::Stopping]).expect("send");
        let datagrams = recv_all(&sock);
        assert_eq!(
            datagrams,
            vec![
                "READY=1\nSTATUS=serving; 3 servers READY=0\n",
                "WATCHDOG=1\n",
                "STOPPING=1\n"
            ]
        );
    }

    #[test]
    fn abstract_socket_addresses_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "stdioproxy-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        send_notification(OsStr::new(&format!("@{name}")), &[NotifyState::Ready]).expect("send");
        assert_eq!(recv_all(&sock), vec!["READY=1\n"]);
    }

    #[test]
    fn sending_to_a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.sock");
        assert!(send_notification(missing.as_os_str(), &[NotifyState::Ready]).is_err());
        // The logging wrapper swallows it.
        send_or_warn(missing.as_os_str(), &[NotifyState::Ready]);
    }

    #[test]
    fn status_is_forced_onto_one_line() {
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
        assert_eq!(
            one_line("config error: x.toml:3:1: bad"),
            "config error: x.toml:3:1: bad"
        );
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        assert_eq!(
            ping_interval(Duration::from_secs(30)),
            Some(Duration::from_secs(15))
        );
        assert_eq!(ping_interval(Duration::ZERO), None);
    }

    #[test]
    fn service_manager_vars() {
        for k in [
            "NOTIFY_SOCKET",
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            assert!(is_service_manager_var(k), "{k}");
        }
        for k in [
            "PATH",
            "HOME",
            "JOURNAL_STREAM",
            "NOTIFY_SOCKETS",
            "XLISTEN_FDS",
            "GITHUB_TOKEN",
        ] {
            assert!(!is_service_manager_var(k), "{k}");
        }
    }

    #[test]
    fn picks_the_named_fd_or_the_only_one() {
        let named = vec![(3, "other".to_string()), (4, "stdioproxy".to_string())];
        assert_eq!(pick_fd(&named).expect("named"), 4);
        assert_eq!(pick_fd(&[(3, "unknown".to_string())]).expect("only"), 3);
        let err = pick_fd(&[(3, "a".to_string()), (4, "b".to_string())]).expect_err("must fail");
        assert!(
            err.to_string().contains("FileDescriptorName=stdioproxy"),
            "{err}"
        );
    }

    #[test]
    fn accepts_a_listening_unix_stream_socket_and_makes_it_nonblocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let original = UnixListener::bind(&path).expect("bind");
        let fd = OwnedFd::from(original);
        let listener = listener_from_fd(fd).expect("valid listener");
        // Non-blocking: accept with nobody connecting returns WouldBlock.
        let err = listener.accept().expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let _client = UnixStream::connect(&path).expect("connect");
        listener.accept().expect("accept after connect");
    }

    #[test]
    fn rejects_descriptors_that_are_not_listening_unix_stream_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(dir.path().join("f")).expect("file");
        let e = listener_from_fd(OwnedFd::from(file)).expect_err("must fail");
        assert!(e.to_string().contains("not a socket"), "{e}");

        let (dgram, _) = UnixDatagram::pair().expect("pair");
        let e = listener_from_fd(OwnedFd::from(dgram)).expect_err("must fail");
        assert!(e.to_string().contains("not a stream socket"), "{e}");

        let (stream, _) = UnixStream::pair().expect("pair");
        let e = listener_from_fd(OwnedFd::from(stream)).expect_err("must fail");
        assert!(e.to_string().contains("not listening"), "{e}");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
        let e = listener_from_fd(OwnedFd::from(tcp)).expect_err("must fail");
        assert!(e.to_string().contains("not a Unix-domain socket"), "{e}");
    }
}
