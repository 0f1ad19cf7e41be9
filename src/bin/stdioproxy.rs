//! `stdioproxy`: the daemon (`serve`) and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use stdioproxy::config::{self, Config};
use stdioproxy::control::commands;
use stdioproxy::{
    client_setup, control, daemon, import, install, listener, paths, systemd, telemetry,
};

#[derive(Parser)]
#[command(
    name = "stdioproxy",
    version,
    about = "One daemon that shares every MCP server among all your MCP clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what the systemd unit runs).
    Serve {
        /// Config file [default: $STDIOPROXY_CONFIG, else ~/.config/stdioproxy/config.toml]
        #[arg(long)]
        config: Option<PathBuf>,
        /// Socket [default: $STDIOPROXY_SOCKET, else $XDG_RUNTIME_DIR/stdioproxy/stdioproxy.sock]
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Show the running daemon's servers and sessions.
    Status {
        /// Print the JSON document instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Make the running daemon re-read its config now; prints what changed.
    Reload {
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Restart one server now (every running instance), resetting its
    /// restart backoff.
    Restart {
        /// The server's name in the config.
        server: String,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Print a server's last stderr lines (time, instance pid, text).
    Logs {
        /// The server's name in the config.
        server: String,
        /// How many lines.
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines until interrupted.
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Pinned tool definitions (servers with `pin_tools = true`).
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Write the systemd user units (socket + service) for this binary.
    Install {
        /// Where to write them [default: ~/.config/systemd/user]
        #[arg(long)]
        unit_dir: Option<PathBuf>,
        /// Use the Type=notify unit for systemd older than 253 [default: detected]
        #[arg(long)]
        legacy: Option<bool>,
    },
    /// Print (or with --write, merge with a backup) the config that points an
    /// MCP client at stdioproxy-shim: claude-desktop, claude-code, cursor,
    /// codex or gemini.
    SetupClient {
        client: client_setup::Client,
        /// Merge into the client's config file instead of printing.
        #[arg(long)]
        write: bool,
        /// One client entry per enabled server (`stdioproxy-shim --server
        /// NAME`), so every tool keeps the name it had before stdioproxy.
        #[arg(long)]
        per_server: bool,
        /// The shim to use [default: stdioproxy-shim next to this binary]
        #[arg(long)]
        shim: Option<PathBuf>,
        /// The daemon's config, for --per-server [default: as `serve`]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Convert an existing client config's MCP servers (Claude Desktop,
    /// Claude Code, Cursor, VS Code, Gemini CLI, Codex) into stdioproxy config.
    Import {
        /// The client's config file to read.
        file: PathBuf,
        /// Merge into the daemon's config (created 0600 in a 0700 directory
        /// if missing; comments kept) instead of printing the TOML.
        #[arg(long)]
        write: bool,
        /// With --write: replace servers the config already has (by name)
        /// instead of skipping them.
        #[arg(long, requires = "write")]
        replace: bool,
        /// Plan one client entry per server: show which entry reaches which
        /// server and the `setup-client --per-server` command that writes them.
        #[arg(long)]
        per_server: bool,
        /// The daemon's config for --write [default: as `serve`]
        #[arg(long, conflicts_with = "output")]
        config: Option<PathBuf>,
        /// Write the TOML to this new file (mode 0600) instead of stdout; never overwrites.
        #[arg(long, conflicts_with = "write")]
        output: Option<PathBuf>,
    },
    /// Validate a config file without running anything.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The reaper companion the daemon starts (see stdioproxy::reaper); not
    /// a user command.
    #[command(name = "__reaper", hide = true)]
    Reaper,
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Show the tools held because their definition changed (or they are
    /// new), with the trusted and the offered text.
    Pending {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Trust what a server offers now for its held tools (only TOOL, when
    /// given); clients are told the tool list changed.
    Approve {
        /// The server's name in the config.
        server: String,
        /// One tool (its name as the server knows it).
        tool: Option<String>,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Reaper => {
            stdioproxy::reaper::run();
            ExitCode::SUCCESS
        }
        Command::Serve { config, socket } => serve(config, socket),
        Command::Status { json, socket } => {
            let path = paths::socket_path(socket.as_deref());
            match control::request(&path, "status", Duration::from_secs(10)) {
                Ok(v) if json => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    print!(
                        "{}",
                        stdioproxy::status_view::render(&v, std::time::SystemTime::now())
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Reload { socket } => {
            let path = paths::socket_path(socket.as_deref());
            // A reload may wait for new servers to start (startup_timeout).
            match control::request(&path, "reload", Duration::from_secs(600)) {
                Ok(v) => {
                    println!("{}", v["changes"].as_str().unwrap_or("reloaded"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("reload failed, nothing changed: {e}")),
            }
        }
        Command::Restart { server, socket } => {
            let path = paths::socket_path(socket.as_deref());
            print_or_fail(commands::restart(&path, &server).map(|m| format!("{m}\n")))
        }
        Command::Logs {
            server,
            lines,
            follow,
            socket,
        } => {
            let path = paths::socket_path(socket.as_deref());
            let mut out = std::io::stdout().lock();
            match commands::logs(&path, &server, lines, follow, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Tools {
            command: ToolsCommand::Pending { json, socket },
        } => print_or_fail(commands::pending(
            &paths::socket_path(socket.as_deref()),
            json,
        )),
        Command::Tools {
            command:
                ToolsCommand::Approve {
                    server,
                    tool,
                    socket,
                },
        } => print_or_fail(commands::approve(
            &paths::socket_path(socket.as_deref()),
            &server,
            tool.as_deref(),
        )),
        Command::Install { unit_dir, legacy } => run_install(unit_dir, legacy),
        Command::SetupClient {
            client,
            write,
            per_server,
            shim,
            config,
        } => run_setup_client(client, write, per_server, shim, config),
        Command::Import {
            file,
            write,
            replace,
            per_server,
            config,
            output,
        } => run_import(
            &file,
            ImportTo {
                write,
                replace,
                per_server,
                config,
                output,
            },
        ),
        Command::Check { config } => {
            let path = paths::config_path(config.as_deref());
            match config::load(&path) {
                Ok(Some((c, _))) => {
                    let enabled = c.enabled_servers().count();
                    println!(
                        "{}: ok, {} servers ({enabled} enabled)",
                        path.display(),
                        c.servers.len()
                    );
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    println!(
                        "{}: does not exist (the daemon would start with no servers)",
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stdioproxy: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("stdioproxy: {message}");
    ExitCode::from(1)
}

/// Prints `text` and exits 0, or the error and exits 1.
fn print_or_fail(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn serve(config_flag: Option<PathBuf>, socket_flag: Option<PathBuf>) -> ExitCode {
    // Before any thread exists: take (and unset) LISTEN_* and WATCHDOG_*.
    let activated = systemd::take_activated_listener();
    let watchdog = systemd::take_watchdog_interval();
    telemetry::init();
    let config_path = paths::config_path(config_flag.as_deref());
    let (config, config_text) = match config::load(&config_path) {
        Ok(Some((c, text))) => (c, Some(text)),
        Ok(None) => {
            tracing::info!(config = %config_path.display(), "no config file; starting with no servers");
            (Config::default(), None)
        }
        Err(e) => {
            tracing::error!("invalid config: {e}");
            eprintln!("stdioproxy: {e}");
            return ExitCode::from(2);
        }
    };
    let socket_path = paths::socket_path(socket_flag.as_deref());
    let (listener, owns_socket_file) = match activated {
        Ok(Some(l)) => {
            tracing::info!("using the socket passed by systemd (socket activation)");
            (l, false)
        }
        Ok(None) => match listener::bind(&socket_path) {
            Ok(l) => (l, true),
            Err(e) => return fail(&e.to_string()),
        },
        Err(e) => return fail(&format!("cannot use the socket passed by systemd: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let opts = daemon::ServeOptions {
        config,
        config_text,
        config_path,
        socket_path,
        owns_socket_file,
        watchdog,
        reload_requests: Some(reload_rx),
        cache_path: stdioproxy::cache::ToolCache::default_path(),
    };
    let served = runtime.block_on(async {
        let shutdown = signals(reload_tx)?;
        daemon::run(listener, opts, shutdown).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// The daemon's signals: SIGHUP asks for a reload (what systemd's reload
/// sends); the returned future completes on the first SIGTERM or SIGINT,
/// after which a second one exits at once.
fn signals(
    reload: tokio::sync::mpsc::Sender<()>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A full queue already holds a reload that reads the newest file.
            let _ = reload.try_send(());
        }
    });
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::warn!("second signal: exiting immediately");
            std::process::exit(130);
        });
    })
}

fn run_install(unit_dir: Option<PathBuf>, legacy: Option<bool>) -> ExitCode {
    let exe = match std::env::current_exe().and_then(|p| p.canonicalize()) {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find this binary's path: {e}")),
    };
    let Some(home) = paths::home_dir() else {
        return fail("HOME is not set");
    };
    let dir = unit_dir.unwrap_or_else(|| install::default_unit_dir(&home));
    let version = install::systemd_version();
    let legacy =
        legacy.unwrap_or_else(|| version.is_some_and(|v| v < install::NOTIFY_RELOAD_MIN_VERSION));
    match install::install_units(&exe, &dir, legacy) {
        Ok(files) => {
            for f in &files {
                println!("wrote {}", f.display());
            }
            if legacy {
                println!(
                    "(Type=notify unit: systemd {} is older than {})",
                    version.unwrap_or(0),
                    install::NOTIFY_RELOAD_MIN_VERSION
                );
            }
            println!("\nnext: systemctl --user daemon-reload && systemctl --user enable --now stdioproxy.socket");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot write units to {}: {e}", dir.display())),
    }
}

fn default_shim() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(|d| d.join("stdioproxy-shim")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("stdioproxy-shim"))
}

/// The enabled servers of the daemon's config, for `--per-server`.
fn per_server_layout(
    config_flag: Option<&std::path::Path>,
) -> Result<client_setup::Layout, String> {
    let path = paths::config_path(config_flag);
    let names: Vec<String> = match config::load(&path) {
        Ok(Some((c, _))) => c
            .enabled_servers()
            .map(|(n, _)| n.as_str().to_string())
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    if names.is_empty() {
        return Err(format!(
            "{} has no enabled servers to give the client one entry each; add some first, e.g. with: stdioproxy import FILE --write",
            path.display()
        ));
    }
    Ok(client_setup::Layout::PerServer(names))
}

fn run_setup_client(
    client: client_setup::Client,
    write: bool,
    per_server: bool,
    shim: Option<PathBuf>,
    config_flag: Option<PathBuf>,
) -> ExitCode {
    let shim = shim.unwrap_or_else(default_shim);
    let layout = if per_server {
        match per_server_layout(config_flag.as_deref()) {
            Ok(l) => l,
            Err(e) => return fail(&e),
        }
    } else {
        client_setup::Layout::Aggregate
    };
    let Some(home) = paths::home_dir() else {
        return fail("HOME is not set");
    };
    let file = client_setup::config_path(client, &home);
    if !write {
        let current = std::fs::read_to_string(&file).ok();
        return match client_setup::snippet(client, &shim, &layout, current.as_deref()) {
            Ok(s) => {
                print!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: {e}", file.display())),
        };
    }
    match client_setup::merge(client, &file, &shim, &layout) {
        Ok(out) => {
            if !out.changed {
                println!(
                    "{} already runs {} as wanted",
                    out.path.display(),
                    shim.display()
                );
            } else {
                println!("updated {}", out.path.display());
                for (what, names) in [
                    ("added", &out.added),
                    ("replaced", &out.replaced),
                    ("removed", &out.removed),
                ] {
                    if !names.is_empty() {
                        println!("  {what}: {}", names.join(", "));
                    }
                }
                if let Some(b) = &out.backup {
                    println!("backup: {}", b.display());
                }
            }
            if out.has_other_servers() {
                println!(
                    "the client still starts other MCP servers itself; run them through stdioproxy, keeping their tool names, with:\n  stdioproxy import {} --write\n  stdioproxy setup-client {client} --per-server --write",
                    out.path.display(),
                );
            }
            println!("restart {} to use it", client.display_name());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// Where `stdioproxy import` puts its result.
struct ImportTo {
    write: bool,
    replace: bool,
    per_server: bool,
    config: Option<PathBuf>,
    output: Option<PathBuf>,
}

fn run_import(file: &std::path::Path, to: ImportTo) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(&format!("cannot read {}: {e}", file.display())),
    };
    let out = match import::import_mcp_servers(&text) {
        Ok(o) => o,
        Err(e) => return fail(&format!("{}: {e}", file.display())),
    };
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    for s in &out.skipped {
        eprintln!("skipped {}: {}", s.original, s.reason);
    }
    for s in &out.secret_env {
        eprintln!(
            "note: [servers.{}] env {} looks like a secret; consider {} = \"${{{}}}\" and setting it in the daemon's environment",
            s.server, s.key, s.key, s.key
        );
    }
    let result = if to.write {
        let path = paths::config_path(to.config.as_deref());
        match import::write::write_config(&path, &out, &file.display().to_string(), to.replace) {
            Ok(w) => {
                for name in &w.existing {
                    eprintln!(
                        "skipped {name}: {} already has a server of that name (--replace replaces it)",
                        w.path.display()
                    );
                }
                if w.changed() {
                    println!(
                        "{} {}",
                        if w.created { "created" } else { "updated" },
                        w.path.display()
                    );
                    for (what, names) in [("added", &w.added), ("replaced", &w.replaced)] {
                        if !names.is_empty() {
                            println!("  {what}: {}", names.join(", "));
                        }
                    }
                    if let Some(b) = &w.backup {
                        println!("backup: {}", b.display());
                    }
                } else {
                    println!(
                        "{} already has every imported server; nothing written",
                        w.path.display()
                    );
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    } else if let Some(path) = &to.output {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(out.toml.as_bytes()))
            .map(|()| eprintln!("wrote {}", path.display()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    } else {
        print!("{}", out.toml);
        Ok(())
    };
    if let Err(e) = result {
        return fail(&e);
    }
    eprintln!("imported {} server(s)", out.imported.len());
    import_next_steps(file, &out, &to);
    ExitCode::SUCCESS
}

/// What to run next, on stderr (stdout may be the TOML).
fn import_next_steps(file: &std::path::Path, out: &import::ImportOutcome, to: &ImportTo) {
    if out.imported.is_empty() {
        return;
    }
    let client = paths::home_dir().and_then(|h| client_setup::client_of(file, &h));
    let client_name = client.map_or("<client>", client_setup::Client::cli_name);
    if to.per_server {
        eprintln!("one client entry per server (tool names unchanged):");
        for s in out.imported.iter().filter(|s| s.project.is_none()) {
            eprintln!("  {:?} -> stdioproxy-shim --server {}", s.original, s.name);
        }
    }
    let mut next = Vec::new();
    if !to.write {
        next.push(format!("stdioproxy import {} --write", file.display()));
    }
    // One entry per server keeps every tool's name: the migration default.
    next.push(format!(
        "stdioproxy setup-client {client_name} --per-server --write"
    ));
    eprintln!("next: {}", next.join(" && "));
    if !to.per_server {
        eprintln!(
            "(or `stdioproxy setup-client {client_name} --write` for one `stdioproxy` entry with every server, tools named <server>__<tool>)"
        );
    }
}
