//! stdioproxy's own benchmark: `cargo bench --bench mcp` (see docs/BENCHMARKS.md).
//!
//! It builds nothing itself: cargo builds the release binaries and passes
//! their paths (`CARGO_BIN_EXE_*`). Everything runs in a fresh temp dir: each
//! daemon gets its own `--config`, `--socket` and `XDG_CACHE_HOME` there.
//! Every process it starts is in its own process group, dies with the
//! benchmark (PDEATHSIG), and is stopped by the benchmark when done; it never
//! touches a process it did not start.
//!
//! Systems, side by side in one run, interleaved (the order rotates with each
//! repetition): `direct` (the client spawns the server itself), `stdioproxy`
//! (`stdioproxy-shim` -> warm daemon -> the same server) and `socat` (the raw
//! two-hop relay: `socat STDIO UNIX-CONNECT:sock` on the client side,
//! `socat UNIX-LISTEN:sock,fork EXEC:server` on the other), when socat is
//! installed. Upstreams: `echo` (tests/bench/echo_server.py) and
//! `everything` (npm @modelcontextprotocol/server-everything).
//!
//! Usage: cargo bench --bench mcp -- [--quick] [--only a,b] [--json F] [--markdown F]

mod client;
mod fit;
mod instances;
mod outage;
mod procs;
mod report;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use client::{call_checked, echo_tool, pipelined, sequential, Call, Conn};
use procs::{cpu_sum, pss_kb, status_kb, tree, Proc, Res};
use report::{lat_us, median, num, ratio, Results, Table};

const DAEMON: &str = env!("CARGO_BIN_EXE_stdioproxy");
const SHIM: &str = env!("CARGO_BIN_EXE_stdioproxy-shim");
const FIXTURE: &str = env!("CARGO_BIN_EXE_stdioproxy-fixture-server");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The daemon under test: the one cargo built, unless
/// `STDIOPROXY_BENCH_DAEMON` names another build (to compare two builds).
fn daemon_bin() -> String {
    std::env::var("STDIOPROXY_BENCH_DAEMON").unwrap_or_else(|_| DAEMON.into())
}

/// The real python3 interpreter. `python3` on PATH may be a wrapper script
/// (pyenv's shim costs ~100 ms per start), which would be charged to the
/// direct and socat cold starts but not to the warm daemon.
fn python() -> String {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".into())
    })
    .clone()
}

/// The shim under test (`STDIOPROXY_BENCH_SHIM` overrides it).
fn shim_bin() -> String {
    std::env::var("STDIOPROXY_BENCH_SHIM").unwrap_or_else(|_| SHIM.into())
}

const SYSTEMS: [&str; 3] = ["direct", "stdioproxy", "socat"];
const SCENARIOS: [&str; 12] = [
    "cold",
    "seq",
    "pipe",
    "multi",
    "scale",
    "list",
    "reload",
    "outage",
    "memory",
    "era",
    "instances",
    "fit",
];
const UPSTREAMS: [&str; 2] = ["echo", "everything"];

/// Generous bound for one request on a loaded 2-core machine (or under
/// valgrind).
const T: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: cargo bench --bench mcp -- [options]

  --quick            small counts, one repetition (about a minute)
  --full             the default: every figure, several repetitions
  --only a,b,...     run only these scenarios, systems and/or upstreams:
                       scenarios: cold seq pipe multi scale list reload outage memory era
                                  instances fit
                       systems:   direct stdioproxy socat
                       upstreams: echo everything
  --reps N           repetitions (medians are reported)
  --k N              sequential calls per repetition
  --pipe-calls N     calls in the one-session pipelined phase
  --json FILE        also write every sample as JSON
  --markdown FILE    also write the Markdown report to FILE
  --daemon-wrapper CMD  run each daemon under CMD (e.g. \"valgrind --tool=callgrind\")
  --keep-tmp         keep the temp dir (logs, configs)";

struct Params {
    reps: usize,
    cold: usize,
    warmup: usize,
    k: usize,
    pipe_calls: usize,
    pipe_depth: usize,
    multi_sessions: usize,
    multi_calls: usize,
    multi_depth: usize,
    scale_servers: usize,
    idle_sessions: usize,
    scale_sessions: usize,
    scale_rounds: usize,
    list_servers: usize,
    list_tools: usize,
    list_reps: usize,
    reload_reps: usize,
    outage_reps: usize,
    mem_clients: usize,
    mem_reps: usize,
    mem_calls: usize,
}

impl Params {
    fn new(quick: bool) -> Params {
        Params {
            reps: if quick { 1 } else { 3 },
            cold: if quick { 3 } else { 7 },
            warmup: if quick { 50 } else { 200 },
            k: if quick { 300 } else { 3000 },
            pipe_calls: if quick { 1000 } else { 10_000 },
            pipe_depth: 32,
            multi_sessions: 16,
            multi_calls: if quick { 100 } else { 1000 },
            multi_depth: 8,
            scale_servers: 20,
            idle_sessions: 100,
            scale_sessions: 500,
            scale_rounds: if quick { 1 } else { 5 },
            list_servers: 50,
            list_tools: 100,
            list_reps: if quick { 5 } else { 30 },
            reload_reps: if quick { 3 } else { 10 },
            outage_reps: if quick { 3 } else { 10 },
            mem_clients: 4,
            mem_reps: if quick { 1 } else { 3 },
            mem_calls: 20,
        }
    }
}

#[derive(Default)]
struct Filter {
    scenarios: Vec<String>,
    systems: Vec<String>,
    upstreams: Vec<String>,
}

impl Filter {
    fn scenario(&self, s: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|x| x == s)
    }
    fn system(&self, s: &str) -> bool {
        self.systems.is_empty() || self.systems.iter().any(|x| x == s)
    }
    fn upstream(&self, s: &str) -> bool {
        self.upstreams.is_empty() || self.upstreams.iter().any(|x| x == s)
    }
}

struct Opts {
    quick: bool,
    filter: Filter,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    reps: Option<usize>,
    k: Option<usize>,
    pipe_calls: Option<usize>,
    wrapper: Vec<String>,
    keep_tmp: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        filter: Filter::default(),
        json: None,
        markdown: None,
        reps: None,
        k: None,
        pipe_calls: None,
        wrapper: Vec::new(),
        keep_tmp: false,
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--quick" => o.quick = true,
            "--full" => o.quick = false,
            "--only" => {
                let v = args.next().ok_or("--only needs a list")?;
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if SCENARIOS.contains(&t) {
                        o.filter.scenarios.push(t.into());
                    } else if SYSTEMS.contains(&t) {
                        o.filter.systems.push(t.into());
                    } else if UPSTREAMS.contains(&t) {
                        o.filter.upstreams.push(t.into());
                    } else {
                        return Err(format!("--only: unknown name {t:?}"));
                    }
                }
            }
            "--json" => o.json = Some(args.next().ok_or("--json needs a file")?.into()),
            "--markdown" => o.markdown = Some(args.next().ok_or("--markdown needs a file")?.into()),
            "--reps" => o.reps = Some(num(args.next(), "--reps")?.max(1)),
            "--k" => o.k = Some(num(args.next(), "--k")?),
            "--pipe-calls" => o.pipe_calls = Some(num(args.next(), "--pipe-calls")?),
            "--daemon-wrapper" => {
                let v = args.next().ok_or("--daemon-wrapper needs a command")?;
                o.wrapper = v.split_whitespace().map(String::from).collect();
            }
            "--keep-tmp" => o.keep_tmp = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// What the run has: parameters, filters, the temp dir, the figures.
struct Ctx {
    p: Params,
    f: Filter,
    tmp: PathBuf,
    wrapper: Vec<String>,
    res: Results,
    errlog: File,
    notes: Vec<String>,
    socat: Option<String>,
}

impl Ctx {
    fn note(&mut self, s: String) {
        eprintln!("bench: note: {s}");
        self.notes.push(s);
    }
}

fn log(s: &str) {
    eprintln!("bench: {s}");
}

fn find_in_path(prog: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn server_toml(name: &str, argv: &[String], env: &[(&str, String)]) -> String {
    let args: Vec<String> = argv[1..].iter().map(|a| toml_str(a)).collect();
    let mut s = format!(
        "[servers.{name}]\ncommand = {}\nargs = [{}]\n",
        toml_str(&argv[0]),
        args.join(", ")
    );
    if !env.is_empty() {
        let e: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k} = {}", toml_str(v)))
            .collect();
        s.push_str(&format!("env = {{ {} }}\n", e.join(", ")));
    }
    s
}

/// Writes a file 0600 through a temp file and a rename (what editors do).
fn write_private(path: &Path, text: &str) -> Res<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

const DEFAULTS: &str = "[defaults]\nstop_grace = \"1s\"\n\n";

/// A `stdioproxy serve` of our own.
struct Daemon {
    proc: Proc,
    socket: PathBuf,
    config: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

fn start_daemon(ctx: &Ctx, name: &str, config: &str, servers: usize) -> Res<Daemon> {
    let d = spawn_daemon(ctx, name, config)?;
    let line = d
        .proc
        .log
        .wait_for(0, "ready status=", Duration::from_secs(180))
        .map_err(|e| format!("{name}: {e}"))?;
    let want = format!("{servers}/{servers} servers ready");
    if !line.contains(&want) {
        return Err(format!("{name}: not every server started: {line}"));
    }
    Ok(d)
}

/// Starts a daemon and waits for its log line containing `ready`.
fn start_daemon_with(ctx: &Ctx, name: &str, config: &str, ready: &str) -> Res<Daemon> {
    let d = spawn_daemon(ctx, name, config)?;
    d.proc
        .log
        .wait_for(0, ready, Duration::from_secs(180))
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(d)
}

/// Starts a daemon in `ctx.tmp/<name>` (the same dir, socket and cache when
/// the name is used again) without waiting for it.
fn spawn_daemon(ctx: &Ctx, name: &str, config: &str) -> Res<Daemon> {
    let dir = ctx.tmp.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg = dir.join("config.toml");
    write_private(&cfg, config)?;
    let socket = dir.join("run").join("stdioproxy.sock");
    let mut argv = ctx.wrapper.clone();
    argv.extend([
        daemon_bin(),
        "serve".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
    ]);
    let env = vec![
        // STDIOPROXY_BENCH_RUST_LOG=debug shows e.g. catalog rebuilds.
        (
            "RUST_LOG".to_string(),
            std::env::var("STDIOPROXY_BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
        (
            "XDG_CACHE_HOME".into(),
            dir.join("cache").display().to_string(),
        ),
        ("STDIOPROXY_CONFIG".into(), cfg.display().to_string()),
        ("STDIOPROXY_SOCKET".into(), socket.display().to_string()),
    ];
    let proc = Proc::start(name, &argv, &env, &dir.join("daemon.log"))?;
    Ok(Daemon {
        proc,
        socket,
        config: cfg,
    })
}

fn start_socat(ctx: &Ctx, name: &str, server: &[String]) -> Res<(Proc, PathBuf)> {
    let socat = ctx.socat.clone().ok_or("socat is not installed")?;
    let dir = ctx.tmp.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let sock = dir.join("socat.sock");
    let argv = vec![
        socat,
        format!("UNIX-LISTEN:{},fork", sock.display()),
        format!("EXEC:{}", server.join(" ")),
    ];
    let proc = Proc::start(name, &argv, &[], &dir.join("socat.log"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if Instant::now() > deadline {
            return Err(format!("{name}: socat did not create {}", sock.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    Ok((proc, sock))
}

struct Upstream {
    name: &'static str,
    argv: Vec<String>,
    /// Substring of the server's command line (to tell it from the relay).
    marker: &'static str,
    /// Arguments `{message, text}` are echoed by both upstreams.
    describe: &'static str,
}

fn upstreams(ctx: &mut Ctx) -> Vec<Upstream> {
    let mut ups = Vec::new();
    if ctx.f.upstream("echo") {
        ups.push(Upstream {
            name: "echo",
            argv: vec![python(), format!("{REPO}/tests/bench/echo_server.py")],
            marker: "echo_server.py",
            describe: "tests/bench/echo_server.py (python3, stdlib)",
        });
    }
    if ctx.f.upstream("everything") {
        if let Some(entry) = everything_entry(ctx) {
            ups.push(Upstream {
                name: "everything",
                argv: vec!["node".into(), entry],
                marker: "server-everything",
                describe: "npm @modelcontextprotocol/server-everything (node)",
            });
        }
    }
    ups
}

fn everything_entry(ctx: &mut Ctx) -> Option<String> {
    let dir = format!("{REPO}/tests/interop");
    let entry = format!("{dir}/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !Path::new(&entry).exists() {
        log("node_modules missing: running npm ci --prefix tests/interop --no-audit --no-fund");
        let ok = Command::new("npm")
            .args(["ci", "--prefix", &dir, "--no-audit", "--no-fund"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !Path::new(&entry).exists() {
            ctx.note(
                "server-everything is not installed (npm ci failed); its figures are skipped"
                    .into(),
            );
            return None;
        }
    }
    if find_in_path("node").is_none() {
        ctx.note("node is not installed; server-everything figures are skipped".into());
        return None;
    }
    Some(entry)
}

/// The systems of one upstream group, with what each needs running.
struct Stack<'a> {
    up: &'a Upstream,
    daemon: Option<Daemon>,
    socat: Option<(Proc, PathBuf)>,
    systems: Vec<&'static str>,
}

impl Stack<'_> {
    fn argv(&self, sys: &str) -> Vec<String> {
        match sys {
            "stdioproxy" => {
                let sock = self.daemon.as_ref().map(|d| d.socket.display().to_string());
                vec![shim_bin(), "--socket".into(), sock.unwrap_or_default()]
            }
            "socat" => {
                let sock = self.socat.as_ref().map(|s| s.1.display().to_string());
                vec![
                    "socat".into(),
                    "STDIO".into(),
                    format!("UNIX-CONNECT:{}", sock.unwrap_or_default()),
                ]
            }
            _ => self.up.argv.clone(),
        }
    }

    /// Processes of this system besides the clients' own.
    fn roots(&self, sys: &str) -> Vec<u32> {
        match sys {
            "stdioproxy" => self.daemon.iter().map(Daemon::pid).collect(),
            "socat" => self.socat.iter().map(|s| s.0.pid()).collect(),
            _ => vec![],
        }
    }
}

/// Splits the process tree of `roots` into relay processes and the upstream
/// server's processes.
fn split_tree(roots: &[u32], marker: &str) -> (Vec<u32>, Vec<u32>) {
    let mut relay = Vec::new();
    let mut server = Vec::new();
    for pid in tree(roots) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if procs::cmdline(pid).contains(marker) && comm.trim() != "socat" {
            server.push(pid);
        } else {
            relay.push(pid);
        }
    }
    (relay, server)
}

fn ms_per_1k(cpu_ns: u64, calls: usize) -> f64 {
    cpu_ns as f64 / 1e6 / calls.max(1) as f64 * 1000.0
}

/// Stops clients together: stdin closed on all, a moment to exit, then
/// their process groups are ended.
fn close_all(conns: Vec<Conn>, grace: Duration) {
    let mut conns = conns;
    for c in &mut conns {
        c.close_stdin();
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && conns
            .iter_mut()
            .any(|c| matches!(c.child.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(conns);
}

fn open(ctx: &Ctx, argv: &[String], label: &str) -> Res<(Conn, Call)> {
    let mut conn = Conn::spawn(argv, &[], &ctx.errlog, label)?;
    let hs = conn.handshake(T)?;
    let tool =
        echo_tool(&hs.tools).ok_or_else(|| format!("{label}: no echo tool in {:?}", hs.tools))?;
    let call = Call::new(&tool, "hello");
    call_checked(&mut conn, &call, "hello", T)?;
    Ok((conn, call))
}

// ---------------------------------------------------------------- scenarios

fn cold(ctx: &mut Ctx, st: &Stack<'_>, sys: &str) -> Res<()> {
    let g = st.up.name;
    for i in 0..ctx.p.cold {
        let label = format!("{g}/{sys}/cold{i}");
        let mut conn = Conn::spawn(&st.argv(sys), &[], &ctx.errlog, &label)?;
        let hs = conn.handshake(T)?;
        if echo_tool(&hs.tools).is_none() {
            return Err(format!("{label}: no echo tool"));
        }
        ctx.res
            .add(g, sys, "cold_init_ms", hs.init.as_secs_f64() * 1e3);
        ctx.res
            .add(g, sys, "cold_list_ms", hs.list.as_secs_f64() * 1e3);
        conn.close(Duration::from_millis(300));
        // Let the previous server (and socat's forked relay) go away.
        std::thread::sleep(Duration::from_millis(30));
        if sys == "stdioproxy" {
            // The floor under the shim's figure: the same spawn of the same
            // binary until it prints its version (exec, dynamic loading,
            // std start-up; no socket, no daemon).
            let mut cmd = Command::new(shim_bin());
            cmd.arg("--version")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            procs::own_group(&mut cmd);
            let t0 = Instant::now();
            let mut child = cmd.spawn().map_err(|e| e.to_string())?;
            let mut first = [0u8; 1];
            let printed = child
                .stdout
                .take()
                .is_some_and(|mut o| std::io::Read::read(&mut o, &mut first).is_ok_and(|n| n == 1));
            let t = t0.elapsed();
            let _ = child.wait();
            if printed {
                ctx.res
                    .add(g, sys, "shim_exec_floor_ms", t.as_secs_f64() * 1e3);
            }
        }
    }
    Ok(())
}

fn seq_pipe(ctx: &mut Ctx, st: &Stack<'_>, sys: &str) -> Res<()> {
    let g = st.up.name;
    let label = format!("{g}/{sys}/seq");
    let (mut conn, call) = open(ctx, &st.argv(sys), &label)?;
    sequential(&mut conn, &call, ctx.p.warmup, T)?;
    let mut roots = st.roots(sys);
    roots.push(conn.pid());
    let (relay, server) = split_tree(&roots, st.up.marker);
    let daemon: Vec<u32> = if sys == "stdioproxy" {
        st.roots(sys)
    } else {
        vec![]
    };
    let shim: Vec<u32> = if sys == "stdioproxy" {
        vec![conn.pid()]
    } else {
        vec![]
    };
    let snap = || {
        (
            cpu_sum(&relay),
            cpu_sum(&server),
            cpu_sum(&daemon),
            cpu_sum(&shim),
        )
    };
    // CPU of each part per 1,000 calls of a phase ("seq" or "pipe").
    let record_cpu = |ctx: &mut Ctx, phase: &str, before: (u64, u64, u64, u64), calls: usize| {
        let (r0, s0, d0, h0) = before;
        let (r1, s1, d1, h1) = snap();
        let mut parts = vec![("relay", r1 - r0), ("server", s1 - s0)];
        if sys == "stdioproxy" {
            parts.extend([("daemon", d1 - d0), ("shim", h1 - h0)]);
        }
        for (part, ns) in parts {
            let name = format!("{part}_cpu_{phase}_ms_per_1k");
            ctx.res.add(g, sys, &name, ms_per_1k(ns, calls));
        }
    };
    if ctx.f.scenario("seq") {
        let k = ctx.p.k;
        let before = snap();
        let (lats, errors) = sequential(&mut conn, &call, k, T)?;
        record_cpu(ctx, "seq", before, k);
        if errors > 0 {
            ctx.note(format!("{label}: {errors} of {k} sequential calls failed"));
        }
        ctx.res.add(g, sys, "seq_p50_us", lat_us(&lats, 50.0));
        ctx.res.add(g, sys, "seq_p99_us", lat_us(&lats, 99.0));
        ctx.res.add(
            g,
            sys,
            "seq_mean_us",
            lats.iter().sum::<u64>() as f64 / lats.len().max(1) as f64 / 1e3,
        );
    }
    if ctx.f.scenario("pipe") {
        let (n, depth) = (ctx.p.pipe_calls, ctx.p.pipe_depth);
        let before = snap();
        let p = pipelined(&mut conn, &call, n, depth, T)?;
        record_cpu(ctx, "pipe", before, n);
        if p.errors > 0 {
            ctx.note(format!(
                "{label}: {} of {n} pipelined calls failed",
                p.errors
            ));
        }
        let span = (p.last_recv - p.first_send).as_secs_f64();
        ctx.res
            .add(g, sys, "pipe_calls_s", p.done as f64 / span.max(1e-9));
        ctx.res.add(g, sys, "pipe_p50_us", lat_us(&p.lats, 50.0));
    }
    if sys == "stdioproxy" {
        if let Some(kb) = status_kb(conn.pid(), "VmHWM") {
            ctx.res.add(g, sys, "shim_hwm_kib", kb as f64);
        }
    }
    conn.close(Duration::from_millis(300));
    Ok(())
}

fn multi(ctx: &mut Ctx, st: &Stack<'_>, sys: &str) -> Res<()> {
    let g = st.up.name;
    let m = ctx.p.multi_sessions;
    let mut conns = Vec::new();
    let mut calls = Vec::new();
    for i in 0..m {
        let (mut c, call) = open(ctx, &st.argv(sys), &format!("{g}/{sys}/multi{i}"))?;
        sequential(&mut c, &call, 20, T)?;
        conns.push(c);
        calls.push(call);
    }
    let mut roots = st.roots(sys);
    roots.extend(conns.iter().map(Conn::pid));
    let (relay, server) = split_tree(&roots, st.up.marker);
    let (n, depth) = (ctx.p.multi_calls, ctx.p.multi_depth);
    let barrier = Barrier::new(m);
    let (r0, s0) = (cpu_sum(&relay), cpu_sum(&server));
    let results: Vec<Res<client::Pipelined>> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .zip(&calls)
            .map(|(c, call)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    pipelined(c, call, n, depth, T)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("session thread panicked".into()))
            })
            .collect()
    });
    let (r1, s1) = (cpu_sum(&relay), cpu_sum(&server));
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut done = 0;
    let mut lats = Vec::new();
    for r in results {
        let p = r?;
        first = Some(first.map_or(p.first_send, |f| f.min(p.first_send)));
        last = Some(last.map_or(p.last_recv, |l| l.max(p.last_recv)));
        done += p.done;
        lats.extend(p.lats);
    }
    if let (Some(f), Some(l)) = (first, last) {
        ctx.res.add(
            g,
            sys,
            "multi_calls_s",
            done as f64 / (l - f).as_secs_f64().max(1e-9),
        );
        ctx.res.add(g, sys, "multi_p50_us", lat_us(&lats, 50.0));
        ctx.res.add(g, sys, "multi_p99_us", lat_us(&lats, 99.0));
        ctx.res.add(
            g,
            sys,
            "relay_cpu_multi_ms_per_1k",
            ms_per_1k(r1 - r0, done),
        );
        ctx.res.add(
            g,
            sys,
            "server_cpu_multi_ms_per_1k",
            ms_per_1k(s1 - s0, done),
        );
    }
    close_all(conns, Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

fn run_upstream(ctx: &mut Ctx, up: &Upstream) -> Res<()> {
    let wants: Vec<&str> = ["cold", "seq", "pipe", "multi"]
        .into_iter()
        .filter(|s| ctx.f.scenario(s))
        .collect();
    if wants.is_empty() {
        return Ok(());
    }
    let mut systems: Vec<&'static str> = SYSTEMS.into_iter().filter(|s| ctx.f.system(s)).collect();
    if ctx.socat.is_none() {
        systems.retain(|s| *s != "socat");
    }
    let mut st = Stack {
        up,
        daemon: None,
        socat: None,
        systems,
    };
    if st.systems.contains(&"stdioproxy") {
        log(&format!("{}: starting a daemon", up.name));
        let cfg = format!("{DEFAULTS}{}", server_toml(up.name, &up.argv, &[]));
        st.daemon = Some(start_daemon(ctx, &format!("daemon-{}", up.name), &cfg, 1)?);
        // A first session, so that every measured one meets a warm daemon.
        let (mut c, call) = open(ctx, &st.argv("stdioproxy"), "warm-up")?;
        sequential(&mut c, &call, 50, T)?;
        c.close(Duration::from_millis(300));
    }
    if st.systems.contains(&"socat") {
        st.socat = Some(start_socat(ctx, &format!("socat-{}", up.name), &up.argv)?);
    }
    for rep in 0..ctx.p.reps {
        let mut order = st.systems.clone();
        let n = order.len().max(1);
        order.rotate_left(rep % n);
        for sys in &order {
            if ctx.f.scenario("cold") {
                log(&format!("{} rep {}: cold start, {sys}", up.name, rep + 1));
                cold(ctx, &st, sys)?;
            }
        }
        for sys in &order {
            if ctx.f.scenario("seq") || ctx.f.scenario("pipe") {
                log(&format!(
                    "{} rep {}: sequential + pipelined, {sys}",
                    up.name,
                    rep + 1
                ));
                seq_pipe(ctx, &st, sys)?;
            }
        }
        for sys in &order {
            if ctx.f.scenario("multi") {
                log(&format!(
                    "{} rep {}: {} sessions, {sys}",
                    up.name,
                    rep + 1,
                    ctx.p.multi_sessions
                ));
                multi(ctx, &st, sys)?;
            }
        }
    }
    Ok(())
}

/// 20 servers: daemon RSS with 100 idle sessions, then 500 concurrent
/// sessions each calling a tool at the same moment.
fn scale(ctx: &mut Ctx) -> Res<()> {
    let p = &ctx.p;
    let (nserv, idle, total, rounds) = (
        p.scale_servers,
        p.idle_sessions,
        p.scale_sessions,
        p.scale_rounds,
    );
    let echo = vec![python(), format!("{REPO}/tests/bench/echo_server.py")];
    // More sessions than the default max_sessions (256).
    let mut cfg = format!("[daemon]\nmax_sessions = {}\n\n{DEFAULTS}", total + 64);
    for i in 0..nserv {
        cfg.push_str(&server_toml(&format!("s{i:02}"), &echo, &[]));
    }
    log(&format!("scale: daemon with {nserv} servers"));
    let d = start_daemon(ctx, "daemon-scale", &cfg, nserv)?;
    std::thread::sleep(Duration::from_millis(500));
    let g = "scale";
    if let Some(kb) = status_kb(d.pid(), "VmRSS") {
        ctx.res
            .add(g, "stdioproxy", "daemon_rss_0_sessions_kib", kb as f64);
    }
    let argv = vec![
        shim_bin(),
        "--socket".into(),
        d.socket.display().to_string(),
    ];
    let mut conns: Vec<Conn> = Vec::with_capacity(total);
    let t_open = Instant::now();
    for i in 0..idle.min(total) {
        let mut c = Conn::spawn(&argv, &[], &ctx.errlog, &format!("scale{i}"))?;
        let hs = c.handshake(T)?;
        if hs.tools.len() != nserv {
            return Err(format!(
                "scale{i}: {} tools, expected {nserv}",
                hs.tools.len()
            ));
        }
        conns.push(c);
    }
    let open_ms = t_open.elapsed().as_secs_f64() * 1e3 / conns.len().max(1) as f64;
    ctx.res
        .add(g, "stdioproxy", "session_open_ms_each", open_ms);
    std::thread::sleep(Duration::from_secs(1));
    let pid = d.pid();
    for (key, field) in [
        ("daemon_rss_idle_kib", "VmRSS"),
        ("daemon_hwm_idle_kib", "VmHWM"),
    ] {
        if let Some(kb) = status_kb(pid, field) {
            ctx.res.add(g, "stdioproxy", key, kb as f64);
        }
    }
    if let Some(t) = procs::threads(pid) {
        ctx.res.add(g, "stdioproxy", "daemon_threads", t as f64);
    }
    let hwms: Vec<f64> = conns
        .iter()
        .filter_map(|c| status_kb(c.pid(), "VmHWM"))
        .map(|k| k as f64)
        .collect();
    ctx.res
        .add(g, "stdioproxy", "idle_shim_hwm_kib", median(&hwms));
    log(&format!(
        "scale: opening {} more sessions",
        total.saturating_sub(conns.len())
    ));
    for i in conns.len()..total {
        let mut c = Conn::spawn(&argv, &[], &ctx.errlog, &format!("scale{i}"))?;
        c.handshake(T)?;
        conns.push(c);
    }
    let calls: Vec<Call> = (0..conns.len())
        .map(|i| Call::new(&format!("s{:02}__echo", i % nserv), "hello"))
        .collect();
    for round in 0..rounds {
        log(&format!(
            "scale: round {}: {} sessions call at once",
            round + 1,
            conns.len()
        ));
        let barrier = Barrier::new(conns.len());
        let outcomes: Vec<Res<(Instant, Instant)>> = std::thread::scope(|s| {
            let handles: Vec<_> = conns
                .iter_mut()
                .zip(&calls)
                .map(|(c, call)| {
                    let barrier = &barrier;
                    std::thread::Builder::new()
                        .stack_size(128 * 1024)
                        .spawn_scoped(s, move || -> Res<(Instant, Instant)> {
                            barrier.wait();
                            let id = c.new_id();
                            let mut req = Vec::new();
                            call.render(id, &mut req);
                            let t0 = Instant::now();
                            c.write(&req)?;
                            let (t, line) = c.wait(id, t0 + T)?;
                            if !client::is_ok(&line) {
                                return Err(format!(
                                    "{}: {}",
                                    c.label,
                                    String::from_utf8_lossy(&line)
                                ));
                            }
                            Ok((t0, t))
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| Err("thread panicked".into())),
                    Err(e) => Err(format!("cannot start a thread: {e}")),
                })
                .collect()
        });
        let mut lats = Vec::new();
        let mut failed = 0;
        let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
        for o in outcomes {
            match o {
                Ok((t0, t)) => {
                    lats.push((t - t0).as_nanos() as u64);
                    first = Some(first.map_or(t0, |f| f.min(t0)));
                    last = Some(last.map_or(t, |l| l.max(t)));
                }
                Err(e) => {
                    failed += 1;
                    if failed == 1 {
                        ctx.note(format!("scale: a session got no answer: {e}"));
                    }
                }
            }
        }
        ctx.res.add(g, "stdioproxy", "answered", lats.len() as f64);
        ctx.res.add(g, "stdioproxy", "failed", failed as f64);
        ctx.res
            .add(g, "stdioproxy", "burst_p50_ms", lat_us(&lats, 50.0) / 1e3);
        ctx.res
            .add(g, "stdioproxy", "burst_p99_ms", lat_us(&lats, 99.0) / 1e3);
        ctx.res
            .add(g, "stdioproxy", "burst_max_ms", lat_us(&lats, 100.0) / 1e3);
        if let (Some(f), Some(l)) = (first, last) {
            ctx.res.add(
                g,
                "stdioproxy",
                "burst_all_answered_ms",
                (l - f).as_secs_f64() * 1e3,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (key, field) in [
        ("daemon_rss_500_kib", "VmRSS"),
        ("daemon_hwm_500_kib", "VmHWM"),
    ] {
        if let Some(kb) = status_kb(pid, field) {
            ctx.res.add(g, "stdioproxy", key, kb as f64);
        }
    }
    close_all(conns, Duration::from_secs(2));
    drop(d);
    Ok(())
}

/// tools/list of 50 servers x 100 tools through the shim.
fn list(ctx: &mut Ctx) -> Res<()> {
    let g = "list";
    // How many tools the fixture has without extras, so each server lists
    // exactly `list_tools`.
    let mut probe = Conn::spawn(&[FIXTURE.to_string()], &[], &ctx.errlog, "fixture-probe")?;
    let base = probe.handshake(T)?.tools.len();
    probe.close(Duration::from_millis(300));
    let extra = ctx.p.list_tools.saturating_sub(base);
    let n = ctx.p.list_servers;
    let mut servers = String::new();
    for i in 0..n {
        servers.push_str(&server_toml(
            &format!("f{i:02}"),
            &[FIXTURE.to_string()],
            &[
                ("FIXTURE_NAME", format!("f{i:02}")),
                ("FIXTURE_EXTRA_TOOLS", extra.to_string()),
            ],
        ));
    }
    log(&format!(
        "list: daemon with {n} servers x {} tools",
        base + extra
    ));
    let d = start_daemon(ctx, "daemon-list", &format!("{DEFAULTS}{servers}"), n)?;
    let argv = vec![
        shim_bin(),
        "--socket".into(),
        d.socket.display().to_string(),
    ];
    let mut c = Conn::spawn(&argv, &[], &ctx.errlog, "list")?;
    let hs = c.handshake(T)?;
    ctx.res.add(g, "stdioproxy", "tools", hs.tools.len() as f64);
    ctx.res
        .add(g, "stdioproxy", "pages_default", hs.pages as f64);
    ctx.res.add(g, "stdioproxy", "bytes", hs.list_bytes as f64);
    for _ in 0..3 {
        c.list_tools(T)?;
    }
    for _ in 0..ctx.p.list_reps {
        let (rtt, _, _, _, _) = c.list_tools(T)?;
        ctx.res
            .add(g, "stdioproxy", "all_pages_ms", rtt.as_secs_f64() * 1e3);
    }
    // The same with every tool on one page: page_size changes on reload.
    write_private(
        &d.config,
        &format!("[daemon]\npage_size = 100000\n\n{DEFAULTS}{servers}"),
    )?;
    let out = Command::new(daemon_bin())
        .args(["reload", "--socket"])
        .arg(&d.socket)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "stdioproxy reload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for _ in 0..3 {
        c.list_tools(T)?;
    }
    for _ in 0..ctx.p.list_reps {
        let (rtt, _, pages, _, _) = c.list_tools(T)?;
        if pages != 1 {
            return Err(format!(
                "list: expected one page after the reload, got {pages}"
            ));
        }
        ctx.res
            .add(g, "stdioproxy", "one_page_ms", rtt.as_secs_f64() * 1e3);
    }
    c.close(Duration::from_millis(300));
    drop(d);
    Ok(())
}

impl Conn {
    /// Waits for a notification `method` arriving after index `seen`.
    fn wait_notification(&mut self, method: &str, seen: usize, deadline: Instant) -> Res<Instant> {
        loop {
            if let Some((t, _)) = self.notifications[seen..].iter().find(|(_, m)| m == method) {
                return Ok(*t);
            }
            let (t, line) = self.next_line(deadline)?;
            let head: client::Head<'_> =
                serde_json::from_slice(&line).map_err(|e| e.to_string())?;
            if let (Some(m), None) = (&head.method, &head.id) {
                self.notifications.push((t, m.to_string()));
            }
        }
    }
}

/// Per-call latency on a 2026-07-28 session against a legacy one, through
/// the same daemon to the same echo server: what the modern era costs
/// (reading and checking every request's `_meta`, stripping it for the
/// legacy child, decorating every result). Sessions alternate each round.
fn era(ctx: &mut Ctx) -> Res<()> {
    let g = "era";
    let servers = server_toml(
        "echo",
        &[python(), format!("{REPO}/tests/bench/echo_server.py")],
        &[],
    );
    let d = start_daemon(ctx, "daemon-era", &format!("{DEFAULTS}{servers}"), 1)?;
    let argv = vec![
        shim_bin(),
        "--socket".into(),
        d.socket.display().to_string(),
    ];
    let mut legacy = Conn::spawn(&argv, &[], &ctx.errlog, "era/legacy")?;
    let tools = legacy.handshake(T)?.tools;
    let tool = echo_tool(&tools).ok_or("era: the echo server lists no echo tool")?;
    let mut modern = Conn::spawn(&argv, &[], &ctx.errlog, "era/modern")?;
    let (_, _, discover) = modern.request(
        "server/discover",
        json!({ "_meta": client::modern_meta() }),
        T,
    )?;
    if !discover.to_string().contains("2026-07-28") {
        return Err(format!(
            "era: server/discover did not offer 2026-07-28: {discover}"
        ));
    }
    let text = "hello era";
    let mut calls = [
        ("legacy", Call::new(&tool, text), legacy),
        ("modern", Call::modern(&tool, text), modern),
    ];
    for (_, call, conn) in calls.iter_mut() {
        call_checked(conn, call, text, T)?;
        sequential(conn, call, ctx.p.warmup, T)?;
    }
    let rounds = ctx.p.reps.max(3);
    for _ in 0..rounds {
        for (label, call, conn) in calls.iter_mut() {
            let (lats, errors) = sequential(conn, call, ctx.p.k, T)?;
            if errors > 0 {
                return Err(format!("era: {errors} {label} calls failed"));
            }
            ctx.res.add(g, label, "p50_us", lat_us(&lats, 50.0));
            ctx.res.add(g, label, "p99_us", lat_us(&lats, 99.0));
        }
    }
    for label in ["legacy", "modern"] {
        let p50 = ctx.res.get(g, label, "p50_us").unwrap_or(f64::NAN);
        let p99 = ctx.res.get(g, label, "p99_us").unwrap_or(f64::NAN);
        log(&format!(
            "era: {label} session: p50 {p50:.1} us, p99 {p99:.1} us ({rounds} rounds of {} calls)",
            ctx.p.k
        ));
    }
    for (_, _, conn) in calls {
        conn.close(Duration::from_millis(300));
    }
    drop(d);
    Ok(())
}

/// Config renamed over the old one -> notifications/tools/list_changed.
fn reload(ctx: &mut Ctx) -> Res<()> {
    let g = "reload";
    let fixture = |name: &str| {
        server_toml(
            name,
            &[FIXTURE.to_string()],
            &[("FIXTURE_NAME", name.to_string())],
        )
    };
    for (variant, daemon_section) in [
        ("default", String::new()),
        (
            "nodebounce",
            "[daemon]\nreload_debounce = \"0ms\"\n\n".to_string(),
        ),
    ] {
        let base = format!("{daemon_section}{DEFAULTS}{}", fixture("a"));
        let with_b = format!("{base}{}", fixture("b"));
        log(&format!("reload: {variant} debounce"));
        let d = start_daemon(ctx, &format!("daemon-reload-{variant}"), &base, 1)?;
        let argv = vec![
            shim_bin(),
            "--socket".into(),
            d.socket.display().to_string(),
        ];
        let mut c = Conn::spawn(&argv, &[], &ctx.errlog, "reload")?;
        let hs = c.handshake(T)?;
        let n_a = hs.tools.len();
        for _ in 0..ctx.p.reload_reps {
            for (what, text, want_more) in [("add", &with_b, true), ("remove", &base, false)] {
                let seen = c.notifications.len();
                let t0 = Instant::now();
                write_private(&d.config, text)?;
                let t = c.wait_notification("notifications/tools/list_changed", seen, t0 + T)?;
                ctx.res.add(
                    g,
                    "stdioproxy",
                    &format!("{what}_{variant}_ms"),
                    (t - t0).as_secs_f64() * 1e3,
                );
                let (_, _, _, tools, _) = c.list_tools(T)?;
                if (tools.len() > n_a) != want_more {
                    return Err(format!(
                        "reload {what}: {} tools listed after list_changed",
                        tools.len()
                    ));
                }
                // Let the removed server stop before the next change.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        c.close(Duration::from_millis(300));
        drop(d);
    }
    Ok(())
}

/// PSS of 4 clients sharing one server-everything vs 4 each spawning it.
fn memory(ctx: &mut Ctx, ups: &[Upstream]) -> Res<()> {
    let Some(up) = ups.iter().find(|u| u.name == "everything") else {
        ctx.note("memory: server-everything not selected or not installed; skipped".into());
        return Ok(());
    };
    let g = "memory";
    let mut systems: Vec<&str> = SYSTEMS.into_iter().filter(|s| ctx.f.system(s)).collect();
    if ctx.socat.is_none() {
        systems.retain(|s| *s != "socat");
    }
    for rep in 0..ctx.p.mem_reps {
        let mut order = systems.clone();
        let n = order.len().max(1);
        order.rotate_left(rep % n);
        for sys in order {
            log(&format!(
                "memory rep {}: {} clients, {sys}",
                rep + 1,
                ctx.p.mem_clients
            ));
            let mut st = Stack {
                up,
                daemon: None,
                socat: None,
                systems: vec![],
            };
            if sys == "stdioproxy" {
                let cfg = format!("{DEFAULTS}{}", server_toml(up.name, &up.argv, &[]));
                st.daemon = Some(start_daemon(ctx, &format!("daemon-mem{rep}"), &cfg, 1)?);
            } else if sys == "socat" {
                st.socat = Some(start_socat(ctx, &format!("socat-mem{rep}"), &up.argv)?);
            }
            let mut conns = Vec::new();
            for i in 0..ctx.p.mem_clients {
                let (mut c, call) = open(ctx, &st.argv(sys), &format!("mem/{sys}{i}"))?;
                sequential(&mut c, &call, ctx.p.mem_calls, T)?;
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(500));
            let mut roots = st.roots(sys);
            roots.extend(conns.iter().map(Conn::pid));
            let pids = tree(&roots);
            let pss: u64 = pids.iter().filter_map(|&p| pss_kb(p)).sum();
            let rss: u64 = pids.iter().filter_map(|&p| status_kb(p, "VmRSS")).sum();
            ctx.res.add(g, sys, "pss_total_mib", pss as f64 / 1024.0);
            ctx.res.add(g, sys, "rss_total_mib", rss as f64 / 1024.0);
            ctx.res.add(g, sys, "processes", pids.len() as f64);
            close_all(conns, Duration::from_millis(300));
            drop(st);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ report

/// The 1, 5 and 15 minute load averages (how busy the machine was).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cmd_out = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cores": cores,
        "kernel": kernel,
        "rustc": cmd_out("rustc", &["--version"]),
        "python3": cmd_out(&python(), &["--version"]),
        "python3_path": python(),
        "node": cmd_out("node", &["--version"]),
        "socat": cmd_out("socat", &["-V"]).lines().find(|l| l.starts_with("socat version")).unwrap_or("").to_string(),
        "commit": cmd_out("git", &["-C", REPO, "rev-parse", "--short", "HEAD"]),
        "dirty": !cmd_out("git", &["-C", REPO, "status", "--porcelain", "--untracked-files=no"]).is_empty(),
    })
}

struct Target {
    what: &'static str,
    figure: String,
    met: Option<bool>,
}

fn targets(r: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let get = |g: &str, s: &str, m: &str| r.get(g, s, m);
    let init = get("echo", "stdioproxy", "cold_init_ms");
    out.push(Target {
        what: "shim reaches the initialize result in <= 3 ms (echo, warm daemon)",
        figure: init.map_or("-".into(), |v| format!("{v:.2} ms")),
        met: init.map(|v| v <= 3.0),
    });
    for g in UPSTREAMS {
        let d = get(g, "direct", "seq_p50_us");
        let (sp, so) = (
            get(g, "stdioproxy", "seq_p50_us"),
            get(g, "socat", "seq_p50_us"),
        );
        let ovh = |x: Option<f64>| x.zip(d).map(|(x, d)| x - d);
        let (os, oo) = (ovh(sp), ovh(so));
        out.push(Target {
            what: if g == "echo" {
                "per-call p50 overhead <= socat's (echo)"
            } else {
                "per-call p50 overhead <= socat's (server-everything)"
            },
            figure: match (os, oo) {
                (Some(a), Some(b)) => format!("{a:.0} us vs socat {b:.0} us"),
                (Some(a), None) => format!("{a:.0} us (socat not measured)"),
                _ => "-".into(),
            },
            met: os.zip(oo).map(|(a, b)| a <= b),
        });
        let (ps, po) = (
            get(g, "stdioproxy", "pipe_calls_s"),
            get(g, "socat", "pipe_calls_s"),
        );
        out.push(Target {
            what: if g == "echo" {
                "pipelined throughput (1 session) >= socat's (echo)"
            } else {
                "pipelined throughput (1 session) >= socat's (server-everything)"
            },
            figure: match (ps, po) {
                (Some(a), Some(b)) => format!("{} vs socat {} calls/s", num(Some(a)), num(Some(b))),
                _ => "-".into(),
            },
            met: ps.zip(po).map(|(a, b)| a >= b),
        });
    }
    let rss = get("scale", "stdioproxy", "daemon_rss_idle_kib").map(|k| k / 1024.0);
    out.push(Target {
        what: "daemon RSS <= 20 MiB with 20 servers and 100 idle sessions",
        figure: rss.map_or("-".into(), |v| format!("{v:.1} MiB")),
        met: rss.map(|v| v <= 20.0),
    });
    let shim = get("echo", "stdioproxy", "shim_hwm_kib")
        .or_else(|| get("scale", "stdioproxy", "idle_shim_hwm_kib"))
        .map(|k| k / 1024.0);
    out.push(Target {
        what: "shim RSS (VmHWM) <= 2 MiB",
        figure: shim.map_or("-".into(), |v| format!("{v:.2} MiB")),
        met: shim.map(|v| v <= 2.0),
    });
    let l = get("list", "stdioproxy", "all_pages_ms");
    let tools = get("list", "stdioproxy", "tools");
    let pages = get("list", "stdioproxy", "pages_default");
    out.push(Target {
        what: "tools/list of 5,000 tools <= 5 ms (default page size, all pages)",
        figure: l.map_or("-".into(), |v| {
            format!(
                "{v:.2} ms ({} tools, {} pages)",
                num(tools),
                pages.map_or("-".into(), |p| format!("{p:.0}"))
            )
        }),
        met: l.map(|v| v <= 5.0),
    });
    let (share, spawn) = (
        get("memory", "stdioproxy", "pss_total_mib"),
        get("memory", "direct", "pss_total_mib"),
    );
    out.push(Target {
        what: "4 clients sharing <= half the memory (PSS) of 4 clients spawning",
        figure: match (share, spawn) {
            (Some(a), Some(b)) => format!("{a:.1} MiB vs {b:.1} MiB ({:.2}x)", a / b),
            _ => "-".into(),
        },
        met: share.zip(spawn).map(|(a, b)| a <= b / 2.0),
    });
    out
}

fn render(ctx: &Ctx, meta: &Value) -> String {
    let r = &ctx.res;
    let p = &ctx.p;
    let mut s = String::new();
    let m = &meta["machine"];
    s.push_str(&format!(
        "# stdioproxy benchmark ({} mode)\n\nMachine: {} cores, {}, kernel {}, {}; {}, node {}, {}. Commit {}{}. Repetitions: {}; medians. Load average {} at the start, {} at the end.\n\n",
        meta["mode"].as_str().unwrap_or(""),
        m["cores"], m["cpu"].as_str().unwrap_or(""), m["kernel"].as_str().unwrap_or(""),
        m["rustc"].as_str().unwrap_or(""), m["python3"].as_str().unwrap_or(""),
        m["node"].as_str().unwrap_or(""), m["socat"].as_str().unwrap_or("no socat"),
        m["commit"].as_str().unwrap_or(""),
        if m["dirty"].as_bool() == Some(true) { " (with uncommitted changes)" } else { "" },
        p.reps,
        meta["loadavg_start"].as_str().unwrap_or("?"),
        meta["loadavg_end"].as_str().unwrap_or("?"),
    ));
    for g in UPSTREAMS {
        if !r.values.keys().any(|(gg, _, _)| gg == g) {
            continue;
        }
        s.push_str(&format!(
            "## Upstream `{g}`: {}\n\n",
            if g == "echo" {
                "tests/bench/echo_server.py"
            } else {
                "@modelcontextprotocol/server-everything"
            }
        ));
        let mut t = Table::new(&[
            "figure",
            "direct",
            "stdioproxy",
            "vs direct",
            "socat",
            "vs direct",
        ]);
        let rows: Vec<(String, &str)> = vec![
            (
                "cold start -> initialize result (ms)".into(),
                "cold_init_ms",
            ),
            (
                "cold start -> tools/list result (ms)".into(),
                "cold_list_ms",
            ),
            (
                "floor: spawn of `stdioproxy-shim --version` -> its output (ms)".into(),
                "shim_exec_floor_ms",
            ),
            ("tools/call p50, sequential (us)".into(), "seq_p50_us"),
            ("tools/call p99, sequential (us)".into(), "seq_p99_us"),
            ("p50 overhead over direct (us)".into(), "@overhead"),
            (
                format!(
                    "pipelined, 1 session, {} outstanding (calls/s)",
                    p.pipe_depth
                ),
                "pipe_calls_s",
            ),
            (
                format!(
                    "pipelined, {} sessions x {} outstanding (calls/s, total)",
                    p.multi_sessions, p.multi_depth
                ),
                "multi_calls_s",
            ),
            (
                format!("p50 latency with {} sessions (us)", p.multi_sessions),
                "multi_p50_us",
            ),
            (
                "relay CPU per 1,000 calls, sequential (ms)".into(),
                "relay_cpu_seq_ms_per_1k",
            ),
            (
                "relay CPU per 1,000 calls, pipelined (ms)".into(),
                "relay_cpu_pipe_ms_per_1k",
            ),
            (
                "server CPU per 1,000 calls, pipelined (ms)".into(),
                "server_cpu_pipe_ms_per_1k",
            ),
        ];
        for (label, metric) in rows {
            let val = |sys: &str| {
                if metric == "@overhead" {
                    let d = r.get(g, "direct", "seq_p50_us")?;
                    if sys == "direct" {
                        return Some(0.0);
                    }
                    Some(r.get(g, sys, "seq_p50_us")? - d)
                } else {
                    r.get(g, sys, metric)
                }
            };
            let (d, sp, so) = (val("direct"), val("stdioproxy"), val("socat"));
            let rel = |x| {
                if metric == "@overhead" || metric.starts_with("relay") {
                    "".into()
                } else {
                    ratio(x, d)
                }
            };
            t.row(vec![label, num(d), num(sp), rel(sp), num(so), rel(so)]);
        }
        s.push_str(&t.render());
        let mut t = Table::new(&["stdioproxy detail", "sequential", "pipelined"]);
        t.row(vec![
            "daemon CPU per 1,000 calls (ms)".into(),
            num(r.get(g, "stdioproxy", "daemon_cpu_seq_ms_per_1k")),
            num(r.get(g, "stdioproxy", "daemon_cpu_pipe_ms_per_1k")),
        ]);
        t.row(vec![
            "shim CPU per 1,000 calls (ms)".into(),
            num(r.get(g, "stdioproxy", "shim_cpu_seq_ms_per_1k")),
            num(r.get(g, "stdioproxy", "shim_cpu_pipe_ms_per_1k")),
        ]);
        t.row(vec![
            "shim VmHWM after the session (KiB)".into(),
            num(r.get(g, "stdioproxy", "shim_hwm_kib")),
            String::new(),
        ]);
        s.push('\n');
        s.push_str(&t.render());
        s.push('\n');
    }
    let mut t = Table::new(&["daemon figure", "value"]);
    let mut add = |label: String, v: Option<f64>, unit: &str| {
        if v.is_some() {
            t.row(vec![label, format!("{} {unit}", num(v))]);
        }
    };
    let kib = |g: &str, m: &str| r.get(g, "stdioproxy", m).map(|k| k / 1024.0);
    add(
        format!("daemon RSS, {} servers, no session", p.scale_servers),
        kib("scale", "daemon_rss_0_sessions_kib"),
        "MiB",
    );
    add(
        format!(
            "daemon RSS, {} servers, {} idle sessions",
            p.scale_servers, p.idle_sessions
        ),
        kib("scale", "daemon_rss_idle_kib"),
        "MiB",
    );
    add(
        format!(
            "daemon VmHWM, {} servers, {} idle sessions",
            p.scale_servers, p.idle_sessions
        ),
        kib("scale", "daemon_hwm_idle_kib"),
        "MiB",
    );
    add(
        "daemon threads".into(),
        r.get("scale", "stdioproxy", "daemon_threads"),
        "",
    );
    add(
        format!("daemon RSS after {} sessions", p.scale_sessions),
        kib("scale", "daemon_rss_500_kib"),
        "MiB",
    );
    add(
        format!("daemon VmHWM after {} sessions", p.scale_sessions),
        kib("scale", "daemon_hwm_500_kib"),
        "MiB",
    );
    add(
        "idle shim VmHWM (median of the idle sessions)".into(),
        kib("scale", "idle_shim_hwm_kib"),
        "MiB",
    );
    add(
        "session open, spawn -> tools/list (ms each, sequential)".into(),
        r.get("scale", "stdioproxy", "session_open_ms_each"),
        "ms",
    );
    add(
        format!(
            "{} sessions over {} servers call at once: answered",
            p.scale_sessions, p.scale_servers
        ),
        r.get("scale", "stdioproxy", "answered"),
        "",
    );
    add(
        "  ... latency p50".into(),
        r.get("scale", "stdioproxy", "burst_p50_ms"),
        "ms",
    );
    add(
        "  ... latency p99".into(),
        r.get("scale", "stdioproxy", "burst_p99_ms"),
        "ms",
    );
    add(
        "  ... latency max".into(),
        r.get("scale", "stdioproxy", "burst_max_ms"),
        "ms",
    );
    add(
        "  ... first send -> last answer".into(),
        r.get("scale", "stdioproxy", "burst_all_answered_ms"),
        "ms",
    );
    add(
        format!("tools/list, {} servers: tools", p.list_servers),
        r.get("list", "stdioproxy", "tools"),
        "",
    );
    add(
        "  ... default page size: pages".into(),
        r.get("list", "stdioproxy", "pages_default"),
        "",
    );
    add(
        "  ... all pages, sum of round trips".into(),
        r.get("list", "stdioproxy", "all_pages_ms"),
        "ms",
    );
    add(
        "  ... one page (page_size = 100000)".into(),
        r.get("list", "stdioproxy", "one_page_ms"),
        "ms",
    );
    add(
        "  ... bytes".into(),
        r.get("list", "stdioproxy", "bytes"),
        "B",
    );
    add(
        "reload: add a server -> list_changed (150 ms debounce)".into(),
        r.get("reload", "stdioproxy", "add_default_ms"),
        "ms",
    );
    add(
        "reload: remove a server -> list_changed (150 ms debounce)".into(),
        r.get("reload", "stdioproxy", "remove_default_ms"),
        "ms",
    );
    add(
        "reload: add a server -> list_changed (debounce 0)".into(),
        r.get("reload", "stdioproxy", "add_nodebounce_ms"),
        "ms",
    );
    add(
        "reload: remove a server -> list_changed (debounce 0)".into(),
        r.get("reload", "stdioproxy", "remove_nodebounce_ms"),
        "ms",
    );
    add(
        "outage: new daemon listening -> first call answered (warm cache)".into(),
        r.get("outage", "stdioproxy", "listen_to_answer_ms"),
        "ms",
    );
    add(
        "  ... new daemon listening -> session resumed (a queued ping answered)".into(),
        r.get("outage", "stdioproxy", "listen_to_resumed_ms"),
        "ms",
    );
    add(
        "  ... daemon killed -> that call answered".into(),
        r.get("outage", "stdioproxy", "kill_to_answer_ms"),
        "ms",
    );
    add(
        "  ... daemon killed -> new daemon listening".into(),
        r.get("outage", "stdioproxy", "kill_to_listen_ms"),
        "ms",
    );
    add(
        "shim binary size".into(),
        r.get("binary", "stdioproxy", "shim_bytes")
            .map(|b| b / 1024.0),
        "KiB",
    );
    add(
        "daemon binary size".into(),
        r.get("binary", "stdioproxy", "daemon_bytes")
            .map(|b| b / 1024.0),
        "KiB",
    );
    if !t.rows.is_empty() {
        s.push_str("## Daemon at scale\n\n");
        s.push_str(&t.render());
        s.push('\n');
    }
    if r.values.keys().any(|(g, _, _)| g == "memory") {
        s.push_str(&format!(
            "## Memory: {} clients of server-everything (whole process trees)\n\n",
            p.mem_clients
        ));
        let mut t = Table::new(&[
            "system",
            "PSS total (MiB)",
            "vs direct",
            "RSS total (MiB)",
            "processes",
        ]);
        let base = r.get("memory", "direct", "pss_total_mib");
        for sys in SYSTEMS {
            let pss = r.get("memory", sys, "pss_total_mib");
            if pss.is_none() {
                continue;
            }
            let label = match sys {
                "direct" => "direct (each client spawns it)",
                "stdioproxy" => "stdioproxy (one shared server)",
                _ => "socat (one server per connection)",
            };
            t.row(vec![
                label.into(),
                num(pss),
                ratio(pss, base),
                num(r.get("memory", sys, "rss_total_mib")),
                num(r.get("memory", sys, "processes")),
            ]);
        }
        s.push_str(&t.render());
        s.push('\n');
    }
    s.push_str(&instances::render(r, p.scale_servers));
    s.push_str(&fit::render(ctx));
    let mut t = Table::new(&["issue 7 target", "measured", "met"]);
    for tg in targets(r).into_iter().chain(instances::targets(r)) {
        t.row(vec![
            tg.what.into(),
            tg.figure,
            match tg.met {
                Some(true) => "yes".into(),
                Some(false) => "**no**".into(),
                None => "not measured".into(),
            },
        ]);
    }
    s.push_str("## Targets\n\n");
    s.push_str(&t.render());
    if !ctx.notes.is_empty() {
        s.push_str("\nNotes:\n");
        for n in &ctx.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    s
}

fn run(opts: Opts) -> Res<()> {
    procs::raise_fd_limit();
    let mut p = Params::new(opts.quick);
    if let Some(r) = opts.reps {
        p.reps = r;
        p.mem_reps = r;
    }
    if let Some(k) = opts.k {
        p.k = k;
    }
    if let Some(n) = opts.pipe_calls {
        p.pipe_calls = n;
    }
    let tmp = tempfile::Builder::new()
        .prefix("stdioproxy-bench")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let errlog = File::create(tmp.path().join("clients.stderr")).map_err(|e| e.to_string())?;
    let mut ctx = Ctx {
        p,
        f: opts.filter,
        tmp: tmp.path().to_path_buf(),
        wrapper: opts.wrapper,
        res: Results::default(),
        errlog,
        notes: Vec::new(),
        socat: find_in_path("socat"),
    };
    if ctx.socat.is_none() && ctx.f.system("socat") {
        ctx.note("socat is not installed: the socat relay is not measured".into());
    }
    log(&format!(
        "{} mode, temp dir {}",
        if opts.quick { "quick" } else { "full" },
        ctx.tmp.display()
    ));
    let started = Instant::now();
    let load_start = loadavg();
    for (name, path) in [("shim_bytes", shim_bin()), ("daemon_bytes", daemon_bin())] {
        if let Ok(m) = std::fs::metadata(path) {
            ctx.res.add("binary", "stdioproxy", name, m.len() as f64);
        }
    }
    let ups = upstreams(&mut ctx);
    let mut failure = None;
    for up in &ups {
        if let Err(e) = run_upstream(&mut ctx, up) {
            log(&format!("{}: FAILED: {e}", up.name));
            failure.get_or_insert(e);
        }
    }
    if ctx.f.system("stdioproxy") {
        type Scenario = fn(&mut Ctx) -> Res<()>;
        let daemon_only: [(&str, Scenario); 7] = [
            ("scale", scale),
            ("list", list),
            ("reload", reload),
            ("instances", instances::instances),
            ("era", era),
            ("outage", outage::outage),
            ("fit", fit::fit),
        ];
        for (name, f) in daemon_only {
            if ctx.f.scenario(name) {
                if let Err(e) = f(&mut ctx) {
                    log(&format!("{name}: FAILED: {e}"));
                    failure.get_or_insert(e);
                }
            }
        }
    }
    if ctx.f.scenario("memory") {
        if let Err(e) = memory(&mut ctx, &ups) {
            log(&format!("memory: FAILED: {e}"));
            failure.get_or_insert(e);
        }
    }
    let meta = json!({
        "mode": if opts.quick { "quick" } else { "full" },
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "daemon": daemon_bin(),
        "shim": shim_bin(),
        "seconds": started.elapsed().as_secs_f64(),
        "upstreams": ups.iter().map(|u| json!({"name": u.name, "argv": u.argv, "what": u.describe})).collect::<Vec<_>>(),
        "params": {
            "reps": ctx.p.reps, "cold_per_rep": ctx.p.cold, "warmup": ctx.p.warmup, "k": ctx.p.k,
            "pipe_calls": ctx.p.pipe_calls, "pipe_depth": ctx.p.pipe_depth,
            "multi_sessions": ctx.p.multi_sessions, "multi_calls": ctx.p.multi_calls, "multi_depth": ctx.p.multi_depth,
            "scale_servers": ctx.p.scale_servers, "idle_sessions": ctx.p.idle_sessions,
            "scale_sessions": ctx.p.scale_sessions, "scale_rounds": ctx.p.scale_rounds,
            "list_servers": ctx.p.list_servers, "list_tools": ctx.p.list_tools, "list_reps": ctx.p.list_reps,
            "reload_reps": ctx.p.reload_reps, "mem_clients": ctx.p.mem_clients, "mem_reps": ctx.p.mem_reps,
        },
    });
    let md = render(&ctx, &meta);
    println!("{md}");
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &md).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if let Some(path) = &opts.json {
        let targets: Vec<Value> = targets(&ctx.res)
            .into_iter()
            .map(|t| json!({"target": t.what, "figure": t.figure, "met": t.met}))
            .collect();
        let doc = json!({"meta": meta, "values": ctx.res.to_json(), "targets": targets, "notes": ctx.notes});
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    log(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    if opts.keep_tmp {
        let kept = tmp.keep();
        log(&format!("kept {}", kept.display()));
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: failed: {e}");
            ExitCode::FAILURE
        }
    }
}
