//! The MCP clients people actually use, connected through the real shim to
//! a real daemon: Claude Code (`claude mcp list`), Gemini CLI (`gemini mcp
//! list`) and the MCP Inspector CLI (`tools/list`, `tools/call`). Each runs
//! with HOME in a temp dir, as a new user would, from the versions pinned in
//! tests/clients/package.json (`npm ci --prefix tests/clients`, which also
//! brings the Node 22 they need).
//!
//! No API key exists here and none is needed: listing MCP servers makes
//! each client start the server, run the MCP handshake and report the
//! result. Update checks and telemetry are switched off through the clients'
//! own settings and variables, and every run is bounded by a timeout. A tap
//! (a shell script between the client and the shim) records what the client
//! sent, so the tests know it really spoke MCP through the shim.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// One client command, including its MCP handshake (about 1-3 s unloaded).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// tests/clients/node_modules/.bin, when installed.
fn clients_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules/.bin");
    let wanted = ["node", "claude", "gemini", "mcp-inspector"];
    if wanted.iter().all(|b| bin.join(b).exists()) {
        Some(bin)
    } else {
        unavailable("the real clients are not installed: run `npm ci --prefix tests/clients`");
        None
    }
}

/// A fresh HOME for a client, with every XDG dir inside it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("sp-client-home")
            .tempdir()
            .expect("tempdir");
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write client config");
    }
}

/// What a client wrote to the shim and read back, recorded by `tap`.
struct Tap {
    script: PathBuf,
    sent: PathBuf,
    received: PathBuf,
}

impl Tap {
    /// A script that runs the shim on `socket` and copies both directions
    /// to files. Clients start it with a sanitised environment, so the
    /// socket path is written into it.
    fn new(dir: &Path, socket: &Path) -> Tap {
        let tap = Tap {
            script: dir.join("shim-tap"),
            sent: dir.join("tap-sent.jsonl"),
            received: dir.join("tap-received.jsonl"),
        };
        let quote = |p: &Path| {
            let s = p.to_str().expect("UTF-8 path");
            assert!(!s.contains('\''), "unusual path {s}");
            format!("'{s}'")
        };
        let text = format!(
            "#!/bin/sh\n# The client's stdin/stdout to stdioproxy-shim, both directions recorded;\n\
             # the entry's own arguments (--name-max, --server) reach the shim.\n\
             tee -a {} | {} --socket {} \"$@\" | tee -a {}\n",
            quote(&tap.sent),
            quote(Path::new(SHIM)),
            quote(socket),
            quote(&tap.received),
        );
        fs::write(&tap.script, text).expect("write tap");
        fs::set_permissions(&tap.script, fs::Permissions::from_mode(0o755)).expect("chmod tap");
        tap
    }

    /// The JSON messages in one direction so far.
    fn messages(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the client has sent a request for each of `methods`
    /// (the copy to the file may trail the pipe by a moment).
    fn wait_sent(&self, methods: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let sent: Vec<String> = Self::messages(&self.sent)
                .iter()
                .filter_map(|m| m["method"].as_str().map(str::to_string))
                .collect();
            if methods.iter().all(|m| sent.iter().any(|s| s == m)) {
                return sent;
            }
            assert!(
                Instant::now() < deadline,
                "the client never sent {methods:?} through the shim; it sent {sent:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The response to the client's request `method`.
    fn response_to(&self, method: &str) -> Value {
        let id = Self::messages(&self.sent)
            .into_iter()
            .find(|m| m["method"] == method && m.get("id").is_some())
            .unwrap_or_else(|| panic!("no {method} request"))["id"]
            .clone();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = Self::messages(&self.received)
                .into_iter()
                .find(|m| m["id"] == id && m.get("method").is_none())
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no response to {method} came back through the shim"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a client program from tests/clients with HOME = `home`, in `cwd`,
/// bounded by CLIENT_TIMEOUT (its whole process group is killed then).
/// Returns (success, stdout, stderr).
fn run_client(
    bin: &Path,
    program: &str,
    args: &[&str],
    home: &Home,
    cwd: &Path,
) -> (bool, String, String) {
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("program name");
    let out_file = home.path().join(format!("{name}.stdout"));
    let err_file = home.path().join(format!("{name}.stderr"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let h = home.path();
    let mut child = Command::new(bin.join(program))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", path)
        .env("HOME", h)
        .env("USER", "stdioproxy-test")
        .env("XDG_CONFIG_HOME", h.join(".config"))
        .env("XDG_CACHE_HOME", h.join(".cache"))
        .env("XDG_DATA_HOME", h.join(".local/share"))
        .env("XDG_STATE_HOME", h.join(".local/state"))
        .env("TERM", "dumb")
        .env("NO_COLOR", "1")
        // No update checks, telemetry or error reports (Claude Code).
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        // Gemini CLI: no telemetry, no relaunch of itself with more memory.
        .env("GEMINI_TELEMETRY_ENABLED", "false")
        .env("GEMINI_CLI_NO_RELAUNCH", "true")
        // npm-based tools.
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_file).expect("stdout file"))
        .stderr(fs::File::create(&err_file).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let status = wait_exit(&mut child, CLIENT_TIMEOUT);
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let Some(status) = status else {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        panic!(
            "{program} {args:?} did not finish within {CLIENT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
            read(&out_file),
            read(&err_file)
        );
    };
    (status.success(), read(&out_file), read(&err_file))
}

/// What each client test starts from: the installed clients, a daemon with
/// one fixture server, a fresh HOME and a tap in front of the shim.
struct Rig {
    bin: PathBuf,
    home: Home,
    tap: Tap,
    _daemon: Daemon,
    env: Env,
}

impl Rig {
    fn new() -> Option<Rig> {
        let bin = clients_bin()?;
        let env = Env::new();
        let daemon = env.start(&fixture_server("fixture", &[]));
        daemon.wait_ready(&["fixture"]);
        let tap = Tap::new(env.path(), &env.socket);
        Some(Rig {
            bin,
            home: Home::new(),
            tap,
            _daemon: daemon,
            env,
        })
    }

    /// `stdioproxy setup-client ARGS --shim SHIM` with this HOME; its stdout,
    /// after asserting success.
    fn setup_client(&self, args: &[&str], shim: &Path) -> String {
        let out = Command::new(DAEMON)
            .arg("setup-client")
            .args(args)
            .arg("--shim")
            .arg(shim)
            .env("HOME", self.home.path())
            .output()
            .expect("run setup-client");
        assert!(
            out.status.success(),
            "setup-client {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, program: &str, args: &[&str], cwd: &Path) -> (bool, String, String) {
        run_client(&self.bin, program, args, &self.home, cwd)
    }
}

/// The line of `stdioproxy`'s entry in a client's `mcp list` output.
fn entry_line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains("stdioproxy:"))
        .unwrap_or_else(|| panic!("{what} did not list the stdioproxy entry:\n{out}"))
}

/// The handshake the client ran through the shim reached the daemon, in
/// the era the client chose: `initialize` (2025-11-25 and before), or
/// `server/discover` (2026-07-28, which the daemon also serves) — `opening`
/// names it — followed by `then`.
fn assert_handshake(tap: &Tap, opening: &str, then: &[&str]) {
    let mut methods = vec![opening];
    methods.extend_from_slice(then);
    tap.wait_sent(&methods);
    let opened = tap.response_to(opening);
    let server_info = match opening {
        "initialize" => &opened["result"]["serverInfo"],
        _ => &opened["result"]["_meta"]["io.modelcontextprotocol/serverInfo"],
    };
    assert_eq!(server_info["name"], "stdioproxy", "{opened}");
}

#[test]
fn claude_code_lists_the_shim_as_connected() {
    let Some(rig) = Rig::new() else { return };
    let (home, tap) = (&rig.home, &rig.tap);

    // What the README tells a Claude Code user to do.
    rig.setup_client(&["claude-code", "--write"], &tap.script);

    let (ok, stdout, stderr) = rig.run("claude", &["mcp", "list"], home.path());
    assert!(ok, "claude mcp list failed:\n{stdout}\n{stderr}");
    let line = entry_line(&stdout, "claude mcp list");
    assert!(
        // "✘ Failed to connect — …" when the handshake fails.
        line.contains(tap.script.to_str().expect("UTF-8")) && line.ends_with("✔ Connected"),
        "{stdout}\n{stderr}"
    );
    // Its health check opens the session in the 2026-07-28 era (Claude Code
    // probes server/discover, and the daemon answers it), then lists the
    // tools, and the tools came back.
    assert_handshake(tap, "server/discover", &["tools/list"]);
    let tools = tap.response_to("tools/list");
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "fixture__echo")),
        "{tools}"
    );
}

#[test]
fn claude_code_accepts_the_printed_mcp_add_line_verbatim() {
    let Some(rig) = Rig::new() else { return };
    // A shim path that needs quoting, as under "Program Files"-like dirs.
    let dir = rig.env.path().join("my tools");
    fs::create_dir(&dir).expect("mkdir");
    let tap = Tap::new(&dir, &rig.env.socket);

    let printed = rig.setup_client(&["claude-code"], &tap.script);
    let line = printed
        .lines()
        .find(|l| l.starts_with("claude mcp add "))
        .unwrap_or_else(|| panic!("no `claude mcp add` line in:\n{printed}"));
    let (ok, stdout, stderr) = rig.run("/bin/sh", &["-c", line], rig.home.path());
    assert!(ok, "`{line}` failed:\n{stdout}\n{stderr}");

    let (ok, stdout, stderr) = rig.run("claude", &["mcp", "list"], rig.home.path());
    assert!(ok, "claude mcp list failed:\n{stdout}\n{stderr}");
    let entry = entry_line(&stdout, "claude mcp list");
    assert!(
        entry.contains(tap.script.to_str().expect("UTF-8")) && entry.ends_with("✔ Connected"),
        "{stdout}\n{stderr}"
    );
    assert_handshake(&tap, "server/discover", &["tools/list"]);
}

#[test]
fn gemini_cli_lists_the_shim_as_connected() {
    let Some(rig) = Rig::new() else { return };
    let (home, tap) = (&rig.home, &rig.tap);
    let project = home.path().join("project");
    fs::create_dir_all(&project).expect("mkdir project");

    // Settings that keep Gemini CLI off the network, and the folder trust it
    // requires before it starts any MCP server.
    let quiet = json!({
        "general": { "enableAutoUpdate": false, "enableAutoUpdateNotification": false },
        "privacy": { "usageStatisticsEnabled": false },
        "telemetry": { "enabled": false },
    });
    home.write(
        ".gemini/trustedFolders.json",
        &json!({ project.to_str().expect("UTF-8"): "TRUST_FOLDER" }).to_string(),
    );
    // The entry itself, from `setup-client gemini --write`, merged into the
    // settings above.
    let settings_path = home.path().join(".gemini/settings.json");
    home.write(".gemini/settings.json", &quiet.to_string());
    rig.setup_client(&["gemini", "--write"], &tap.script);
    let merged: Value =
        serde_json::from_str(&fs::read_to_string(&settings_path).expect("settings"))
            .expect("settings JSON");
    assert_eq!(
        merged["telemetry"], quiet["telemetry"],
        "other settings kept: {merged}"
    );
    // Gemini CLI rewrites names over 63 characters: the entry asks the
    // shim for that budget.
    let args = &merged["mcpServers"]["stdioproxy"]["args"];
    assert!(
        args.as_array()
            .is_some_and(|a| a.windows(2).any(|w| w[0] == "--name-max" && w[1] == "63")),
        "{merged}"
    );

    let (ok, stdout, stderr) = rig.run("gemini", &["mcp", "list"], &project);
    assert!(ok, "gemini mcp list failed:\n{stdout}\n{stderr}");
    // Gemini CLI prints its list through its console logger, on stderr.
    let both = format!("{stdout}{stderr}");
    let line = entry_line(&both, "gemini mcp list");
    assert!(
        // "✗ stdioproxy: … - Disconnected" when the handshake fails.
        line.contains(tap.script.to_str().expect("UTF-8"))
            && line.trim_start().starts_with('✓')
            && line.trim_end().ends_with("- Connected"),
        "{both}"
    );
    assert_handshake(tap, "initialize", &[]);
}

#[test]
fn inspector_cli_lists_and_calls_tools_through_the_shim() {
    let Some(rig) = Rig::new() else { return };
    let (home, tap) = (&rig.home, &rig.tap);
    let script = tap.script.to_str().expect("UTF-8");

    let (ok, stdout, stderr) = rig.run(
        "mcp-inspector",
        &["--cli", script, "--method", "tools/list"],
        home.path(),
    );
    assert!(ok, "inspector tools/list failed:\n{stdout}\n{stderr}");
    let listed = json_in(&stdout);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{stdout}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"fixture__echo"), "{names:?}");

    let (ok, stdout, stderr) = rig.run(
        "mcp-inspector",
        &[
            "--cli",
            script,
            "--method",
            "tools/call",
            "--tool-name",
            "fixture__echo",
            "--tool-arg",
            "text=hello inspector",
        ],
        home.path(),
    );
    assert!(ok, "inspector tools/call failed:\n{stdout}\n{stderr}");
    let called = json_in(&stdout);
    assert!(
        called["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("hello inspector")),
        "{stdout}"
    );
    assert_ne!(called["isError"], true, "{stdout}");
    assert_handshake(tap, "initialize", &["tools/list", "tools/call"]);
}

/// The JSON document a client printed (after any banner lines).
fn json_in(stdout: &str) -> Value {
    let start = stdout
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in:\n{stdout}"));
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("{e}:\n{stdout}"))
}
