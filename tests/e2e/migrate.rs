//! Moving a user from per-client configs to stdioproxy, as the README says:
//! `stdioproxy import FILE --write` and `stdioproxy setup-client CLIENT
//! [--per-server] --write`, on a fresh HOME, through the real binaries, with
//! every file read back in its own format.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::*;

/// A fresh HOME with nothing in it, and commands that run with only it.
struct Home {
    // Keeps the temp dir alive.
    _env: Env,
    home: PathBuf,
}

impl Home {
    fn new() -> Self {
        let env = Env::new();
        let home = env.path().join("home");
        std::fs::create_dir(&home).expect("mkdir home");
        Home { _env: env, home }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(DAEMON)
            .args(args)
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("STDIOPROXY_CONFIG")
            .env_remove("STDIOPROXY_SOCKET")
            .output()
            .expect("run stdioproxy")
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}\n{stdout}");
        (stdout, stderr)
    }

    fn config(&self) -> PathBuf {
        self.home.join(".config/stdioproxy/config.toml")
    }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn claude_code_file(home: &Path) -> PathBuf {
    let file = home.join(".claude.json");
    let text = json!({
        "numStartups": 4,
        "mcpServers": {
            "fixture.one": {"type": "stdio", "command": FIXTURE, "env": {"FIXTURE_NAME": "one"}},
            "two": {"command": FIXTURE, "args": [], "env": {"FIXTURE_NAME": "two"}},
            "context7": {"type": "http", "url": "https://mcp.context7.com/mcp"}
        }
    });
    std::fs::write(&file, serde_json::to_string_pretty(&text).expect("json")).expect("write");
    file
}

#[test]
fn import_write_creates_a_private_config_on_a_fresh_home_and_merges_again() {
    let h = Home::new();
    let file = claude_code_file(&h.home);
    let (stdout, stderr) = h.ok(&["import", file.to_str().expect("utf8"), "--write"]);
    // The next step it suggests keeps every tool name.
    assert!(
        stderr.contains("next: stdioproxy setup-client claude-code --per-server --write"),
        "{stderr}"
    );
    let config = h.config();
    assert!(
        stdout.contains(&format!("created {}", config.display())),
        "{stdout}"
    );
    assert!(stderr.contains("skipped context7"), "{stderr}");
    assert_eq!(mode_of(&config), 0o600);
    assert_eq!(mode_of(config.parent().expect("dir")), 0o700);
    let (stdout, _) = h.ok(&["check"]);
    assert!(stdout.contains("ok, 2 servers"), "{stdout}");

    // The user edits it; a second import keeps the edit and the comment,
    // and reports the names it already has.
    let text = std::fs::read_to_string(&config).expect("read");
    let edited = format!("# my servers, do not lose this\n{text}");
    write_private(&config, &edited);
    let other = h.home.join("cursor.json");
    std::fs::write(
        &other,
        json!({"mcpServers": {
            "two": {"command": "/elsewhere/two"},
            "three": {"command": FIXTURE, "env": {"FIXTURE_NAME": "three"}}
        }})
        .to_string(),
    )
    .expect("write");
    let (stdout, stderr) = h.ok(&["import", other.to_str().expect("utf8"), "--write"]);
    assert!(
        stderr.contains("skipped two:") && stderr.contains("already has a server of that name"),
        "{stderr}"
    );
    assert!(
        stdout.contains("added: three") && stdout.contains("backup:"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(text.starts_with(&edited), "{text}");
    assert!(!text.contains("/elsewhere/two"), "{text}");

    // --replace takes the new definition.
    let (stdout, _) = h.ok(&[
        "import",
        other.to_str().expect("utf8"),
        "--write",
        "--replace",
    ]);
    assert!(stdout.contains("replaced: two, three"), "{stdout}");
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(text.contains("/elsewhere/two"), "{text}");
    assert!(
        text.starts_with("# my servers, do not lose this\n"),
        "{text}"
    );

    // The daemon runs what was written.
    let (stdout, _) = h.ok(&["check"]);
    assert!(stdout.contains("ok, 3 servers"), "{stdout}");
    std::fs::write(&other, json!({"mcpServers": {}}).to_string()).expect("write");
    let mut env = Env::new();
    env.config = config.clone();
    let text = text.replace("/elsewhere/two", FIXTURE);
    write_private(&config, &text);
    let d = Daemon::start(&env, &[]);
    d.wait_ready(&["fixture-one", "two", "three"]);
}

#[test]
fn setup_client_per_server_after_import_keeps_each_entry_name() {
    let h = Home::new();
    let file = claude_code_file(&h.home);
    let file_arg = file.to_str().expect("utf8");
    let (_, stderr) = h.ok(&["import", file_arg, "--write", "--per-server"]);
    assert!(
        stderr.contains("\"fixture.one\" -> stdioproxy-shim --server fixture-one"),
        "{stderr}"
    );
    assert!(
        stderr.contains("next: stdioproxy setup-client claude-code --per-server --write"),
        "{stderr}"
    );

    let (stdout, _) = h.ok(&[
        "setup-client",
        "claude-code",
        "--per-server",
        "--write",
        "--shim",
        SHIM,
    ]);
    assert!(stdout.contains("replaced: fixture.one, two"), "{stdout}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    // Each server under the client's own entry name, with the name budget
    // 64 - len("mcp__<entry>__").
    assert_eq!(
        v["mcpServers"]["fixture.one"],
        json!({"command": SHIM, "args": ["--server", "fixture-one", "--name-max", "46"]})
    );
    assert_eq!(
        v["mcpServers"]["two"],
        json!({"command": SHIM, "args": ["--server", "two", "--name-max", "54"]})
    );
    assert_eq!(
        v["mcpServers"]["context7"]["url"],
        "https://mcp.context7.com/mcp"
    );
    assert_eq!(v["numStartups"], 4);
}

#[test]
fn setup_client_write_hints_per_server_and_knows_codex_and_gemini() {
    let h = Home::new();
    claude_code_file(&h.home);
    let (stdout, _) = h.ok(&["setup-client", "claude-code", "--write", "--shim", SHIM]);
    assert!(
        stdout.contains("stdioproxy import")
            && stdout.contains("--write")
            && stdout.contains("setup-client claude-code --per-server --write"),
        "{stdout}"
    );
    assert!(!stdout.contains(">>"), "{stdout}");

    let codex = h.home.join(".codex/config.toml");
    std::fs::create_dir_all(codex.parent().expect("dir")).expect("mkdir");
    std::fs::write(&codex, "# keep me\nmodel = \"o3\"\n").expect("write");
    h.ok(&["setup-client", "codex", "--write", "--shim", SHIM]);
    let text = std::fs::read_to_string(&codex).expect("read");
    assert!(text.starts_with("# keep me\nmodel = \"o3\"\n"), "{text}");
    let t: toml::Table = toml::from_str(&text).expect("toml");
    assert_eq!(
        t["mcp_servers"]["stdioproxy"]["command"].as_str(),
        Some(SHIM)
    );
    assert_eq!(
        t["mcp_servers"]["stdioproxy"]["args"],
        toml::Value::Array(vec!["--name-max".into(), "47".into()])
    );

    h.ok(&["setup-client", "gemini", "--write", "--shim", SHIM]);
    let gemini = h.home.join(".gemini/settings.json");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&gemini).expect("read")).expect("json");
    assert_eq!(
        v["mcpServers"]["stdioproxy"],
        json!({"command": SHIM, "args": ["--name-max", "63"]})
    );
    assert_eq!(mode_of(&gemini), 0o600);

    // --per-server without a config says what to do first.
    let out = h.run(&["setup-client", "gemini", "--per-server"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stdioproxy import FILE --write"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
