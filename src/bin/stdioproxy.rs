//! `stdioproxy`: the daemon (`serve`) and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use stdioproxy::config::{self, Config};
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
    /// MCP client at stdioproxy-shim: claude-desktop, claude-code or cursor.
    SetupClient {
        client: client_setup::Client,
        /// Merge into the client's config file instead of printing.
        #[arg(long)]
        write: bool,
        /// The shim to use [default: stdioproxy-shim next to this binary]
        #[arg(long)]
        shim: Option<PathBuf>,
    },
    /// Convert an existing client config's `mcpServers` (Claude Desktop,
    /// Claude Code, Cursor, VS Code) into stdioproxy config TOML.
    Import {
        /// The JSON file to read.
        file: PathBuf,
        /// Write the TOML here (mode 0600) instead of stdout; never overwrites.
        #[arg(long)]
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
                    print!("{}", control::render_status(&v));
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
            let params = serde_json::json!({ "server": server });
            match control::request_with(&path, "restart", params, Duration::from_secs(60)) {
                Ok(v) => {
                    println!("{}", v["message"].as_str().unwrap_or("restarted"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Logs {
            server,
            lines,
            follow,
            socket,
        } => run_logs(&server, lines, follow, socket),
        Command::Tools { command } => run_tools(command),
        Command::Install { unit_dir, legacy } => run_install(unit_dir, legacy),
        Command::SetupClient {
            client,
            write,
            shim,
        } => run_setup_client(client, write, shim),
        Command::Import { file, output } => run_import(&file, output.as_deref()),
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

fn run_logs(server: &str, lines: usize, follow: bool, socket: Option<PathBuf>) -> ExitCode {
    use std::io::Write;
    let path = paths::socket_path(socket.as_deref());
    let params = serde_json::json!({ "server": server, "lines": lines, "follow": follow });
    let mut out = std::io::stdout().lock();
    let printed = control::stream(&path, "logs", params, |v| {
        if let Some(missed) = v["missed"].as_u64().filter(|m| *m > 0) {
            let _ = writeln!(
                out,
                "... {missed} line(s) dropped from the buffer before they could be shown"
            );
        }
        for line in v["lines"].as_array().into_iter().flatten() {
            if writeln!(out, "{}", line.as_str().unwrap_or_default()).is_err() {
                return false;
            }
        }
        out.flush().is_ok()
    });
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run_tools(command: ToolsCommand) -> ExitCode {
    match command {
        ToolsCommand::Pending { json, socket } => {
            let path = paths::socket_path(socket.as_deref());
            let v = match control::request(&path, "tools-pending", Duration::from_secs(10)) {
                Ok(v) => v,
                Err(e) => return fail(&e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            if let Some(e) = v["store_error"].as_str() {
                println!(
                    "the pin store {} is refused: {e}",
                    v["store"].as_str().unwrap_or("?")
                );
            }
            let held: Vec<stdioproxy::pins::Held> =
                serde_json::from_value(v["held"].clone()).unwrap_or_default();
            print!("{}", stdioproxy::pins::render_pending(&held));
            ExitCode::SUCCESS
        }
        ToolsCommand::Approve {
            server,
            tool,
            socket,
        } => {
            let path = paths::socket_path(socket.as_deref());
            let params = serde_json::json!({ "server": server, "tool": tool });
            match control::request_with(&path, "tools-approve", params, Duration::from_secs(10)) {
                Ok(v) => {
                    let names: Vec<&str> = v["approved"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.as_str())
                        .collect();
                    if names.is_empty() {
                        println!("no tools of {server} are held");
                    } else {
                        println!(
                            "approved {} tool(s) of {server}: {}; clients are told the tool list changed",
                            names.len(),
                            names.join(", ")
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("nothing approved: {e}")),
            }
        }
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

fn run_setup_client(client: client_setup::Client, write: bool, shim: Option<PathBuf>) -> ExitCode {
    let shim = shim.unwrap_or_else(default_shim);
    if !write {
        print!("{}", client_setup::snippet(client, &shim));
        return ExitCode::SUCCESS;
    }
    let Some(home) = paths::home_dir() else {
        return fail("HOME is not set");
    };
    let file = client_setup::config_path(client, &home);
    match client_setup::merge(client, &file, &shim) {
        Ok(out) => {
            if !out.changed {
                println!(
                    "{} already points at {}",
                    out.path.display(),
                    shim.display()
                );
            } else {
                println!("updated {}", out.path.display());
                if let Some(b) = &out.backup {
                    println!("backup: {}", b.display());
                }
            }
            if out.has_other_servers() {
                println!(
                    "the client still starts other MCP servers itself; move them into stdioproxy with:\n  stdioproxy import {} >> {}",
                    out.path.display(),
                    paths::config_path(None).display()
                );
            }
            println!("restart the client to use it");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn run_import(file: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
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
    eprintln!("imported {} server(s)", out.imported.len());
    match output {
        None => {
            print!("{}", out.toml);
            ExitCode::SUCCESS
        }
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| f.write_all(out.toml.as_bytes()));
            match written {
                Ok(()) => {
                    eprintln!("wrote {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("cannot write {}: {e}", path.display())),
            }
        }
    }
}
