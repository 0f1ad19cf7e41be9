//! `stdioproxy`: the daemon (`serve`) and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use stdioproxy::config::{self, Config};
use stdioproxy::{control, daemon, listener, paths, telemetry};

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
    /// Validate a config file without running anything.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // The reaper companion (see stdioproxy::reaper) is not a user command.
    if std::env::args().nth(1).as_deref() == Some("__reaper") {
        stdioproxy::reaper::run();
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    match cli.command {
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

fn serve(config_flag: Option<PathBuf>, socket_flag: Option<PathBuf>) -> ExitCode {
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
    let listener = match listener::bind(&socket_path) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let opts = daemon::ServeOptions {
        config,
        config_text,
        config_path,
        socket_path,
        listener,
        owns_socket_file: true,
    };
    match runtime.block_on(daemon::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}
