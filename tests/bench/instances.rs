//! The `instances` scenario (issue 14, docs/INSTANCES.md): what lazy
//! servers save, and what their first call costs.
//!
//! - Memory: the RSS of the daemon and all its children (the reaper and the
//!   servers) with `scale_servers` (20) echo servers configured and two
//!   clients connected that listed the tools but called nothing, once with
//!   every server eager and once with every server lazy (their catalog from
//!   the cache the eager run left).
//! - First call: a tool call to a lazy server that is not running (through
//!   an open session: the daemon spawns it, runs the handshake, forwards the
//!   call), against a direct cold start of the same server (spawn,
//!   initialize, tools/list, the call). Each repetition calls a server that
//!   never ran, so every sample is a cold start.

use std::time::{Duration, Instant};

use super::client::{call_checked, echo_tool, Call, Conn};
use super::procs::{status_kb, tree, Res};
use super::report::{num, Results, Table};
use super::{
    close_all, log, python, server_toml, shim_bin, start_daemon, start_daemon_with, Ctx, Target,
    DEFAULTS, REPO, T,
};

const G: &str = "instances";

/// Two clients connected that listed every tool.
fn two_listing_clients(ctx: &Ctx, socket: &str, servers: usize) -> Res<Vec<Conn>> {
    let argv = vec![shim_bin(), "--socket".into(), socket.into()];
    let mut conns = Vec::new();
    for i in 0..2 {
        let mut c = Conn::spawn(&argv, &[], &ctx.errlog, &format!("instances{i}"))?;
        let hs = c.handshake(T)?;
        if hs.tools.len() < servers {
            return Err(format!(
                "instances{i}: {} tools listed, expected {servers}",
                hs.tools.len()
            ));
        }
        conns.push(c);
    }
    Ok(conns)
}

/// RSS of the process tree under `root`, in MiB, and its process count.
fn tree_rss_mib(root: u32) -> (f64, usize) {
    let pids = tree(&[root]);
    let kib: u64 = pids.iter().filter_map(|&p| status_kb(p, "VmRSS")).sum();
    (kib as f64 / 1024.0, pids.len())
}

pub fn instances(ctx: &mut Ctx) -> Res<()> {
    let n = ctx.p.scale_servers;
    let reps = ctx.p.cold.min(n);
    let echo = vec![python(), format!("{REPO}/tests/bench/echo_server.py")];
    let servers = |extra: &str| {
        let mut cfg = String::from(DEFAULTS);
        for i in 0..n {
            cfg.push_str(&server_toml(&format!("s{i:02}"), &echo, &[]));
            cfg.push_str(extra);
        }
        cfg
    };

    log(&format!("instances: {n} eager servers, 2 clients"));
    {
        let d = start_daemon(ctx, "daemon-instances", &servers(""), n)?;
        let conns = two_listing_clients(ctx, &d.socket.display().to_string(), n)?;
        std::thread::sleep(Duration::from_millis(500));
        let (mib, procs) = tree_rss_mib(d.pid());
        ctx.res.add(G, "eager", "rss_total_mib", mib);
        ctx.res.add(G, "eager", "processes", procs as f64);
        if let Some(kb) = status_kb(d.pid(), "VmRSS") {
            ctx.res
                .add(G, "eager", "daemon_rss_mib", kb as f64 / 1024.0);
        }
        close_all(conns, Duration::from_millis(300));
        // Dropping the daemon stops it, which writes the catalog cache
        // that the lazy run below starts from.
    }

    log(&format!(
        "instances: {n} lazy servers (cache warm), 2 clients"
    ));
    let lazy = servers("start = \"lazy\"\n");
    let d = start_daemon_with(ctx, "daemon-instances", &lazy, "ready status=")?;
    let socket = d.socket.display().to_string();
    let mut conns = two_listing_clients(ctx, &socket, n)?;
    std::thread::sleep(Duration::from_millis(500));
    let (mib, procs) = tree_rss_mib(d.pid());
    ctx.res.add(G, "lazy", "rss_total_mib", mib);
    ctx.res.add(G, "lazy", "processes", procs as f64);
    if let Some(kb) = status_kb(d.pid(), "VmRSS") {
        ctx.res.add(G, "lazy", "daemon_rss_mib", kb as f64 / 1024.0);
    }

    log(&format!(
        "instances: first calls, {reps} lazy and {reps} direct"
    ));
    for i in 0..reps {
        let tool = format!("s{i:02}__echo");
        let call = Call::new(&tool, "first");
        let t0 = Instant::now();
        call_checked(&mut conns[0], &call, "first", T)?;
        ctx.res
            .add(G, "lazy", "first_call_ms", t0.elapsed().as_secs_f64() * 1e3);

        let t0 = Instant::now();
        let mut c = Conn::spawn(&echo, &[], &ctx.errlog, &format!("direct-first{i}"))?;
        let hs = c.handshake(T)?;
        let name = echo_tool(&hs.tools).ok_or("direct: no echo tool")?;
        call_checked(&mut c, &Call::new(&name, "first"), "first", T)?;
        ctx.res.add(
            G,
            "direct",
            "first_call_ms",
            t0.elapsed().as_secs_f64() * 1e3,
        );
        c.close(Duration::from_millis(300));
    }
    close_all(conns, Duration::from_millis(300));
    Ok(())
}

/// The section of the report.
pub fn render(r: &Results, servers: usize) -> String {
    if !r.values.keys().any(|(g, _, _)| g == G) {
        return String::new();
    }
    let mut s = format!(
        "## Instances: {servers} configured echo servers, 2 clients that listed but called nothing\n\n"
    );
    let mut t = Table::new(&[
        "servers",
        "RSS daemon + children (MiB)",
        "daemon alone (MiB)",
        "processes",
        "first call (ms)",
    ]);
    for (sys, label) in [
        ("eager", "eager"),
        ("lazy", "lazy (cache warm)"),
        ("direct", "direct cold start"),
    ] {
        if !r.values.keys().any(|(g, s, _)| g == G && s == sys) {
            continue;
        }
        t.row(vec![
            label.into(),
            num(r.get(G, sys, "rss_total_mib")),
            num(r.get(G, sys, "daemon_rss_mib")),
            num(r.get(G, sys, "processes")),
            num(r.get(G, sys, "first_call_ms")),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    s
}

/// This scenario's targets.
pub fn targets(r: &Results) -> Vec<Target> {
    let daemon = r.get(G, "lazy", "daemon_rss_mib");
    let (lazy, direct) = (
        r.get(G, "lazy", "first_call_ms"),
        r.get(G, "direct", "first_call_ms"),
    );
    vec![
        Target {
            what: "20 lazy servers, 2 clients, no call: the daemon alone <= 15 MiB",
            figure: daemon.map_or("-".into(), |v| format!("{v:.1} MiB")),
            met: daemon.map(|v| v <= 15.0),
        },
        Target {
            what: "first call of a lazy server <= its direct cold start + 5 ms",
            figure: lazy
                .zip(direct)
                .map_or("-".into(), |(l, d)| format!("{l:.1} ms vs {d:.1} ms")),
            met: lazy.zip(direct).map(|(l, d)| l <= d + 5.0),
        },
    ]
}
