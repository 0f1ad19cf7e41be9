//! The README's quick start, as a new user runs it: the example config from
//! a directory that is not the checkout, with a PATH that does not hold the
//! build directory, so nothing depends on `./target` or `CARGO_TARGET_DIR`.

use std::process::Command;

use crate::support::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.toml");

#[test]
fn the_example_config_runs_its_demo_server_from_any_directory() {
    let env = Env::new();
    // The example as shipped, with the servers that need the network or
    // tokens turned off.
    let text = std::fs::read_to_string(EXAMPLE).expect("read the example");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("example is TOML");
    let servers = doc["servers"].as_table_mut().expect("servers");
    assert_eq!(
        servers["demo"]["command"].as_str(),
        Some("stdioproxy-fixture-server"),
        "the demo server is found by name, not by a path into target/"
    );
    for (name, server) in servers.iter_mut() {
        if name != "demo" {
            server["enabled"] = toml_edit::value(false);
        }
    }
    env.write_config(&doc.to_string());

    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let d = Daemon::start_with(&env, &[], |cmd| {
        cmd.current_dir(&elsewhere)
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", env.path().join("home"));
    });
    d.wait_ready(&["demo"]);
    let mut c = Client::initialized(&env.socket);
    assert_eq!(
        c.call_text("demo__echo", serde_json::json!({"text": "hi"})),
        "hi"
    );

    // And the file as shipped is a valid config.
    let check = Command::new(DAEMON)
        .args(["check", "--config", EXAMPLE])
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
