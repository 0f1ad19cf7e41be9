//! systemd integration without systemd as PID 1: a fake NOTIFY_SOCKET
//! receiver, socket activation through `systemd-socket-activate`, and the
//! install / setup-client / import commands. No test starts `systemd --user`.

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, setsockopt, sockopt::PassCred, ControlMessageOwned, MsgFlags};
use serde_json::json;

use crate::support::*;

/// A fake service manager's notification socket.
struct NotifySocket {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        setsockopt(&sock, PassCred, &true).expect("SO_PASSCRED");
        NotifySocket { sock, path }
    }

    /// Next datagram: (sender pid, KEY=VALUE lines).
    fn recv(&self, limit: Duration) -> Option<(i32, Vec<String>)> {
        self.sock.set_read_timeout(Some(limit)).expect("timeout");
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!(libc::ucred);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .ok()?;
        let pid = msg
            .cmsgs()
            .ok()?
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                _ => None,
            })
            .unwrap_or(-1);
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some((pid, text.lines().map(str::to_string).collect()))
    }

    /// Waits for a datagram containing `key`, skipping WATCHDOG=1 pings;
    /// returns it and how many watchdog pings were skipped.
    fn expect(&self, key: &str) -> (i32, Vec<String>, usize) {
        let deadline = Instant::now() + WAIT;
        let mut pings = 0;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let Some((pid, lines)) = self.recv(deadline - Instant::now()) else {
                break;
            };
            if lines.iter().any(|l| l == key) {
                return (pid, lines, pings);
            }
            if lines == ["WATCHDOG=1"] {
                pings += 1;
                continue;
            }
            if lines.iter().all(|l| l.starts_with("STATUS=")) {
                continue;
            }
            seen.push(lines);
        }
        panic!("no {key} notification within {WAIT:?}; other datagrams: {seen:?}");
    }
}

fn monotonic_usec() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: clock_gettime writes into the timespec we own.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) },
        0
    );
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

#[test]
fn notify_sequence_for_start_watchdog_reload_and_stop() {
    let env = Env::new();
    let notify = NotifySocket::bind(env.path());
    env.write_config(&fixture_server("alpha", &[]));
    let mut d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let pid = d.pid() as i32;
    let (sender, ready, _) = notify.expect("READY=1");
    assert_eq!(sender, pid, "READY=1 comes from the daemon's main pid");
    let status = ready
        .iter()
        .find(|l| l.starts_with("STATUS="))
        .expect("STATUS with READY");
    assert!(status.contains("1/1 servers ready"), "{status}");
    // The server was attempted before READY=1.
    assert_eq!(d.server_status("alpha")["state"], "ready");

    // Watchdog: every 200ms (half of WATCHDOG_USEC); count pings across 2 intervals.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        if let Some((p, lines)) = notify.recv(Duration::from_millis(500)) {
            if lines == ["WATCHDOG=1"] {
                assert_eq!(p, pid);
                pings += 1;
            }
        }
    }
    assert!(
        pings >= 2,
        "only {pings} watchdog pings in 1s with a 400ms watchdog"
    );

    // Reload: RELOADING=1 and MONOTONIC_USEC in one datagram, then READY=1.
    signal(d.pid(), nix::sys::signal::Signal::SIGHUP);
    let (_, reloading, _) = notify.expect("RELOADING=1");
    let usec: u64 = reloading
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC in the same datagram")
        .parse()
        .expect("number");
    let now = monotonic_usec();
    assert!(
        usec <= now && now - usec < 10_000_000,
        "MONOTONIC_USEC {usec} vs now {now}"
    );
    notify.expect("READY=1");

    // Stop.
    signal(d.pid(), nix::sys::signal::Signal::SIGTERM);
    notify.expect("STOPPING=1");
    let st = wait_exit(&mut d.child, WAIT).expect("exit");
    assert_eq!(st.code(), Some(0));

    // Children never see the service manager's variables.
    assert!(d.log.contains("ready"));
}

#[test]
fn children_do_not_inherit_service_manager_variables() {
    let env = Env::new();
    let notify = NotifySocket::bind(env.path());
    env.write_config(&fixture_server("alpha", &[]));
    let d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "60000000"),
        ],
    );
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
    ] {
        assert_eq!(
            c.call_text("alpha__env", json!({"name": var})),
            "<unset>",
            "{var}"
        );
    }
}

#[test]
fn socket_activation_through_systemd_socket_activate() {
    let Some(tool) = ci_tool("systemd-socket-activate", "systemd") else {
        return;
    };
    let env = Env::new();
    env.write_config(&fixture_server("alpha", &[]));
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    let notify = NotifySocket::bind(env.path());
    let extra = [
        "--fdname=stdioproxy".to_string(),
        format!("--setenv=NOTIFY_SOCKET={}", notify.path.display()),
    ];
    let (mut activator, log) = socket_activate(&tool, &env, &env.socket, &extra);
    // The first connection execs the daemon on the passed socket.
    let mut c = Client::initialized(&env.socket);
    log.wait_for(&["using the socket passed by systemd"]);
    let (sender, _, _) = notify.expect("READY=1");
    assert_eq!(sender as u32, activator.0.id(), "exec'd in place: same pid");
    // The first client of a fresh daemon may list before alpha is ready (no
    // cache yet): wait for its tools rather than racing its start.
    c.wait_for_tool("alpha__echo");
    assert_eq!(
        c.call_text("alpha__echo", json!({"text": "activated"})),
        "activated"
    );
    assert_eq!(
        c.call_text("alpha__env", json!({"name": "LISTEN_FDS"})),
        "<unset>"
    );
    assert!(
        !env.path().join("unused.sock").exists(),
        "bound nothing itself"
    );
    signal(activator.0.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_exit(&mut activator.0, WAIT).expect("exit");
    assert_eq!(st.code(), Some(0));
    assert!(
        env.socket.exists(),
        "an activated socket belongs to systemd: not removed"
    );
}

#[test]
fn install_writes_units_for_this_binary() {
    let env = Env::new();
    let dir = env.path().join("units");
    let out = Command::new(DAEMON)
        .args(["install", "--legacy", "false", "--unit-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("systemctl --user enable --now stdioproxy.socket"));
    let service = std::fs::read_to_string(dir.join("stdioproxy.service")).unwrap();
    let exe = Path::new(DAEMON).canonicalize().unwrap();
    assert!(
        service.contains(&format!("{} serve", exe.display())),
        "{service}"
    );
    assert!(service.contains("Type=notify-reload"));
    assert!(std::fs::read_to_string(dir.join("stdioproxy.socket"))
        .unwrap()
        .contains("SocketMode=0600"));
    let out = Command::new(DAEMON)
        .args(["install", "--legacy", "true", "--unit-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let service = std::fs::read_to_string(dir.join("stdioproxy.service")).unwrap();
    assert!(
        service.contains("Type=notify\n") && service.contains("ExecReload="),
        "{service}"
    );
}

#[test]
fn setup_client_writes_the_shim_into_a_client_config_with_a_backup() {
    let env = Env::new();
    let home = env.path().join("home");
    std::fs::create_dir_all(home.join(".cursor")).unwrap();
    let cfg = home.join(".cursor/mcp.json");
    std::fs::write(&cfg, r#"{"mcpServers":{"memory":{"command":"npx","args":["-y","@modelcontextprotocol/server-memory"]}}}"#).unwrap();
    let out = Command::new(DAEMON)
        .args(["setup-client", "cursor", "--write", "--shim", SHIM])
        .env("HOME", &home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("backup:") && stdout.contains("stdioproxy import"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    assert_eq!(v["mcpServers"]["stdioproxy"]["command"], SHIM);
    assert_eq!(
        v["mcpServers"]["memory"]["command"], "npx",
        "other entries kept"
    );
    // Printing only.
    let out = Command::new(DAEMON)
        .args(["setup-client", "claude-code", "--shim", SHIM])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("claude mcp add --scope user stdioproxy"));
}

#[test]
fn import_turns_an_mcp_servers_file_into_a_config_the_daemon_runs() {
    let env = Env::new();
    let src = env.path().join("claude_desktop_config.json");
    std::fs::write(
        &src,
        json!({"mcpServers": {
            "fixture.one": {"command": FIXTURE, "env": {"FIXTURE_NAME": "one", "API_TOKEN": "x"}},
            "remote": {"url": "https://example.invalid/mcp"}
        }})
        .to_string(),
    )
    .unwrap();
    let out_path = env.path().join("imported.toml");
    let out = Command::new(DAEMON)
        .arg("import")
        .arg(&src)
        .arg("--output")
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped remote") && stderr.contains("API_TOKEN"),
        "{stderr}"
    );
    let check = Command::new(DAEMON)
        .args(["check", "--config"])
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // And the daemon runs it.
    let text = std::fs::read_to_string(&out_path).unwrap();
    let d = env.start(&text);
    let name = d.status()["servers"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    d.wait_ready(&[&name]);
}
