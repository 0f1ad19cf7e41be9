//! Chaos soak: 32 clients through real shims call several fixture servers
//! (fast echoes and slow sleeps) while a driver kills children with SIGKILL,
//! rewrites the config (adding, removing and changing servers, by temp file
//! and rename) and sends SIGHUP.
//!
//! Asserted: every request gets exactly one response, a result or an error
//! that says why (server crashed or restarting, not ready, removed, timed
//! out); no response reaches the wrong session (each request's arguments
//! name its client and number, and the answer must echo them); and
//! afterwards the daemon's fd count, task count and RSS are back to their
//! baseline and no zombie is left among its children.
//!
//! About 60 s by default; `STDIOPROXY_SOAK_SECS=600 cargo test --test soak
//! -- --nocapture` runs longer and prints the figures as it ends.
//! `STDIOPROXY_SOAK_SEED` replays a driver sequence. The figures are also
//! written to `target/tmp/soak-report.json`.

// Test code: a poisoned lock means a test already failed.
#![allow(clippy::unwrap_used)]

#[path = "e2e/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use support::*;

const CLIENTS: usize = 32;
/// Requests a client keeps in flight at once.
const PIPELINE: usize = 3;
/// Servers that always exist (only killed) and those the driver adds,
/// removes and replaces.
const CORE: &[&str] = &["s0", "s1", "s2"];
const EXTRA: &[&str] = &["x0", "x1", "x2", "x3"];

/// A small deterministic PRNG (xorshift64*), so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The config the driver writes: core servers plus the extras present, each
/// with a generation (changing it replaces the process) and a request
/// timeout variant (changing it is applied in place).
#[derive(Clone, Debug)]
struct Layout {
    extras: BTreeMap<&'static str, u64>,
    timeout_variant: u64,
}

impl Layout {
    fn baseline() -> Self {
        Layout {
            extras: [("x0", 0)].into_iter().collect(),
            timeout_variant: 0,
        }
    }

    fn render(&self) -> String {
        let mut cfg = String::from(
            "[daemon]\nreload_debounce = \"50ms\"\n\n[defaults]\nrestart_backoff = \"50ms\"\nrestart_backoff_max = \"400ms\"\nrequest_timeout = \"15s\"\ndrain_timeout = \"3s\"\nstop_grace = \"500ms\"\n\n",
        );
        for s in CORE {
            cfg.push_str(&fixture_server(s, &[]));
            if *s == "s2" {
                cfg.push_str(&format!(
                    "request_timeout = \"{}s\"\n",
                    15 - self.timeout_variant % 2
                ));
            }
            cfg.push('\n');
        }
        for (x, generation) in &self.extras {
            cfg.push_str(&fixture_server(
                x,
                &[("FIXTURE_GEN", &generation.to_string())],
            ));
            cfg.push('\n');
        }
        cfg
    }
}

/// What happened, for the report.
#[derive(Default)]
struct Figures {
    requests: AtomicU64,
    results: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    kills: AtomicU64,
    added: AtomicU64,
    removed: AtomicU64,
    replaced: AtomicU64,
    updated_in_place: AtomicU64,
    sighups: AtomicU64,
    max_latency_ms: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Figures {
    fn fail(&self, what: String) {
        eprintln!("SOAK FAILURE: {what}");
        self.failures.lock().unwrap().push(what);
    }

    fn error(&self, kind: &str) {
        *self.errors.lock().unwrap().entry(kind.into()).or_default() += 1;
    }
}

/// Why an error answer is acceptable, or None when it says nothing useful.
fn error_kind(server: &str, err: &Value) -> Option<&'static str> {
    let code = err["code"].as_i64()?;
    let msg = err["message"].as_str()?;
    let names_server = msg.contains(&format!("'{server}'"));
    let extra = server.starts_with('x');
    match code {
        -32003 if names_server && msg.contains("restarted") => {
            Some("server crashed mid-call (-32003)")
        }
        -32003 if names_server && msg.contains("could not take the request") => {
            Some("server gone before the call was sent (-32003)")
        }
        -32001 if names_server && msg.contains("not ready") => Some("server not ready (-32001)"),
        // Removed by a reload between the catalog lookup and the call.
        -32001 if extra && names_server && msg.contains("removed from the config") => {
            Some("server removed mid-lookup (-32001)")
        }
        -32004 if names_server && msg.contains("timed out") => Some("timed out (-32004)"),
        // Only servers the driver removes may become unknown.
        -32602 if extra && msg.contains("Unknown tool") && msg.contains(server) => {
            Some("unknown tool after removal (-32602)")
        }
        _ => None,
    }
}

struct Pending {
    server: &'static str,
    expect: String,
    sent: Instant,
}

/// One client: keeps PIPELINE requests in flight until `stop`, then waits
/// for the rest. Every answer must be to one of its own pending ids and echo
/// its own tag.
fn client_loop(
    who: usize,
    socket: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    fig: Arc<Figures>,
    seed: u64,
) {
    let mut c = Client::initialized(&socket);
    let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(who as u64 + 1)));
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut n: u64 = 0;
    let servers: Vec<&'static str> = CORE.iter().chain(EXTRA).copied().collect();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        while !stopping && pending.len() < PIPELINE {
            n += 1;
            let server = servers[rng.below(servers.len() as u64) as usize];
            let tag = format!("c{who}-r{n}");
            let (tool, args, expect) = if rng.chance(70) {
                ("echo", json!({"text": tag}), tag.clone())
            } else {
                let ms = 10 + rng.below(290);
                (
                    "sleep",
                    json!({"ms": ms, "tag": tag}),
                    format!("slept {ms} {tag}"),
                )
            };
            c.send(&json!({"jsonrpc":"2.0","id":n,"method":"tools/call",
                "params":{"name":format!("{server}__{tool}"),"arguments":args}}));
            fig.requests.fetch_add(1, Ordering::Relaxed);
            pending.insert(
                n,
                Pending {
                    server,
                    expect,
                    sent: Instant::now(),
                },
            );
        }
        if pending.is_empty() {
            break;
        }
        // Bounded: the recv panics (failing the soak) after WAIT without any
        // answer, which request_timeout (15s) rules out for a live daemon.
        let r = c.next_response();
        let Some(id) = r["id"].as_u64() else {
            fig.fail(format!("client {who}: answer with a foreign id: {r}"));
            continue;
        };
        let Some(p) = pending.remove(&id) else {
            fig.fail(format!("client {who}: answer to id {id} it has no pending request for (duplicate or another session's): {r}"));
            continue;
        };
        let ms = p.sent.elapsed().as_millis() as u64;
        fig.max_latency_ms.fetch_max(ms, Ordering::Relaxed);
        if let Some(text) = r["result"]["content"][0]["text"].as_str() {
            if text == p.expect {
                fig.results.fetch_add(1, Ordering::Relaxed);
            } else {
                fig.fail(format!(
                    "client {who}: id {id} expected {:?}, got {text:?} (another session's answer?)",
                    p.expect
                ));
            }
        } else if let Some(kind) = error_kind(p.server, &r["error"]) {
            fig.error(kind);
        } else {
            fig.fail(format!(
                "client {who}: id {id} to {}: an answer that does not say why: {r}",
                p.server
            ));
        }
    }
    // Nothing else may arrive for this session but list_changed.
    let stray: Vec<Value> = c
        .received()
        .into_iter()
        .filter(|v| {
            !matches!(
                v["method"].as_str(),
                Some(
                    "notifications/tools/list_changed"
                        | "notifications/prompts/list_changed"
                        | "notifications/resources/list_changed"
                )
            )
        })
        .collect();
    if !stray.is_empty() {
        fig.fail(format!("client {who}: unexpected messages: {stray:?}"));
    }
}

fn pids(d: &Daemon) -> Vec<(String, u64)> {
    d.status()["servers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["pid"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn write_layout(d: &Daemon, layout: &Layout) {
    // write_private writes a temp file and renames it over the config.
    write_private(&d.config, &layout.render());
}

/// The driver: a fault every 150-600 ms until `stop`.
fn driver(d: &Daemon, stop: &AtomicBool, fig: &Figures, seed: u64) {
    let mut rng = Rng(seed);
    let mut layout = Layout::baseline();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        match rng.below(10) {
            0..=3 => {
                let running = pids(d);
                if running.is_empty() {
                    continue;
                }
                let (name, pid) = &running[rng.below(running.len() as u64) as usize];
                eprintln!("soak: kill -9 {name} (pid {pid})");
                signal(*pid as u32, Signal::SIGKILL);
                fig.kills.fetch_add(1, Ordering::Relaxed);
            }
            4..=8 => {
                let x = EXTRA[rng.below(EXTRA.len() as u64) as usize];
                let what = match (layout.extras.get(x).copied(), rng.below(3)) {
                    (None, _) => {
                        layout.extras.insert(x, 0);
                        fig.added.fetch_add(1, Ordering::Relaxed);
                        "add"
                    }
                    (Some(_), 0) => {
                        layout.extras.remove(x);
                        fig.removed.fetch_add(1, Ordering::Relaxed);
                        "remove"
                    }
                    (Some(g), 1) => {
                        layout.extras.insert(x, g + 1);
                        fig.replaced.fetch_add(1, Ordering::Relaxed);
                        "replace"
                    }
                    (Some(_), _) => {
                        layout.timeout_variant += 1;
                        fig.updated_in_place.fetch_add(1, Ordering::Relaxed);
                        "update s2 in place"
                    }
                };
                eprintln!("soak: config: {what} {x}");
                write_layout(d, &layout);
                signal(d.pid(), Signal::SIGHUP);
                fig.sighups.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                signal(d.pid(), Signal::SIGHUP);
                fig.sighups.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Resources {
    fds: u64,
    tasks: u64,
    rss: u64,
}

fn resources(st: &Value) -> Resources {
    let d = &st["daemon"];
    Resources {
        fds: d["fds"].as_u64().unwrap_or(0),
        tasks: d["tasks"].as_u64().unwrap_or(0),
        rss: d["rss_bytes"].as_u64().unwrap_or(0),
    }
}

/// Settled: the baseline servers, all ready, nothing in flight, no session.
fn settled(st: &Value, names: &BTreeSet<String>) -> bool {
    let Some(servers) = st["servers"].as_array() else {
        return false;
    };
    let got: BTreeSet<String> = servers
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    st["sessions"] == 0
        && got == *names
        && servers
            .iter()
            .all(|s| s["state"] == "ready" && s["in_flight"] == 0)
}

fn run_clients(d: &Daemon, secs: u64, seed: u64, fig: &Arc<Figures>, chaos: bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|who| {
            let (socket, stop, fig) = (d.socket.clone(), stop.clone(), fig.clone());
            std::thread::spawn(move || client_loop(who, socket, stop, fig, seed))
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(secs);
    if chaos {
        let driver_stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| driver(d, &driver_stop, fig, seed));
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            driver_stop.store(true, Ordering::SeqCst);
        });
    } else {
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for (who, t) in clients.into_iter().enumerate() {
        if t.join().is_err() {
            fig.fail(format!(
                "client {who} panicked (an answer never came within {WAIT:?})"
            ));
        }
    }
}

#[test]
fn chaos_soak() {
    let secs: u64 = std::env::var("STDIOPROXY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("STDIOPROXY_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x50a6_2026);
    let env = Env::new();
    env.write_config(&Layout::baseline().render());
    let d = Daemon::start(&env, &[("RUST_LOG", "info")]);
    let names: BTreeSet<String> = CORE
        .iter()
        .map(|s| s.to_string())
        .chain(Layout::baseline().extras.keys().map(|s| s.to_string()))
        .collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    d.wait_ready(&all);

    // Warm-up without faults, so allocator and runtime reach their working
    // size before the baseline is taken.
    let warm = Arc::new(Figures::default());
    run_clients(&d, 3, seed, &warm, false);
    let base_st = d.wait_status("settled before the soak", |st| settled(st, &names));
    let base = resources(&base_st);
    let base_children: BTreeSet<u32> = children_of(d.pid()).into_iter().map(|(p, _)| p).collect();
    eprintln!("soak: baseline {base:?}, {} children", base_children.len());

    let fig = Arc::new(Figures::default());
    let started = Instant::now();
    run_clients(&d, secs, seed, &fig, true);
    let ran = started.elapsed();

    // Back to the baseline config, then everything must settle back.
    write_private(&d.config, &Layout::baseline().render());
    signal(d.pid(), Signal::SIGHUP);
    d.wait_status("settled after the soak", |st| settled(st, &names));
    // Tasks and fds of ended sessions and stopped children go away a moment
    // after the state settles: poll (bounded) until they are back exactly;
    // the assertions below then allow a small tolerance.
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let r = resources(&d.status());
        if (r.fds <= base.fds && r.tasks <= base.tasks) || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let zombies: Vec<u32> = children_of(d.pid())
        .into_iter()
        .filter(|(_, state)| *state == 'Z')
        .map(|(p, _)| p)
        .collect();
    assert!(alive(d.pid()), "the daemon survived");

    let errors = fig.errors.lock().unwrap().clone();
    let answered = fig.results.load(Ordering::Relaxed) + errors.values().sum::<u64>();
    let report = json!({
        "seconds": ran.as_secs(),
        "seed": seed,
        "clients": CLIENTS,
        "requests": fig.requests.load(Ordering::Relaxed),
        "answered": answered,
        "results": fig.results.load(Ordering::Relaxed),
        "errors_by_kind": errors,
        "faults": {
            "children_killed": fig.kills.load(Ordering::Relaxed),
            "servers_added": fig.added.load(Ordering::Relaxed),
            "servers_removed": fig.removed.load(Ordering::Relaxed),
            "servers_replaced": fig.replaced.load(Ordering::Relaxed),
            "updated_in_place": fig.updated_in_place.load(Ordering::Relaxed),
            "sighups": fig.sighups.load(Ordering::Relaxed),
        },
        "max_latency_ms": fig.max_latency_ms.load(Ordering::Relaxed),
        "daemon_before": {"fds": base.fds, "tasks": base.tasks, "rss_bytes": base.rss},
        "daemon_after": {"fds": after.fds, "tasks": after.tasks, "rss_bytes": after.rss},
        "zombies": zombies,
        "failures": fig.failures.lock().unwrap().clone(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    eprintln!("soak report:\n{text}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::write(dir.join("soak-report.json"), &text);

    let failures = fig.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert_eq!(
        answered,
        fig.requests.load(Ordering::Relaxed),
        "every request got exactly one answer"
    );
    assert!(
        zombies.is_empty(),
        "zombies among the daemon's children: {zombies:?}"
    );
    assert!(
        after.fds <= base.fds + 2,
        "fds {} after, {} before",
        after.fds,
        base.fds
    );
    assert!(
        after.tasks <= base.tasks + 2,
        "tasks {} after, {} before",
        after.tasks,
        base.tasks
    );
    assert!(
        after.rss <= base.rss + 48 * 1024 * 1024,
        "RSS {} after, {} before",
        after.rss,
        base.rss
    );
    assert!(
        fig.kills.load(Ordering::Relaxed) > 0,
        "faults were injected"
    );
    assert!(fig.results.load(Ordering::Relaxed) > 0);
}
