//! Hot reload: every save style, debouncing, invalid configs, the per-server
//! diff, and no failed calls while reloading.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::*;

fn reload_cli(d: &Daemon) -> (bool, String, String) {
    let out = Command::new(DAEMON)
        .args(["reload", "--socket"])
        .arg(&d.socket)
        .output()
        .expect("run reload");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pids(d: &Daemon) -> std::collections::BTreeMap<String, Option<u64>> {
    d.status()["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["pid"].as_u64(),
            )
        })
        .collect()
}

/// A `[daemon]` table that leaves reloading to SIGHUP and `stdioproxy
/// reload`, for tests that assert what the CLI reports.
const NO_WATCH: &str = "[daemon]\nwatch_config = false\n\n";

/// Waits until a reload that adds `server` has been applied.
fn wait_reloaded_with(d: &Daemon, from: usize, server: &str) {
    d.log.wait_for_from(from, &["config reloaded", server]);
}

#[test]
fn every_save_style_triggers_a_reload() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let base = fixture_server("alpha", &[]);
    let cfg = |extra: &str| format!("{base}\n{}", fixture_server(extra, &[]));
    let path = env.config.clone();

    // In-place rewrite (cp, `>`, VS Code default).
    let from = d.log.len();
    std::fs::write(&path, cfg("inplace")).unwrap();
    wait_reloaded_with(&d, from, "added: inplace");

    // Rename over (vim, sed -i, helix).
    let from = d.log.len();
    let tmp = env.path().join(".config.toml.swp");
    std::fs::write(&tmp, cfg("renamed")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_reloaded_with(&d, from, "added: renamed");

    // Symlink re-pointed atomically (home-manager): ln -sfn via rename.
    let from = d.log.len();
    let store = env.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let target = store.join("gen1-config.toml");
    write_private(&target, &cfg("linked"));
    let link_tmp = env.path().join(".link-tmp");
    std::os::unix::fs::symlink(&target, &link_tmp).unwrap();
    std::fs::rename(&link_tmp, &path).unwrap();
    wait_reloaded_with(&d, from, "added: linked");

    // Editing the symlink's target in its own directory (dotfiles/stow).
    let from = d.log.len();
    write_private(&target, &cfg("target-edit"));
    wait_reloaded_with(&d, from, "added: target-edit");

    // Deleted, then re-created.
    let from = d.log.len();
    std::fs::remove_file(&path).unwrap();
    d.log
        .wait_for_from(from, &["does not exist; still running the previous config"]);
    let from = d.log.len();
    write_private(&path, &cfg("recreated"));
    wait_reloaded_with(&d, from, "added: recreated");

    // Touch without a content change: no reload.
    let from = d.log.len();
    let (ok, out, _) = reload_cli(&d);
    assert!(ok && out.contains("no changes"), "{out}");
    assert!(!d.log.lines()[from..]
        .iter()
        .any(|l| l.contains("reloading config")));
    let mut c = Client::initialized(&env.socket);
    assert!(c.tool_names().contains(&"recreated__echo".to_string()));
}

#[test]
fn a_config_directory_created_after_start_is_picked_up() {
    let env = Env::new();
    let config = env.path().join("later/stdioproxy/config.toml");
    let mut cmd_env = Env::new();
    cmd_env.config = config.clone();
    cmd_env.socket = env.socket.clone();
    let d = Daemon::start(&cmd_env, &[]);
    assert_eq!(d.status()["servers"].as_array().unwrap().len(), 0);
    let from = d.log.len();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    write_private(&config, &fixture_server("late", &[]));
    wait_reloaded_with(&d, from, "added: late");
    d.wait_ready(&["late"]);
}

#[test]
fn a_burst_of_writes_gives_one_reload() {
    let env = Env::new();
    let head =
        "[daemon]\nreload_debounce = \"500ms\"\n\n".to_string() + &fixture_server("alpha", &[]);
    let d = env.start(&head);
    d.wait_ready(&["alpha"]);
    let from = d.log.len();
    for i in 0..10 {
        std::fs::write(
            &env.config,
            format!("{head}\n# write {i}\n{}", fixture_server("burst", &[])),
        )
        .unwrap();
    }
    wait_reloaded_with(&d, from, "added: burst");
    // A control reload queues behind any pending reload and finds nothing new.
    let (ok, out, _) = reload_cli(&d);
    assert!(ok && out.contains("no changes"), "{out}");
    let applied = d.log.lines()[from..]
        .iter()
        .filter(|l| l.contains("reloading config"))
        .count();
    assert_eq!(applied, 1, "{:?}", &d.log.lines()[from..]);
}

#[test]
fn an_invalid_config_changes_nothing_and_shows_in_status_until_fixed() {
    let env = Env::new();
    let good = format!("{NO_WATCH}{}", fixture_server("alpha", &[]));
    let d = env.start(&good);
    d.wait_ready(&["alpha"]);
    let pid = d.server_status("alpha")["pid"].clone();
    let mut c = Client::initialized(&env.socket);

    env.write_config(&format!("{good}\n[servers.beta]\ncommand = \n"));
    let (ok, _, err) = reload_cli(&d);
    assert!(!ok, "reload must fail");
    assert!(
        err.contains("nothing changed") && err.contains(":9:"),
        "{err}"
    );
    let st = d.status();
    let e = st["config"]["error"].as_str().expect("config.error");
    assert!(e.contains(&format!("{}:9:", env.config.display())), "{e}");
    assert_eq!(st["config"]["last_reload"]["result"], "error");
    assert_eq!(d.server_status("alpha")["pid"], pid);
    assert_eq!(
        c.call_text("alpha__echo", json!({"text": "still"})),
        "still"
    );

    // Unsafe permissions are refused the same way.
    env.write_config(&format!("{good}\n{}", fixture_server("beta", &[])));
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, _, err) = reload_cli(&d);
    assert!(!ok && err.contains("writable by group or others"), "{err}");

    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out, _) = reload_cli(&d);
    assert!(ok && out.contains("added: beta"), "{out}");
    assert_eq!(d.status()["config"]["error"], Value::Null);
}

#[test]
fn added_removed_replaced_updated_and_unchanged_servers() {
    let env = Env::new();
    let before = [
        NO_WATCH.to_string(),
        fixture_server("keep", &[]),
        fixture_server("gone", &[]),
        fixture_server("swap", &[]),
        fixture_server("tune", &[]),
    ]
    .join("\n");
    let d = env.start(&before);
    d.wait_ready(&["keep", "gone", "swap", "tune"]);
    let old = pids(&d);
    let after = [
        NO_WATCH.to_string(),
        fixture_server("keep", &[]),
        fixture_server("swap", &[("EXTRA", "1")]),
        fixture_server("tune", &[]) + "request_timeout = \"1m\"\n",
        fixture_server("fresh", &[]),
    ]
    .join("\n");
    env.write_config(&after);
    let (ok, out, err) = reload_cli(&d);
    assert!(ok, "{err}");
    assert!(
        out.contains("added: fresh")
            && out.contains("removed: gone")
            && out.contains("restarted: swap"),
        "{out}"
    );
    assert!(
        out.contains("updated in place: tune") && out.contains("unchanged: keep"),
        "{out}"
    );
    let st = d.wait_ready(&["keep", "swap", "tune", "fresh"]);
    let new = pids(&d);
    assert_eq!(new["keep"], old["keep"], "unchanged keeps its pid");
    assert_eq!(new["tune"], old["tune"], "in-place update keeps its pid");
    assert_ne!(new["swap"], old["swap"], "changed env gets a new process");
    assert!(!new.contains_key("gone"));
    wait_gone(old["gone"].unwrap() as u32);
    wait_gone(old["swap"].unwrap() as u32);
    let _ = st;
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    assert!(
        names.contains(&"fresh__echo".to_string())
            && !names.iter().any(|n| n.starts_with("gone__"))
    );
    assert_eq!(c.call_text("swap__env", json!({"name": "EXTRA"})), "1");
}

#[test]
fn calls_in_flight_on_unchanged_servers_never_fail_during_20_reloads() {
    let env = Env::new();
    let stable = fixture_server("stable", &[]);
    let d = env.start(&stable);
    d.wait_ready(&["stable"]);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let socket = env.socket.clone();
    let stop2 = stop.clone();
    let done2 = done.clone();
    let caller = std::thread::spawn(move || {
        let mut c = Client::initialized(&socket);
        let (mut ok, mut failed) = (0, Vec::new());
        let mut i = 0u64;
        while !stop2.load(Ordering::SeqCst) {
            i += 1;
            // Keep a slow call in flight across reloads, and fast ones.
            let r = if i % 5 == 0 {
                c.call("stable__sleep", json!({"ms": 150}))
            } else {
                c.call("stable__echo", json!({"text": format!("n{i}")}))
            };
            if r.get("result").is_some() {
                ok += 1
            } else {
                failed.push(r)
            }
            done2.fetch_add(1, Ordering::SeqCst);
        }
        (ok, failed)
    });
    for i in 0..20 {
        // Let the caller make progress between reloads, so calls overlap
        // every one of them.
        let seen = done.load(Ordering::SeqCst);
        let deadline = std::time::Instant::now() + WAIT;
        while done.load(Ordering::SeqCst) < seen + 3 {
            assert!(std::time::Instant::now() < deadline, "caller stalled");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let extra = if i % 2 == 0 {
            fixture_server("flip", &[])
        } else {
            String::new()
        };
        env.write_config(&format!("{stable}\n{extra}"));
        let (ok, out, err) = reload_cli(&d);
        assert!(ok, "reload {i}: {err}");
        // The file watcher may have applied it first; then there is nothing left.
        assert!(
            out.contains("unchanged: stable") || out.contains("no changes"),
            "{out}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = caller.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    assert!(ok >= 60, "only {ok} calls completed");
}

#[test]
fn calls_to_a_server_being_replaced_succeed_during_the_swap() {
    let env = Env::new();
    let d = env.start(&format!("{NO_WATCH}{}", fixture_server("swap", &[])));
    d.wait_ready(&["swap"]);
    let old_pid = d.server_status("swap")["pid"].as_u64().unwrap();
    let mut c = Client::initialized(&env.socket);
    // Calls in flight on the old instance while it is replaced.
    for i in 0..5 {
        c.send(&json!({"jsonrpc":"2.0","id":format!("s{i}"),"method":"tools/call","params":{"name":"swap__sleep","arguments":{"ms":500}}}));
    }
    d.wait_status("calls in flight", |st| st["servers"][0]["in_flight"] == 5);
    env.write_config(&format!(
        "{NO_WATCH}{}",
        fixture_server("swap", &[("GENERATION", "2")])
    ));
    let (ok, out, err) = reload_cli(&d);
    assert!(ok && out.contains("restarted: swap"), "{out}{err}");
    // New calls go to the new instance right away.
    let who = c.call_text("swap__whoami", json!({}));
    assert_ne!(who, format!("swap {old_pid}"));
    for i in 0..5 {
        let r = c.response(&json!(format!("s{i}")));
        assert_eq!(r["result"]["content"][0]["text"], "slept 500", "{r}");
    }
    wait_gone(old_pid as u32);
}

#[test]
fn connected_clients_get_exactly_one_list_changed_per_reload() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let _ = c.tool_names();
    env.write_config(
        &[
            fixture_server("alpha", &[]),
            fixture_server("b1", &[]),
            fixture_server("b2", &[]),
        ]
        .join("\n"),
    );
    let (ok, _, err) = reload_cli(&d);
    assert!(ok, "{err}");
    c.recv_matching("list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });
    // Flush: a round trip after the reload; no second list_changed may be queued.
    assert!(c.request("ping", json!({}))["result"].is_object());
    assert!(c
        .try_backlog(|v| v["method"] == "notifications/tools/list_changed")
        .is_none());
    let names = c.tool_names();
    assert!(
        names.contains(&"b1__echo".to_string()) && names.contains(&"b2__echo".to_string()),
        "{names:?}"
    );
    // An unchanged reload sends nothing.
    let (ok, _, _) = reload_cli(&d);
    assert!(ok);
    assert!(c.request("ping", json!({}))["result"].is_object());
    assert!(c
        .try_backlog(|v| v["method"] == "notifications/tools/list_changed")
        .is_none());
}

/// The `list_changed` notifications a session got, after a round trip that
/// flushes everything the reload queued for it.
fn list_changes(c: &mut Client) -> Vec<String> {
    assert!(c.request("ping", json!({}))["result"].is_object());
    let mut seen = Vec::new();
    while let Some(n) = c.try_backlog(|v| {
        v["method"]
            .as_str()
            .is_some_and(|m| m.ends_with("/list_changed"))
    }) {
        seen.push(n["method"].as_str().unwrap_or_default().to_string());
    }
    seen.sort();
    seen
}

#[test]
fn list_changed_goes_out_only_for_the_kinds_that_changed() {
    let env = Env::new();
    let tools_only = |name: &str| fixture_server(name, &[("FIXTURE_TOOLS_ONLY", "1")]);
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let _ = c.tool_names();

    // A server with tools only: only the tools listing changed.
    env.write_config(&[fixture_server("alpha", &[]), tools_only("plain")].join("\n"));
    assert!(reload_cli(&d).0);
    c.notification("notifications/tools/list_changed");
    assert_eq!(
        list_changes(&mut c),
        Vec::<String>::new(),
        "no prompts/resources list_changed"
    );
    assert!(c.tool_names().contains(&"plain__echo".to_string()));

    // Removing it again: tools only, again.
    env.write_config(&fixture_server("alpha", &[]));
    assert!(reload_cli(&d).0);
    c.notification("notifications/tools/list_changed");
    assert_eq!(list_changes(&mut c), Vec::<String>::new());

    // A server with prompts and resources: every kind changed.
    env.write_config(&[fixture_server("alpha", &[]), fixture_server("full", &[])].join("\n"));
    assert!(reload_cli(&d).0);
    c.notification("notifications/tools/list_changed");
    c.notification("notifications/prompts/list_changed");
    c.notification("notifications/resources/list_changed");
    assert_eq!(
        list_changes(&mut c),
        Vec::<String>::new(),
        "exactly one of each"
    );

    // A session that sees only alpha (--servers) hears nothing at all.
    let mut only_alpha = Client::connect_with(&env.socket, &["--servers", "alpha"]);
    only_alpha.initialize();
    env.write_config(&[fixture_server("alpha", &[]), tools_only("plain")].join("\n"));
    assert!(reload_cli(&d).0);
    c.notification("notifications/tools/list_changed");
    assert_eq!(list_changes(&mut only_alpha), Vec::<String>::new());
}

#[test]
fn sighup_reloads() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    // Write with the watcher racing; SIGHUP must apply it regardless (the
    // second of the two finds nothing left to do).
    let from = d.log.len();
    env.write_config(&[fixture_server("alpha", &[]), fixture_server("hup", &[])].join("\n"));
    signal(d.pid(), nix::sys::signal::Signal::SIGHUP);
    wait_reloaded_with(&d, from, "added: hup");
    d.wait_ready(&["alpha", "hup"]);
    assert!(d.status()["config"]["last_reload"]["trigger"].is_string());
}

#[test]
fn the_reload_tool_exists_only_when_enabled_and_applies_the_config() {
    let env = Env::new();
    let d = env.start(&format!("{NO_WATCH}{}", fixture_server("alpha", &[])));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    assert!(
        !c.tool_names().iter().any(|n| n.starts_with("stdioproxy__")),
        "off by default"
    );
    assert_eq!(
        c.call("stdioproxy__reload", json!({}))["error"]["code"],
        -32602
    );

    // Turning it on is itself a reload (here through the CLI).
    let on = "[daemon]\nwatch_config = false\nreload_tool = true\n\n";
    env.write_config(&format!("{on}{}", fixture_server("alpha", &[])));
    assert!(reload_cli(&d).0);
    c.notification("notifications/tools/list_changed");
    assert!(c.tool_names().contains(&"stdioproxy__reload".to_string()));

    // The tool applies a change, and reports a refused config as a tool error.
    env.write_config(&format!(
        "{on}{}\n{}",
        fixture_server("alpha", &[]),
        fixture_server("beta", &[])
    ));
    let r = c.call("stdioproxy__reload", json!({}));
    assert_eq!(r["result"]["isError"], false, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("added: beta"), "{text}");
    assert_eq!(d.status()["config"]["last_reload"]["trigger"], "tool");
    env.write_config("[servers.x]\ncommand = \n");
    let r = c.call("stdioproxy__reload", json!({}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("config.toml:2"),
        "{r}"
    );
    assert_eq!(pids(&d).len(), 2, "nothing changed");
}
