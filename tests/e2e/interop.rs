//! Interop with software nobody here wrote: the official TypeScript SDK client
//! drives `stdioproxy-shim`, and npm `@modelcontextprotocol/server-everything`
//! runs as a child: tools (ts_client.mjs), and the rest of the surface
//! (ts_surface.mjs). Needs `npm ci --prefix tests/interop` (README, .ci/run).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A daemon running npm server-everything and the fixture, both ready
/// (`None`, after saying why, when the interop packages are missing).
pub fn everything_and_fixture(env: &Env) -> Option<Daemon> {
    let everything = require_node_modules()?;
    let cfg = format!(
        "[servers.everything]\ncommand = \"node\"\nargs = [\"{}\"]\n\n{}",
        everything.display(),
        fixture_server("fixture", &[])
    );
    let d = env.start(&cfg);
    d.wait_ready(&["everything", "fixture"]);
    Some(d)
}

/// server-everything's entry point, when `npm ci --prefix tests/interop`
/// installed it (and node is there to run it).
pub fn require_node_modules() -> Option<PathBuf> {
    ci_tool("node", "nodejs")?;
    let dir = interop_dir();
    let everything = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if everything.exists() {
        Some(everything)
    } else {
        unavailable(
            "interop packages are missing: run `npm ci --prefix tests/interop` (see README)",
        );
        None
    }
}

/// The Python of the venv .ci/run makes from tests/interop/requirements.txt.
pub fn require_python_sdk() -> Option<PathBuf> {
    let python = interop_dir().join(".venv/bin/python");
    if python.exists() {
        Some(python)
    } else {
        unavailable(
            "the Python SDK is missing: python3 -m venv tests/interop/.venv && \
             tests/interop/.venv/bin/python -m pip install -r tests/interop/requirements.txt",
        );
        None
    }
}

/// Runs `node tests/interop/<script> <args...> <shim> --socket <socket>` and
/// returns the one JSON report it prints.
pub(crate) fn run_ts_client(script: &str, args: &[&str], socket: &Path) -> Value {
    run_client(Path::new("node"), script, args, socket, &[])
}

/// [`run_ts_client`] with flags for the shim after `--socket <socket>`.
pub fn run_ts_client_with(script: &str, args: &[&str], socket: &Path, shim_args: &[&str]) -> Value {
    run_client_with(Path::new("node"), script, args, socket, &[], shim_args)
}

/// Runs `<program> tests/interop/<script> <args...> <shim> --socket
/// <socket>` with extra `env` and returns the one JSON report it prints.
pub fn run_client(
    program: &Path,
    script: &str,
    args: &[&str],
    socket: &Path,
    env: &[(&str, &str)],
) -> Value {
    run_client_with(program, script, args, socket, env, &[])
}

/// [`run_client`] with flags for the shim after `--socket <socket>`.
fn run_client_with(
    program: &Path,
    script: &str,
    args: &[&str],
    socket: &Path,
    env: &[(&str, &str)],
    shim_args: &[&str],
) -> Value {
    let out = Command::new(program)
        .envs(env.iter().copied())
        .arg(interop_dir().join(script))
        .args(args)
        .arg(SHIM)
        .arg("--socket")
        .arg(socket)
        .args(shim_args)
        .output()
        .expect("run the client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script}: not one JSON line ({e}); stderr: {stderr}"))
}

/// ts_client.mjs's report has the echo and the sum of its calls.
pub fn assert_echo_and_sum(v: &Value) {
    assert_eq!(
        v["echo"]["content"][0]["text"], "Echo: hello interop",
        "{v}"
    );
    assert!(
        v["sum"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains('5'),
        "{v}"
    );
}

#[test]
fn typescript_sdk_client_lists_and_calls_server_everything_through_the_shim() {
    let env = Env::new();
    let Some(_d) = everything_and_fixture(&env) else {
        return;
    };
    let v = run_ts_client("ts_client.mjs", &[], &env.socket);
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
    assert_echo_and_sum(&v);
}

#[test]
fn typescript_sdk_client_uses_the_whole_surface_of_a_shared_server_everything() {
    let Some(everything) = require_node_modules() else {
        return;
    };
    let env = Env::new();
    let root = env.path().join("project root");
    std::fs::create_dir_all(&root).unwrap();
    let root_uri = format!("file://{}", root.display().to_string().replace(' ', "%20"));
    let cfg = format!(
        "[servers.everything]\ncommand = \"node\"\nargs = [\"{}\"]\nroots = [\"{}\"]\n",
        everything.display(),
        root.display()
    );
    let d = env.start(&cfg);
    d.wait_ready(&["everything"]);
    let v = run_ts_client("ts_surface.mjs", &[&root_uri], &env.socket);
    let show = |k: &str| format!("{k}: {}", v[k]);

    let prompts = v["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", show("prompts")));
    for want in [
        "everything__simple-prompt",
        "everything__args-prompt",
        "everything__completable-prompt",
    ] {
        assert!(
            prompts.iter().any(|p| p == want),
            "{want}: {}",
            show("prompts")
        );
    }
    let prompt_text = v["prompt"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or("");
    assert!(prompt_text.contains("Paris"), "{}", show("prompt"));
    assert!(
        v["completion"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "Engineering")),
        "{}",
        show("completion")
    );
    let resources = v["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", show("resources")));
    assert!(
        resources
            .iter()
            .all(|r| r["uri"].as_str().unwrap().starts_with("demo://")
                && r["name"].as_str().unwrap().starts_with("everything__")),
        "URIs unchanged, names prefixed: {}",
        show("resources")
    );
    assert!(
        v["templates"].as_array().is_some_and(|t| t
            .iter()
            .any(|x| x[0] == "demo://resource/dynamic/text/{resourceId}")),
        "{}",
        show("templates")
    );
    assert!(
        v["read_static"]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("demo://")),
        "{}",
        show("read_static")
    );
    assert_eq!(
        v["read_template"]["uri"],
        "demo://resource/dynamic/text/42",
        "{}",
        show("read_template")
    );
    assert!(v["subscribe"]["uri"].is_string(), "{}", show("subscribe"));
    assert!(v["logging"]["data"].is_string(), "{}", show("logging"));
    assert_eq!(v["logging"]["logger"], "everything", "{}", show("logging"));

    let sampling = v["sampling"]["text"].as_str().unwrap_or("");
    assert!(sampling.contains("canned answer"), "{}", show("sampling"));
    assert_eq!(v["sampling"]["handlerCalls"], 1, "{}", show("sampling"));
    assert!(
        v["elicitation"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("accept"),
        "{}",
        show("elicitation")
    );
    let roots = v["roots"]["text"].as_str().unwrap_or("");
    assert!(
        roots.contains(&root_uri),
        "the configured root: {}",
        show("roots")
    );
    assert_eq!(
        v["roots"]["handlerCalls"],
        0,
        "the client is never asked for roots: {}",
        show("roots")
    );
    // server-everything writes its last progress right before the result;
    // when both arrive in one read, the TS SDK handles the result first and
    // drops that progress (its notification handlers run a microtask later).
    // The raw-client tests check that every progress notification arrives.
    let progress = v["progress"]["progress"].as_array().map_or(0, Vec::len);
    assert!((2..=3).contains(&progress), "{}", show("progress"));

    let task = &v["task"];
    let task_id = task["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", show("task")));
    assert!(
        task_id.starts_with("sp-everything-"),
        "daemon-minted task id: {}",
        show("task")
    );
    assert_eq!(task["status"], "completed", "{}", show("task"));
    assert_eq!(
        task["listed"],
        serde_json::json!([task_id]),
        "{}",
        show("task")
    );
    assert!(
        task["text"].as_str().is_some_and(|t| t.contains("proxies")),
        "{}",
        show("task")
    );
}

#[test]
fn python_sdk_client_session_lists_calls_reads_and_gets_progress_through_the_shim() {
    let Some(everything) = require_node_modules() else {
        return;
    };
    let Some(python) = require_python_sdk() else {
        return;
    };
    let env = Env::new();
    let cfg = format!(
        "[servers.everything]\ncommand = \"node\"\nargs = [\"{}\"]\n",
        everything.display()
    );
    let d = env.start(&cfg);
    d.wait_ready(&["everything"]);
    let out = Command::new(python)
        .arg(interop_dir().join("py_client.py"))
        .arg(SHIM)
        .arg("--socket")
        .arg(&env.socket)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "py_client.py failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");

    assert_eq!(v["serverInfo"]["name"], "stdioproxy", "{v}");
    let tools = v["tools"].as_array().expect("tools");
    for want in [
        "everything__echo",
        "everything__trigger-long-running-operation",
    ] {
        assert!(tools.iter().any(|t| t == want), "{want} missing: {v}");
    }
    assert_eq!(v["echo"], "Echo: hello python", "{v}");
    assert_eq!(v["echoIsError"], false, "{v}");
    let resources = v["resources"].as_array().expect("resources");
    assert!(
        !resources.is_empty()
            && resources.iter().all(|r| r["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("demo://"))
                && r["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("everything__"))),
        "{v}"
    );
    assert_eq!(v["read"]["uri"], resources[0]["uri"], "{v}");
    assert_eq!(v["read"]["hasText"], true, "{v}");
    // Three steps: the SDK's callback saw progress (the last one can race
    // the result, as with the TS SDK; see the surface test above).
    let progress = v["progress"].as_array().map_or(0, Vec::len);
    assert!((2..=3).contains(&progress), "{v}");
    assert!(
        v["longRunning"]
            .as_str()
            .is_some_and(|t| t.contains("completed")),
        "{v}"
    );
}
