//! The daemon: wires the supervisor, the listener and signal handling, and
//! owns shutdown.
//!
//! Shutdown order on SIGTERM/SIGINT: stop accepting and end sessions (the
//! shutdown signal), stop every child gracefully (stdin close, grace, SIGTERM
//! to its group, SIGKILL), remove the socket file, return. A second SIGTERM or
//! SIGINT during that exits at once.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::cache::ToolCache;
use crate::config::{Config, DaemonSettings};
use crate::reaper::Reaper;
use crate::reload::{reload, ReloadRecord, Running, Trigger};
use crate::session::Registry;
use crate::supervisor::Supervisor;
use crate::upstream::Shared;

/// Shared daemon state, read by sessions and control requests.
pub struct Daemon {
    /// The servers and the catalog.
    pub supervisor: Arc<Supervisor>,
    /// The running config; its lock serialises reloads.
    pub running: tokio::sync::Mutex<Running>,
    settings: RwLock<DaemonSettings>,
    /// Config file path.
    pub config_path: PathBuf,
    /// Socket path.
    pub socket_path: PathBuf,
    /// When the daemon started.
    pub started: Instant,
    /// Open client sessions.
    pub sessions: AtomicUsize,
    /// Every live session, for fan-out and for routing children's requests.
    pub registry: Arc<Registry>,
    next_session: AtomicU64,
    config_error: Mutex<Option<String>>,
    last_reload: Mutex<Option<ReloadRecord>>,
    shutdown_tx: watch::Sender<bool>,
}

impl Daemon {
    /// Next session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Completes (value `true`) when the daemon starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// The current config problem, if the file on disk is not what runs.
    pub fn config_error(&self) -> Option<String> {
        self.config_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records (or clears) the config problem shown in `status`.
    pub fn set_config_error(&self, error: Option<String>) {
        *self.config_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Daemon-wide settings (a copy: they can change on reload).
    pub fn settings(&self) -> DaemonSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the daemon-wide settings (reload).
    pub fn set_settings(&self, settings: DaemonSettings) {
        self.supervisor.set_max_message(settings.max_message_size);
        self.supervisor.set_builtin_tools(builtin_tools(&settings));
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// The last reload's outcome.
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a reload's outcome.
    pub fn record_reload(&self, record: ReloadRecord) {
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    }

    /// One line for systemd's STATUS=: "3/4 servers ready, 2 clients".
    pub fn status_line(&self) -> String {
        let servers = self.supervisor.status();
        let ready = servers
            .iter()
            .filter(|s| s.state == crate::upstream::State::Ready)
            .count();
        let sessions = self.sessions.load(Ordering::SeqCst);
        let mut line = format!(
            "{ready}/{} servers ready, {sessions} client{}",
            servers.len(),
            if sessions == 1 { "" } else { "s" }
        );
        if self.config_error().is_some() {
            line.push_str("; config error (see stdioproxy status)");
        }
        line
    }
}

/// Name of the built-in reload tool (under the reserved prefix `stdioproxy`).
pub const RELOAD_TOOL: &str = "reload";

/// The daemon's own tools, as a server named `stdioproxy` would list them.
fn builtin_tools(settings: &DaemonSettings) -> Vec<serde_json::Value> {
    if !settings.reload_tool {
        return Vec::new();
    }
    vec![serde_json::json!({
        "name": RELOAD_TOOL,
        "title": "Reload stdioproxy's config",
        "description": "Re-read the stdioproxy config file now and apply what changed: servers are added, removed or restarted, unchanged ones keep running. Returns what changed, or why the config was refused.",
        "inputSchema": { "type": "object", "properties": {} },
        "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false },
    })]
}

/// What `serve` needs.
pub struct ServeOptions {
    /// The loaded config (empty when the file does not exist).
    pub config: Config,
    /// The text it was loaded from, if any (to skip no-op reloads).
    pub config_text: Option<String>,
    /// Where it came from.
    pub config_path: PathBuf,
    /// The socket path (for status, and to remove on exit when we bound it).
    pub socket_path: PathBuf,
    /// The bound (or activated) listener.
    pub listener: StdUnixListener,
    /// True when we bound the socket ourselves (and so remove it on exit).
    pub owns_socket_file: bool,
    /// systemd's watchdog ping interval (half of WatchdogSec), if enabled.
    pub watchdog: Option<Duration>,
}

/// Runs the daemon until SIGTERM/SIGINT. Must be called inside a tokio
/// runtime.
pub async fn run(opts: ServeOptions) -> std::io::Result<()> {
    crate::upstream::raise_fd_limit();
    if !opts.owns_socket_file {
        crate::listener::secure_activated(&opts.listener);
    }
    let listener = tokio::net::UnixListener::from_std(opts.listener)?;
    let reaper = match Reaper::start() {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::warn!(
                "cannot start the reaper process ({e}); children may outlive a crashed daemon"
            );
            None
        }
    };
    let cache = Arc::new(ToolCache::load(&ToolCache::default_path()));
    cache.spawn_writer();
    let registry = Arc::new(Registry::default());
    let supervisor = Supervisor::new(Shared {
        registry: registry.clone(),
        lists_changed: std::sync::OnceLock::new(),
        reaper,
        cache: Some(cache.clone()),
        max_message: std::sync::atomic::AtomicUsize::new(opts.config.daemon.max_message_size),
    });
    let daemon = Arc::new(Daemon {
        supervisor: supervisor.clone(),
        running: tokio::sync::Mutex::new(Running::new(
            opts.config.clone(),
            opts.config_text.as_deref(),
        )),
        settings: RwLock::new(opts.config.daemon.clone()),
        config_path: opts.config_path.clone(),
        socket_path: opts.socket_path.clone(),
        started: Instant::now(),
        sessions: AtomicUsize::new(0),
        registry,
        next_session: AtomicU64::new(1),
        config_error: Mutex::new(None),
        last_reload: Mutex::new(None),
        shutdown_tx: watch::channel(false).0,
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;

    supervisor.set_builtin_tools(builtin_tools(&opts.config.daemon));
    supervisor.start(&opts.config);
    let accept = tokio::spawn(crate::listener::accept_loop(listener, daemon.clone()));
    let (check_tx, check_rx) = tokio::sync::mpsc::channel(1);
    if opts.config.daemon.watch_config {
        let debounce = opts.config.daemon.reload_debounce.0;
        let path = opts.config_path.clone();
        tokio::spawn(crate::config::watch::watch(path, debounce, check_tx));
    }
    tokio::spawn(reload_on_change(daemon.clone(), check_rx));
    tracing::info!(
        socket = %opts.socket_path.display(),
        config = %opts.config_path.display(),
        servers = opts.config.enabled_servers().count(),
        "stdioproxy listening"
    );

    // READY=1 once listening and every initial server has been attempted.
    let ready_daemon = daemon.clone();
    let initial_limit = opts
        .config
        .enabled_servers()
        .map(|(_, s)| s.timeouts().resolve(&opts.config.defaults).startup_timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1);
    tokio::spawn(async move {
        ready_daemon.supervisor.wait_attempted(initial_limit).await;
        crate::systemd::notify_ready(&ready_daemon.status_line());
        tracing::info!(status = %ready_daemon.status_line(), "ready");
    });

    // The watchdog is pinged from this loop, so a wedged loop stops the pings.
    let watchdog_every = opts.watchdog.unwrap_or(Duration::from_secs(3600));
    let mut watchdog = tokio::time::interval(watchdog_every);
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = watchdog.tick(), if opts.watchdog.is_some() => crate::systemd::notify_watchdog(),
            _ = status_tick.tick() => {
                let line = daemon.status_line();
                if line != last_status {
                    crate::systemd::notify_status(&line);
                    last_status = line;
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let d = daemon.clone();
                tokio::spawn(async move {
                    let _ = reload(&d, Trigger::Signal).await;
                });
            }
        }
    }

    tracing::info!("shutting down: stopping sessions and servers");
    crate::systemd::notify_stopping();
    // A second signal means "now".
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting immediately");
        std::process::exit(130);
    });
    daemon.shutdown_tx.send_replace(true);
    let _ = accept.await;
    supervisor.shutdown().await;
    cache.flush();
    if opts.owns_socket_file {
        let _ = std::fs::remove_file(&opts.socket_path);
    }
    // Give session writers a moment to flush their last lines.
    tokio::time::sleep(Duration::from_millis(10)).await;
    tracing::info!("stdioproxy stopped");
    Ok(())
}

/// Reloads whenever the watcher reports a settled change.
async fn reload_on_change(daemon: Arc<Daemon>, mut checks: tokio::sync::mpsc::Receiver<()>) {
    while checks.recv().await.is_some() {
        let _ = reload(&daemon, Trigger::Inotify).await;
    }
}
