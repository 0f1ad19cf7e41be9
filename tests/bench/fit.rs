//! Scenario `fit` (issue 16): what a client pays for the tool list, and how
//! fast search mode answers.
//!
//! - Bytes of `tools/list` (every page) a client receives for npm
//!   server-everything + server-memory + server-filesystem: each server
//!   spawned directly (the sum of the three), aggregated through the
//!   daemon, and in search mode (`--tools search`).
//! - `search_tools` round trips through the shim over a 1,000-tool catalog
//!   (4 fixture servers with generated verb_noun names), next to `ping`
//!   round trips on the same connection: the difference is the daemon's own
//!   search time (the shim and socket hops cost the same for both).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{
    everything_entry, log, server_toml, shim_bin, start_daemon, Conn, Ctx, Res, DEFAULTS, FIXTURE,
    REPO, T,
};
use crate::report::lat_us;

const VERBS: [&str; 20] = [
    "get", "list", "create", "update", "delete", "search", "read", "write", "move", "copy", "send",
    "fetch", "open", "close", "sync", "watch", "run", "start", "stop", "check",
];
const NOUNS: [&str; 20] = [
    "issue",
    "comment",
    "file",
    "directory",
    "branch",
    "commit",
    "pullRequest",
    "user",
    "repo",
    "message",
    "channel",
    "page",
    "record",
    "event",
    "task",
    "note",
    "image",
    "table",
    "query",
    "label",
];
const QUERIES: [&str; 8] = [
    "create issue",
    "read file contents",
    "send a message to a channel",
    "list branches",
    "delete record",
    "search pull requests",
    "watch events",
    "update table row",
];

/// A server of the bytes comparison: name, argv, env.
type ServerSpec = (&'static str, Vec<String>, Vec<(&'static str, String)>);

/// Total tools of the search catalog.
const SEARCH_TOOLS: usize = 1000;
const SEARCH_SERVERS: usize = 4;

pub fn fit(ctx: &mut Ctx) -> Res<()> {
    list_bytes(ctx)?;
    search_latency(ctx)
}

fn node_server(pkg: &str) -> String {
    format!("{REPO}/tests/interop/node_modules/@modelcontextprotocol/{pkg}/dist/index.js")
}

/// tools/list bytes: direct, aggregated, search mode.
fn list_bytes(ctx: &mut Ctx) -> Res<()> {
    let g = "fit";
    let Some(everything) = everything_entry(ctx) else {
        return Ok(());
    };
    let (memory, filesystem) = (
        node_server("server-memory"),
        node_server("server-filesystem"),
    );
    if !Path::new(&memory).exists() || !Path::new(&filesystem).exists() {
        ctx.note("fit: server-memory or server-filesystem is not installed; bytes skipped".into());
        return Ok(());
    }
    let root = ctx.tmp.join("fit-files");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let memory_file = ctx.tmp.join("fit-memory.jsonl").display().to_string();
    let servers: [ServerSpec; 3] = [
        ("everything", vec!["node".into(), everything], vec![]),
        (
            "memory",
            vec!["node".into(), memory],
            vec![("MEMORY_FILE_PATH", memory_file)],
        ),
        (
            "filesystem",
            vec!["node".into(), filesystem, root.display().to_string()],
            vec![],
        ),
    ];
    let mut direct = 0usize;
    let mut config = DEFAULTS.to_string();
    for (name, argv, env) in &servers {
        let envs: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut c = Conn::spawn(argv, &envs, &ctx.errlog, &format!("fit-direct-{name}"))?;
        let hs = c.handshake(T)?;
        log(&format!(
            "fit: {name} lists {} tools, {} bytes",
            hs.tools.len(),
            hs.list_bytes
        ));
        ctx.res
            .add(g, "direct", &format!("{name}_bytes"), hs.list_bytes as f64);
        direct += hs.list_bytes;
        c.close(Duration::from_millis(300));
        config.push_str(&server_toml(name, argv, env));
    }
    ctx.res.add(g, "direct", "bytes", direct as f64);
    let d = start_daemon(ctx, "daemon-fit", &config, servers.len())?;
    let sock = d.socket.display().to_string();
    for (system, extra) in [
        ("stdioproxy", vec![]),
        ("search", vec!["--tools".to_string(), "search".into()]),
    ] {
        let mut argv = vec![shim_bin(), "--socket".into(), sock.clone()];
        argv.extend(extra);
        let mut c = Conn::spawn(&argv, &[], &ctx.errlog, &format!("fit-{system}"))?;
        let hs = c.handshake(T)?;
        ctx.res.add(g, system, "bytes", hs.list_bytes as f64);
        ctx.res.add(g, system, "tools", hs.tools.len() as f64);
        c.close(Duration::from_millis(300));
    }
    drop(d);
    Ok(())
}

/// search_tools and ping round trips on one search-mode connection.
fn search_latency(ctx: &mut Ctx) -> Res<()> {
    let g = "fit";
    let mut probe = Conn::spawn(&[FIXTURE.to_string()], &[], &ctx.errlog, "fit-probe")?;
    let base = probe.handshake(T)?.tools.len();
    probe.close(Duration::from_millis(300));
    let per_server = SEARCH_TOOLS / SEARCH_SERVERS - base;
    let mut config = DEFAULTS.to_string();
    for s in 0..SEARCH_SERVERS {
        let names: Vec<String> = (0..per_server)
            .map(|j| {
                let k = s * per_server + j;
                let (v, n) = (
                    VERBS[k % VERBS.len()],
                    NOUNS[(k / VERBS.len()) % NOUNS.len()],
                );
                format!("{v}_{n}_{}", k / (VERBS.len() * NOUNS.len()))
            })
            .collect();
        config.push_str(&server_toml(
            &format!("s{s}"),
            &[FIXTURE.to_string()],
            &[
                ("FIXTURE_NAME", format!("s{s}")),
                ("FIXTURE_TOOL_NAMES", names.join(",")),
            ],
        ));
    }
    log(&format!(
        "fit: search over {SEARCH_SERVERS} servers x {} tools",
        base + per_server
    ));
    let d = start_daemon(ctx, "daemon-fit-search", &config, SEARCH_SERVERS)?;
    let argv = vec![
        shim_bin(),
        "--socket".into(),
        d.socket.display().to_string(),
        "--tools".into(),
        "search".into(),
    ];
    let mut c = Conn::spawn(&argv, &[], &ctx.errlog, "fit-search")?;
    c.handshake(T)?;
    let (mut search, mut ping) = (Vec::new(), Vec::new());
    let rounds = if ctx.p.reps > 1 { 2000 } else { 300 };
    for i in 0..rounds + 50 {
        let args = json!({"name": "search_tools",
            "arguments": {"query": QUERIES[i % QUERIES.len()], "limit": 10}});
        let (t0, t, v) = c.request("tools/call", args, T)?;
        if v["result"]["structuredContent"]["tools"]
            .as_array()
            .is_none_or(|a| a.is_empty())
        {
            return Err(format!("fit: search_tools found nothing: {v}"));
        }
        let (p0, p1, _) = c.request("ping", json!({}), T)?;
        if i >= 50 {
            search.push((t - t0).as_nanos() as u64);
            ping.push((p1 - p0).as_nanos() as u64);
        }
    }
    search.sort_unstable();
    ping.sort_unstable();
    let (s50, p50) = (lat_us(&search, 50.0), lat_us(&ping, 50.0));
    ctx.res
        .add(g, "search", "catalog_tools", SEARCH_TOOLS as f64);
    ctx.res.add(g, "search", "search_p50_us", s50);
    ctx.res
        .add(g, "search", "search_p99_us", lat_us(&search, 99.0));
    ctx.res.add(g, "search", "ping_p50_us", p50);
    ctx.res
        .add(g, "search", "daemon_search_p50_us", (s50 - p50).max(0.0));
    c.close(Duration::from_millis(300));
    drop(d);
    Ok(())
}

/// The Markdown section.
pub fn render(ctx: &Ctx) -> String {
    let r = &ctx.res;
    if !r.values.keys().any(|(g, _, _)| g == "fit") {
        return String::new();
    }
    let get = |s: &str, m: &str| r.get("fit", s, m);
    let kib = |v: Option<f64>| v.map_or("-".into(), |b| format!("{:.1}", b / 1024.0));
    let mut s = String::from(
        "## Fitting clients: tools/list bytes (everything + memory + filesystem) and search\n\n",
    );
    s.push_str("| what | tools/list KiB | tools listed |\n|---|---|---|\n");
    s.push_str(&format!(
        "| direct (three servers, summed) | {} | - |\n| aggregated (`stdioproxy-shim`) | {} | {} |\n| search mode (`--tools search`) | {} | {} |\n\n",
        kib(get("direct", "bytes")),
        kib(get("stdioproxy", "bytes")),
        super::report::num(get("stdioproxy", "tools")),
        kib(get("search", "bytes")),
        super::report::num(get("search", "tools")),
    ));
    s.push_str(&format!(
        "search_tools over {} tools: p50 {} us, p99 {} us round trip through the shim; ping p50 {} us on the same connection; the daemon's own search p50 ~ {} us (target <= 2000 us).\n\n",
        super::report::num(get("search", "catalog_tools")),
        super::report::num(get("search", "search_p50_us")),
        super::report::num(get("search", "search_p99_us")),
        super::report::num(get("search", "ping_p50_us")),
        super::report::num(get("search", "daemon_search_p50_us")),
    ));
    s
}
