//! Interop with software nobody here wrote: the official TypeScript SDK client
//! drives `stdioproxy-shim`, and npm `@modelcontextprotocol/server-everything`
//! runs as a child. Needs `npm ci --prefix tests/interop` (README, .ci/run).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn require_node_modules() -> PathBuf {
    let dir = interop_dir();
    let everything = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        everything.exists(),
        "interop packages are missing: run `npm ci --prefix tests/interop` first (see README)"
    );
    everything
}

#[test]
fn typescript_sdk_client_lists_and_calls_server_everything_through_the_shim() {
    let everything = require_node_modules();
    let env = Env::new();
    let cfg = format!(
        "[servers.everything]\ncommand = \"node\"\nargs = [\"{}\"]\n\n{}",
        everything.display(),
        fixture_server("fixture", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["everything", "fixture"]);
    let out = Command::new("node")
        .arg(interop_dir().join("ts_client.mjs"))
        .arg(SHIM)
        .arg("--socket")
        .arg(&env.socket)
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ts client failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["serverInfo"]["name"], "stdioproxy");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "everything__echo",
        "everything__get-sum",
        "everything__get-structured-content",
        "fixture__echo",
    ] {
        assert!(tools.contains(&want), "{want} missing: {tools:?}");
    }
    assert_eq!(
        v["echo"]["content"][0]["text"], "Echo: hello interop",
        "{v}"
    );
    assert!(
        v["sum"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains('5'),
        "{v}"
    );
}
