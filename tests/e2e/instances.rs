//! Instances (docs/INSTANCES.md): per-client and per-workspace servers, lazy
//! start, idle stop, `max_instances`, supervision and reload per instance,
//! and `status` listing instances. The fixture's `instance` tool reports the
//! pid, cwd and roots of the process that answered.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

/// A fixture server `name` with the `instance` tool and `extra` lines.
fn server(name: &str, extra: &str) -> String {
    server_env(name, "", extra)
}

/// Like [`server`], with `env` (`, K = "v"` items) added to its env table.
fn server_env(name: &str, env: &str, extra: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = \"{FIXTURE}\"\nenv = {{ FIXTURE_NAME = \"{name}\", FIXTURE_INSTANCE = \"1\"{env} }}\nrestart_backoff = \"100ms\"\n{extra}\n"
    )
}

/// What the instance that answered says about itself.
fn report(c: &mut Client, tool: &str) -> Value {
    let text = c.call_text(tool, json!({}));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool}: not JSON ({e}): {text}"))
}

fn pid_of(r: &Value) -> u32 {
    r["pid"].as_u64().expect("pid") as u32
}

/// A server's instances in a status.
fn instances(st: &Value, name: &str) -> Vec<Value> {
    st["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .and_then(|s| s["instances"].as_array().cloned())
        .unwrap_or_default()
}

/// The instances that run a process.
fn running(st: &Value, name: &str) -> Vec<Value> {
    instances(st, name)
        .into_iter()
        .filter(|i| i["pid"].is_u64())
        .collect()
}

fn mkdir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::canonicalize(&dir).expect("canonicalize")
}

/// The root URI of a directory (checked against literal URIs in the
/// library's own tests).
fn file_uri(path: &Path) -> String {
    stdioproxy::workspace::file_uri(path)
}

/// A client that declared sampling and roots, so it can answer both.
fn capable_client(socket: &Path) -> Client {
    let mut c = Client::connect(socket);
    c.initialize_with(json!({"sampling": {}, "roots": {"listChanged": true}}));
    c
}

#[test]
fn per_client_gives_each_session_its_own_process_that_stops_with_it() {
    let env = Env::new();
    let d = env.start(&server("b", "share = \"per-client\""));
    let mut c1 = Client::initialized(&env.socket);
    // The catalog is learnt once (no cache yet) and listed for every session.
    c1.wait_for_tool("b__instance");
    let mut c2 = Client::initialized(&env.socket);
    assert!(c2.tool_names().contains(&"b__instance".to_string()));

    let (r1, r2) = (
        report(&mut c1, "b__instance"),
        report(&mut c2, "b__instance"),
    );
    let (p1, p2) = (pid_of(&r1), pid_of(&r2));
    assert_ne!(p1, p2, "two clients share one per-client process");
    // Each session keeps its own.
    assert_eq!(pid_of(&report(&mut c1, "b__instance")), p1);
    let st = d.wait_status("two per-client instances of b", |st| {
        running(st, "b").len() == 2
    });
    let insts = running(&st, "b");
    let mut owners: Vec<String> = insts
        .iter()
        .map(|i| i["key"].as_str().unwrap_or_default().to_string())
        .collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), 2, "{st:#}");
    for i in &insts {
        assert!(i["key"].as_str().unwrap().starts_with("session:"), "{i}");
        assert_eq!(i["state"], "ready", "{i}");
        assert!(i["owner"]["session"].is_u64(), "{i}");
        assert_eq!(i["owner"]["client"], "e2e", "{i}");
        assert!(
            i["started_unix"].is_u64() && i["last_used_unix"].is_u64(),
            "{i}"
        );
    }

    c1.close();
    c1.wait();
    wait_gone(p1);
    d.wait_status("one instance of b left", |st| running(st, "b").len() == 1);
    assert!(alive(p2));
    assert_eq!(pid_of(&report(&mut c2, "b__instance")), p2);
    // A per-client instance gets no roots unless its client declared them.
    assert_eq!(r2["roots"], Value::Null, "{r2}");
}

#[test]
fn per_workspace_shares_a_directory_and_runs_there_with_it_as_the_only_root() {
    let env = Env::new();
    let (ws1, ws2) = (mkdir(env.path(), "ws1"), mkdir(env.path(), "ws2"));
    let d = env.start(&server(
        "git",
        "share = \"per-workspace\"\nidle_stop = \"1m\"",
    ));
    let mut a = Client::connect_in(&env.socket, &ws1, &[]);
    a.initialize();
    a.wait_for_tool("git__instance");
    // Same workspace, given by flag (relative to the shim's cwd) instead.
    let mut b = Client::connect_in(&env.socket, env.path(), &["--workspace", "ws1"]);
    b.initialize();
    let mut c = Client::connect_in(&env.socket, &ws2, &[]);
    c.initialize();

    let (ra, rb, rc) = (
        report(&mut a, "git__instance"),
        report(&mut b, "git__instance"),
        report(&mut c, "git__instance"),
    );
    assert_eq!(pid_of(&ra), pid_of(&rb), "one workspace, one process");
    assert_ne!(
        pid_of(&ra),
        pid_of(&rc),
        "another workspace, another process"
    );
    for (r, ws) in [(&ra, &ws1), (&rc, &ws2)] {
        assert_eq!(r["cwd"], ws.display().to_string(), "{r}");
        let want = json!({"roots": [{
            "uri": file_uri(ws),
            "name": ws.file_name().unwrap().to_str().unwrap(),
        }]});
        assert_eq!(r["roots"], want, "{r}");
    }
    let st = d.wait_status("two per-workspace instances", |st| {
        running(st, "git").len() == 2
    });
    let mut owners: Vec<String> = running(&st, "git")
        .iter()
        .map(|i| {
            i["owner"]["workspace"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    owners.sort();
    assert_eq!(
        owners,
        vec![ws1.display().to_string(), ws2.display().to_string()]
    );

    // The last session of ws1 leaves; a client restarted within idle_stop
    // finds the same process.
    let pid1 = pid_of(&ra);
    for mut gone in [a, b] {
        gone.close();
        gone.wait();
    }
    let mut again = Client::connect_in(&env.socket, &ws1, &[]);
    again.initialize();
    assert_eq!(pid_of(&report(&mut again, "git__instance")), pid1);

    // A shorter idle_stop applies in place; the instance stops that long
    // after its last session closed.
    env.write_config(&server(
        "git",
        "share = \"per-workspace\"\nidle_stop = \"1s\"",
    ));
    d.log.wait_for(&["updated in place"]);
    // The workspace is still its only root.
    let r = report(&mut again, "git__instance");
    assert_eq!(r["roots"]["roots"][0]["uri"], file_uri(&ws1), "{r}");
    again.close();
    again.wait();
    wait_gone(pid1);
    let st = d.wait_status("ws1's instance gone", |st| {
        !running(st, "git")
            .iter()
            .any(|i| i["owner"]["workspace"] == ws1.display().to_string())
    });
    assert_eq!(
        instances(&st, "git")
            .iter()
            .map(|i| i["restarts"].as_u64())
            .max()
            .flatten()
            .unwrap_or(0),
        0,
        "stopping for idleness is not a failure: {st:#}"
    );
}

#[test]
fn bad_workspaces_fail_only_their_own_session_and_odd_bytes_stay_escaped() {
    let env = Env::new();
    let ws = mkdir(env.path(), "good");
    let d = env.start(&server("git", "share = \"per-workspace\""));
    let mut good = Client::connect_in(&env.socket, &ws, &[]);
    good.initialize();
    good.wait_for_tool("git__instance");

    // A workspace that does not exist: a clear error for that session only.
    let mut bad = Client::connect_in(&env.socket, env.path(), &["--workspace", "no/such/dir"]);
    bad.send_request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}),
    );
    let status = bad.wait();
    assert!(!status.success());
    let err = bad.stderr.lines().join("\n");
    assert!(
        err.contains("no/such/dir") && err.contains("workspace"),
        "{err}"
    );
    assert_eq!(
        report(&mut good, "git__instance")["cwd"],
        ws.display().to_string()
    );

    // A directory whose name has a newline, an escape sequence and a byte
    // that is not UTF-8.
    let odd_name = OsStr::from_bytes(b"odd\nforged line \x1b[31m \xff");
    let odd = env.path().join(odd_name);
    std::fs::create_dir(&odd).unwrap();
    let odd = std::fs::canonicalize(&odd).unwrap();
    let mut o = Client::connect_in(&env.socket, &odd, &[]);
    o.initialize();
    let r = report(&mut o, "git__instance");
    assert_eq!(r["cwd"], odd.to_string_lossy().as_ref(), "{r}");
    assert_eq!(r["roots"]["roots"][0]["uri"], file_uri(&odd), "{r}");

    let text = Command::new(DAEMON)
        .args(["status", "--socket"])
        .arg(&env.socket)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("odd\\nforged line"), "{text}");
    for line in text.lines().chain(d.log.lines().iter().map(String::as_str)) {
        assert!(
            !line.starts_with("forged line"),
            "a path broke a line: {line:?}"
        );
        assert!(!line.contains('\x1b'), "a raw escape sequence: {line:?}");
    }
    let st = d.status();
    assert!(
        running(&st, "git")
            .iter()
            .any(|i| i["owner"]["workspace"] == odd.to_string_lossy().as_ref()),
        "{st:#}"
    );
}

#[test]
fn a_lazy_server_starts_on_a_call_not_on_listing_and_idles_out() {
    let env = Env::new();
    let cfg = server("rare", "start = \"lazy\"\nidle_stop = \"1s\"");
    {
        // No cache yet: the daemon starts it once to learn the catalog, and
        // it idles out.
        let mut d = env.start(&cfg);
        let mut c = Client::initialized(&env.socket);
        c.wait_for_tool("rare__echo");
        d.wait_status("rare idle after learning its catalog", |st| {
            running(st, "rare").is_empty() && d_state(st, "rare") == "idle"
        });
        d.stop();
    }
    // The cache is warm now.
    let d = Daemon::start(&env, &[]);
    let mut c = Client::initialized(&env.socket);
    assert!(c.tool_names().contains(&"rare__echo".to_string()));
    let st = d.status();
    assert!(
        running(&st, "rare").is_empty(),
        "listing started it: {st:#}"
    );
    assert_eq!(d_state(&st, "rare"), "idle", "{st:#}");
    assert!(!d.log.contains("fixture rare started"));

    let first = pid_of(&report(&mut c, "rare__instance"));
    let st = d.status();
    assert_eq!(running(&st, "rare").len(), 1, "{st:#}");
    wait_gone(first);
    let st = d.wait_status("rare idle again", |st| d_state(st, "rare") == "idle");
    let s = server_of(&st, "rare");
    assert_eq!(s["restarts"], 0, "idle stop counted as a failure: {s}");
    assert!(s["last_error"].is_null(), "{s}");
    // A call afterwards starts it again, and nothing was announced: the
    // catalog did not change.
    let second = pid_of(&report(&mut c, "rare__instance"));
    assert_ne!(first, second);
    c.request("ping", json!({}));
    assert!(
        !c.received()
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "list_changed without a change"
    );
}

fn server_of(st: &Value, name: &str) -> Value {
    st["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn d_state(st: &Value, name: &str) -> String {
    server_of(st, name)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn max_instances_refuses_another_instance_at_once() {
    let env = Env::new();
    let d = env.start(&server("b", "share = \"per-client\"\nmax_instances = 1"));
    let mut c1 = Client::initialized(&env.socket);
    c1.wait_for_tool("b__instance");
    let p1 = pid_of(&report(&mut c1, "b__instance"));
    let mut c2 = Client::initialized(&env.socket);
    let r = c2.call("b__instance", json!({}));
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("'b'") && msg.contains("max_instances = 1"),
        "{r}"
    );
    assert_eq!(r["error"]["data"]["server"], "b", "{r}");
    // The first client is not disturbed; once it leaves there is room.
    assert_eq!(pid_of(&report(&mut c1, "b__instance")), p1);
    c1.close();
    c1.wait();
    d.wait_status("b has no instance", |st| running(st, "b").is_empty());
    assert_ne!(pid_of(&report(&mut c2, "b__instance")), p1);
}

#[test]
fn a_per_client_instance_asks_only_its_owner() {
    let env = Env::new();
    let d = env.start(&server("s", "share = \"per-client\""));
    let mut c1 = capable_client(&env.socket);
    c1.wait_for_tool("s__ask");
    let mut c2 = capable_client(&env.socket);

    sample_through_owner(&mut c1, &mut c2, "one");
    sample_through_owner(&mut c2, &mut c1, "two");

    // Its log messages reach its owner only.
    c1.call_text("s__log", json!({"level": "info", "data": "from one"}));
    let m = c1.notification("notifications/message");
    assert_eq!(m["params"]["data"], "from one", "{m}");
    c2.request("ping", json!({}));
    assert!(
        !c2.received()
            .iter()
            .any(|m| m["method"] == "notifications/message"),
        "another client got the owner's log message"
    );

    // roots/list goes to the owner, which declared roots.
    let id = c1.send_request(
        "tools/call",
        json!({"name": "s__instance", "arguments": {}}),
    );
    let req = c1.incoming_request("roots/list");
    c1.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {
        "roots": [{"uri": "file:///owner-one", "name": "one"}]}}));
    let r = c1.response(&id);
    let report: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        report["roots"]["roots"][0]["uri"], "file:///owner-one",
        "{report}"
    );
    c2.request("ping", json!({}));
    assert!(!c2.received().iter().any(|m| m["method"] == "roots/list"));
    // The owner's roots/list_changed reaches its instance.
    c1.send(&json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}));
    d.log
        .wait_for(&[&format!("pid={}: roots changed", report["pid"])]);
}

/// `me` makes its instance ask for sampling: `me` gets the request and
/// answers it, `other` (which declared sampling too) gets nothing.
fn sample_through_owner(me: &mut Client, other: &mut Client, tag: &str) {
    let params = json!({"messages": [], "maxTokens": 5});
    let id = me.send_request(
        "tools/call",
        json!({"name": "s__ask", "arguments": {"method": "sampling/createMessage", "params": params}}),
    );
    let req = me.incoming_request("sampling/createMessage");
    me.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": tag}, "model": "m"}}));
    let r = me.response(&id);
    assert!(r.to_string().contains(tag), "{r}");
    other.request("ping", json!({}));
    assert!(
        !other
            .received()
            .iter()
            .any(|m| m["method"] == "sampling/createMessage"),
        "another client got the owner's sampling request"
    );
}

/// A daemon running per-client server `b` (with `extra` lines), and two
/// clients that called it once: their instances' pids.
fn two_per_client_sessions(env: &Env, extra: &str) -> (Daemon, Client, Client, u32, u32) {
    let d = env.start(&server("b", &format!("share = \"per-client\"\n{extra}")));
    let mut c1 = Client::initialized(&env.socket);
    c1.wait_for_tool("b__instance");
    let mut c2 = Client::initialized(&env.socket);
    let p1 = pid_of(&report(&mut c1, "b__instance"));
    let p2 = pid_of(&report(&mut c2, "b__instance"));
    (d, c1, c2, p1, p2)
}

#[test]
fn a_crash_restarts_only_that_instance() {
    let env = Env::new();
    let (d, mut c1, mut c2, p1, p2) = two_per_client_sessions(&env, "");
    let r = c1.call("b__crash", json!({}));
    assert!(r.get("error").is_some(), "{r}");
    wait_gone(p1);
    let st = d.wait_status("c1's instance restarted", |st| {
        running(st, "b")
            .iter()
            .any(|i| i["restarts"] == 1 && i["state"] == "ready")
    });
    let restarted: Vec<_> = running(&st, "b")
        .into_iter()
        .filter(|i| i["restarts"] == 1)
        .collect();
    assert_eq!(restarted.len(), 1, "{st:#}");
    let p1b = pid_of(&report(&mut c1, "b__instance"));
    assert_ne!(p1b, p1);
    assert_eq!(
        pid_of(&report(&mut c2, "b__instance")),
        p2,
        "the other instance was touched"
    );
}

#[test]
fn a_reload_swaps_every_instance_and_a_new_share_drains_the_old_ones() {
    let env = Env::new();
    let (ws1, ws2) = (mkdir(env.path(), "one"), mkdir(env.path(), "two"));
    let d = env.start(&server("git", "share = \"per-workspace\""));
    let mut a = Client::connect_in(&env.socket, &ws1, &[]);
    a.initialize();
    a.wait_for_tool("git__instance");
    let mut b = Client::connect_in(&env.socket, &ws2, &[]);
    b.initialize();
    let (pa, pb) = (
        pid_of(&report(&mut a, "git__instance")),
        pid_of(&report(&mut b, "git__instance")),
    );

    // A new env: every running instance is replaced blue-green.
    env.write_config(&server_env(
        "git",
        ", X = \"2\"",
        "share = \"per-workspace\"",
    ));
    d.log.wait_for(&["restarted: git"]);
    wait_gone(pa);
    wait_gone(pb);
    let (ra, rb) = (
        report(&mut a, "git__instance"),
        report(&mut b, "git__instance"),
    );
    assert!(pid_of(&ra) != pa && pid_of(&rb) != pb);
    assert_eq!(ra["cwd"], ws1.display().to_string());
    assert_eq!(rb["cwd"], ws2.display().to_string());
    let st = d.status();
    assert_eq!(running(&st, "git").len(), 2, "{st:#}");

    // share changes: the running instances drain, new calls share one.
    env.write_config(&server("git", "share = \"shared\""));
    d.log.wait_for_count(0, &["restarted: git"], 2);
    wait_gone(pid_of(&ra));
    wait_gone(pid_of(&rb));
    let (sa, sb) = (
        report(&mut a, "git__instance"),
        report(&mut b, "git__instance"),
    );
    assert_eq!(pid_of(&sa), pid_of(&sb));
    let st = d.status();
    let insts = running(&st, "git");
    assert_eq!(insts.len(), 1, "{st:#}");
    assert_eq!(insts[0]["key"], "shared");
}

// ----- interop: real servers, the official TypeScript SDK client ---------

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The entry point of an installed npm server package.
fn npm_server(package: &str) -> PathBuf {
    let entry = interop_dir().join(format!(
        "node_modules/@modelcontextprotocol/{package}/dist/index.js"
    ));
    assert!(
        entry.exists(),
        "interop packages are missing: run `npm ci --prefix tests/interop` first (see README)"
    );
    entry
}

/// Runs ts_instances.mjs: two SDK clients, in `dir1` and `dir2`.
fn two_ts_clients(mode: &str, dir1: &Path, dir2: &Path, socket: &Path) -> Value {
    let dirs = [dir1.display().to_string(), dir2.display().to_string()];
    crate::interop::run_ts_client("ts_instances.mjs", &[mode, &dirs[0], &dirs[1]], socket)
}

#[test]
fn interop_server_memory_per_client_keeps_two_graphs() {
    let memory = npm_server("server-memory");
    let env = Env::new();
    let store = mkdir(env.path(), "memory");
    let d = env.start(&format!(
        "[servers.memory]\ncommand = \"node\"\nargs = [\"{}\"]\nshare = \"per-client\"\nenv = {{ MEMORY_FILE_PATH = \"{}/graph-${{STDIOPROXY_INSTANCE}}.json\" }}\n",
        memory.display(),
        store.display()
    ));
    let mut probe = Client::initialized(&env.socket);
    probe.wait_for_tool("memory__read_graph");
    drop(probe);
    let v = two_ts_clients("memory", env.path(), env.path(), &env.socket);
    assert_eq!(v["one"], json!(["made-by-one"]), "{v}");
    assert_eq!(v["two"], json!(["made-by-two"]), "{v}");
    // Two graphs, two files.
    let files = std::fs::read_dir(&store).unwrap().count();
    assert!(files >= 2, "{files} memory files");
    drop(d);
}

#[test]
fn interop_server_filesystem_per_workspace_sees_only_its_directory() {
    let fs = npm_server("server-filesystem");
    let env = Env::new();
    let (one, two) = (mkdir(env.path(), "one"), mkdir(env.path(), "two"));
    std::fs::write(one.join("secret.txt"), "one's").unwrap();
    std::fs::write(one.join("only-in-one.txt"), "").unwrap();
    std::fs::write(two.join("secret.txt"), "two's").unwrap();
    let d = env.start(&format!(
        "[servers.fs]\ncommand = \"node\"\nargs = [\"{}\"]\nshare = \"per-workspace\"\n",
        fs.display()
    ));
    let mut probe = Client::initialized(&env.socket);
    probe.wait_for_tool("fs__list_allowed_directories");
    drop(probe);
    let v = two_ts_clients("filesystem", &one, &two, &env.socket);
    for (who, own, other) in [("one", &one, &two), ("two", &two, &one)] {
        let r = &v[who];
        let allowed = r["allowed"].as_str().unwrap_or_default();
        assert!(allowed.contains(&own.display().to_string()), "{who}: {r}");
        assert!(
            !allowed.contains(&other.display().to_string()),
            "{who}: {r}"
        );
        assert_eq!(
            r["other"]["isError"], true,
            "{who} read the other's file: {r}"
        );
        assert!(
            r["listing"]
                .as_str()
                .unwrap_or_default()
                .contains("secret.txt"),
            "{r}"
        );
    }
    assert!(v["one"]["listing"]
        .as_str()
        .unwrap()
        .contains("only-in-one.txt"));
    assert!(!v["two"]["listing"]
        .as_str()
        .unwrap()
        .contains("only-in-one.txt"));
    let st = d.status();
    assert_eq!(running(&st, "fs").len(), 2, "{st:#}");
}

#[test]
fn eager_per_client_starts_with_the_session_and_no_workspace_is_a_clear_error() {
    let env = Env::new();
    let d = env.start(&format!(
        "{}\n{}",
        server("b", "share = \"per-client\"\nstart = \"eager\""),
        server("git", "share = \"per-workspace\"")
    ));
    let mut c = Client::initialized(&env.socket);
    c.wait_for_tool("b__instance");
    // Eager: the session's instance starts at `initialized`, before any call.
    let st = d.wait_status("b's eager instance", |st| {
        running(st, "b").iter().any(|i| i["state"] == "ready")
    });
    let pid = running(&st, "b")[0]["pid"].as_u64().unwrap() as u32;
    assert_eq!(pid_of(&report(&mut c, "b__instance")), pid);

    // A plain socket client has no workspace: per-workspace calls say why,
    // everything else works.
    let mut raw = RawConn::connect(&env.socket);
    raw.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
    assert!(raw.read_json().get("result").is_some());
    raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    raw.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"git__echo","arguments":{"text":"x"}}}"#);
    let r = loop {
        let v = raw.read_json();
        if v["id"] == 2 {
            break v;
        }
    };
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("'git'") && msg.contains("no workspace") && msg.contains("--workspace"),
        "{r}"
    );
    raw.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"b__echo","arguments":{"text":"fine"}}}"#);
    let r = loop {
        let v = raw.read_json();
        if v["id"] == 3 {
            break v;
        }
    };
    assert!(r.to_string().contains("fine"), "{r}");
}

#[test]
fn health_checks_run_per_instance() {
    let env = Env::new();
    let (d, mut c1, mut c2, p1, p2) =
        two_per_client_sessions(&env, "health_interval = \"300ms\"\nhealth_timeout = \"2s\"");
    // c1's instance stops answering pings: it alone is killed and restarted.
    c1.call_text("b__hang_pings", json!({}));
    wait_gone(p1);
    d.wait_status("c1's hung instance restarted", |st| {
        running(st, "b")
            .iter()
            .any(|i| i["restarts"] == 1 && i["state"] == "ready")
    });
    assert_ne!(pid_of(&report(&mut c1, "b__instance")), p1);
    assert_eq!(pid_of(&report(&mut c2, "b__instance")), p2);
}
