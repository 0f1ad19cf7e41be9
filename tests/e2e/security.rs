//! Closed to other users: socket and directory modes (also under socket
//! activation), the uid check for sessions and control requests, config
//! files another user could have written, and secrets kept out of every log,
//! status and error.
//!
//! Tests that need a second real user run when the suite runs as root (CI
//! does) and use `setpriv` to act as uid 65534; elsewhere they say they are
//! skipped.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::support::*;

const NOBODY: u32 = 65534;

/// Runs `program args` as uid/gid 65534.
fn as_nobody(program: &str, args: &[&str], socket: &Path) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            program,
        ])
        .args(args)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(DAEMON)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run the cli")
}

#[test]
fn control_requests_from_another_user_are_refused_and_change_nothing() {
    if !can_switch_user() {
        return;
    }
    let env = Env::new();
    // Let the other user reach the socket file, so only the uid check stands.
    let dir = env.socket.parent().unwrap().to_path_buf();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = env.start(&format!(
        "[daemon]\nwatch_config = false\n\n{}",
        fixture_server("alpha", &[])
    ));
    d.wait_ready(&["alpha"]);
    std::fs::set_permissions(&env.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The other user can run our binaries at all (so a failure below is the
    // daemon's refusal, not a failed exec).
    let v = as_nobody(DAEMON, &["--version"], &env.socket);
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("stdioproxy"),
        "{v:?}"
    );

    // A config change is waiting for a reload (watching is off).
    env.write_config(&format!(
        "[daemon]\nwatch_config = false\n\n{}\n{}",
        fixture_server("alpha", &[]),
        fixture_server("beta", &[])
    ));
    let seen = d.log.len();
    for verb in [&["status", "--json"][..], &["reload"][..]] {
        let out = as_nobody(DAEMON, verb, &env.socket);
        assert!(!out.status.success(), "{verb:?} as another user: {out:?}");
        assert!(out.stdout.is_empty(), "{verb:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("closed the connection without answering"),
            "{verb:?}: {err}"
        );
    }
    let shim = as_nobody(SHIM, &[], &env.socket);
    assert!(!shim.status.success() && shim.stdout.is_empty(), "{shim:?}");
    // Three refusals, each logged with the peer's uid.
    d.log.wait_for_count(
        seen,
        &[
            "refused a connection from another user",
            &format!("peer_uid={NOBODY}"),
        ],
        3,
    );
    // The foreign reload did nothing; our own status still works.
    let st = d.status();
    assert_eq!(st["config"]["last_reload"], Value::Null, "{st:#}");
    assert_eq!(st["servers"].as_array().unwrap().len(), 1, "{st:#}");
    assert!(!d.log.contains("reloading config"));
}

/// Makes a config file unsafe in one way.
type Spoiler = Box<dyn Fn(&Path)>;

#[test]
fn configs_another_user_could_write_are_refused_at_start_and_on_reload() {
    let env = Env::new();
    // At start: writable by others (group-writable is in core.rs).
    env.write_config(&fixture_server("alpha", &[]));
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o602)).unwrap();
    let out = env.serve_and_exit();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by group or others"));
    let root = nix::unistd::getuid().is_root();
    if root {
        // Owned by another user, even if only they can write it.
        env.write_config(&fixture_server("alpha", &[]));
        std::os::unix::fs::chown(&env.config, Some(NOBODY), Some(NOBODY)).unwrap();
        let out = env.serve_and_exit();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("owned by uid {NOBODY}")), "{err}");
        assert!(!env.socket.exists(), "nothing was started");
    }

    // On reload: nothing changes, and status says why.
    let base = format!(
        "[daemon]\nwatch_config = false\n\n{}",
        fixture_server("alpha", &[])
    );
    let d = env.start(&base);
    let pid = d.wait_ready(&["alpha"])["servers"][0]["pid"].clone();
    let with_beta = format!("{base}\n{}", fixture_server("beta", &[]));
    let mut cases: Vec<(&str, Spoiler)> = vec![
        (
            "writable by group or others (mode 0660)",
            Box::new(|p: &Path| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).unwrap()
            }),
        ),
        (
            "writable by group or others (mode 0606)",
            Box::new(|p: &Path| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o606)).unwrap()
            }),
        ),
    ];
    if root {
        cases.push((
            "owned by uid 65534",
            Box::new(|p: &Path| std::os::unix::fs::chown(p, Some(NOBODY), None).unwrap()),
        ));
    }
    for (why, spoil) in &cases {
        env.write_config(&with_beta);
        spoil(&env.config);
        let out = cli(&env.socket, &["reload"]);
        assert_eq!(out.status.code(), Some(1), "{why}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{why}: {err}");
        let st = d.status();
        let shown = st["config"]["error"].as_str().unwrap_or_default();
        assert!(shown.contains(why), "status shows the error: {st:#}");
        assert_eq!(st["config"]["last_reload"]["result"], "error");
        let servers = st["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 1, "beta was not started: {st:#}");
        assert_eq!(servers[0]["pid"], pid, "alpha untouched: {st:#}");
    }
    // Fixed: the same content applies.
    env.write_config(&with_beta);
    let out = cli(&env.socket, &["reload"]);
    assert!(out.status.success(), "{out:?}");
    let st = d.wait_ready(&["alpha", "beta"]);
    assert_eq!(st["config"]["error"], Value::Null);
}

#[test]
fn a_dedicated_socket_directory_is_tightened_and_unsafe_ones_refused() {
    let env = Env::new();
    let dedicated = env.path().join("stdioproxy");
    std::fs::create_dir(&dedicated).unwrap();
    std::fs::set_permissions(&dedicated, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dedicated.join("s.sock");
    env.write_config("");
    let mut child = KillOnDrop(
        Command::new(DAEMON)
            .args(["serve", "--config"])
            .arg(&env.config)
            .arg("--socket")
            .arg(&socket)
            .env("XDG_CACHE_HOME", env.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Log::default();
    log.collect(child.0.stderr.take().unwrap());
    log.wait_for(&["stdioproxy listening"]);
    assert_eq!(mode(&dedicated), 0o700);
    assert_eq!(mode(&socket), 0o600);
    signal(child.0.id(), nix::sys::signal::Signal::SIGTERM);
    wait_exit(&mut child.0, WAIT).expect("daemon exits");

    // World-writable without the sticky bit: someone else could replace the
    // socket; refused.
    let open = env.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(DAEMON)
        .args(["serve", "--config"])
        .arg(&env.config)
        .arg("--socket")
        .arg(open.join("s.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsafe"),
        "{out:?}"
    );
    if nix::unistd::getuid().is_root() {
        let theirs = env.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
        let out = Command::new(DAEMON)
            .args(["serve", "--config"])
            .arg(&env.config)
            .arg("--socket")
            .arg(theirs.join("s.sock"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("owned by uid {NOBODY}")), "{err}");
    }
}

#[test]
fn the_socket_and_its_directory_are_private_under_socket_activation() {
    let Some(tool) = ci_tool("systemd-socket-activate", "systemd") else {
        return;
    };
    let env = Env::new();
    env.write_config(&fixture_server("alpha", &[]));
    // As systemd would make it for ListenStream=%t/stdioproxy/stdioproxy.sock
    // without DirectoryMode=: a 0755 directory.
    let dir = env.path().join("stdioproxy");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("stdioproxy.sock");
    let (mut activator, log) = socket_activate(&tool, &env, &socket, &[]);
    let before = mode(&socket);
    let mut c = Client::initialized(&socket);
    log.wait_for(&["using the socket passed by systemd"]);
    assert_eq!(
        mode(&socket),
        0o600,
        "socket was {before:o} before activation"
    );
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        std::fs::metadata(&socket).unwrap().uid(),
        nix::unistd::getuid().as_raw()
    );
    assert!(c.request("ping", json!({}))["result"].is_object());
    drop(c);
    signal(activator.0.id(), nix::sys::signal::Signal::SIGTERM);
    wait_exit(&mut activator.0, WAIT).expect("exit");
}

const SECRET_VAR: &str = "sp-secret-from-env-hunter2";
const SECRET_LITERAL: &str = "literal-s3cret-in-config";

fn assert_no_secret(what: &str, text: &str) {
    for s in [SECRET_VAR, SECRET_LITERAL] {
        assert!(!text.contains(s), "{what} leaks {s:?}:\n{text}");
    }
}

#[test]
fn secrets_never_reach_logs_status_or_errors() {
    let env = Env::new();
    let secrets =
        format!("API_TOKEN = \"tok-${{SP_TEST_SECRET}}\", LITERAL = \"{SECRET_LITERAL}\"");
    let cfg = format!(
        "[defaults]\nrestart_backoff = \"50ms\"\nrestart_backoff_max = \"100ms\"\n\n\
         [servers.good]\ncommand = \"{FIXTURE}\"\nenv = {{ FIXTURE_NAME = \"good\", {secrets} }}\n\n\
         [servers.silent]\ncommand = \"true\"\nenv = {{ {secrets} }}\n\n\
         [servers.nospawn]\ncommand = \"/nonexistent/not-a-path\"\nenv = {{ {secrets} }}\n\n\
         [servers.unset]\ncommand = \"{FIXTURE}\"\nenv = {{ {secrets}, ZZ = \"${{SP_NOT_SET_ANYWHERE}}\" }}\n\n\
         [servers.quitter]\ncommand = \"{FIXTURE}\"\nenv = {{ FIXTURE_EXIT_AT_START = \"4\", {secrets} }}\n"
    );
    env.write_config(&cfg);
    let d = Daemon::start(
        &env,
        &[("SP_TEST_SECRET", SECRET_VAR), ("RUST_LOG", "debug")],
    );
    d.wait_ready(&["good"]);
    // Every failing server has failed a few times (each failure is logged
    // with its error).
    d.wait_status("failures recorded", |st| {
        ["silent", "nospawn", "unset", "quitter"].iter().all(|n| {
            st["servers"].as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["name"] == *n
                        && s["restarts"].as_u64() >= Some(2)
                        && s["last_error"].is_string()
                })
            })
        })
    });
    let mut c = Client::initialized(&env.socket);
    // The secret does reach the child.
    assert_eq!(
        c.call_text("good__env", json!({"name": "API_TOKEN"})),
        format!("tok-{SECRET_VAR}")
    );
    assert_eq!(
        c.call_text("good__env", json!({"name": "LITERAL"})),
        SECRET_LITERAL
    );
    let st = d.status();
    let unset = st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "unset")
        .unwrap();
    assert!(
        unset["last_error"]
            .as_str()
            .unwrap()
            .contains("SP_NOT_SET_ANYWHERE"),
        "the error names the variable: {unset}"
    );
    assert_no_secret("status --json", &st.to_string());
    let text = cli(&env.socket, &["status"]);
    assert_no_secret("status", &String::from_utf8_lossy(&text.stdout));

    // A config error on the env line itself: the error and status name the
    // place, not the value.
    env.write_config(&format!(
        "[servers.good]\ncommand = \"{FIXTURE}\"\nenv = {{ API_TOKEN = \"{SECRET_LITERAL}\", API_TOKEN = \"x\" }}\n"
    ));
    let out = cli(&env.socket, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3:"), "located: {err}");
    assert_no_secret("reload error", &err);
    assert_no_secret("status after a bad reload", &d.status().to_string());
    let check = Command::new(DAEMON)
        .args(["check", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert_no_secret("check", &String::from_utf8_lossy(&check.stderr));
    assert_no_secret("check", &String::from_utf8_lossy(&check.stdout));

    drop(c);
    let mut d = d;
    d.stop();
    assert_no_secret("daemon log (RUST_LOG=debug)", &d.log.lines().join("\n"));
}
