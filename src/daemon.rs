//! The daemon: builds the parts (supervisor, reloader, session hub, control,
//! listener), runs them until a shutdown future completes, and owns the
//! shutdown order.
//!
//! [`run`] takes the bound listener, the options and the shutdown future, as
//! tokio's mini-redis `server::run` does: signal handling is the binary's
//! (SIGTERM/SIGINT complete the future, SIGHUP sends a reload request), so
//! a test can drive a daemon's shutdown without signals.
//!
//! Shutdown order: stop accepting and end sessions (the shutdown signal),
//! stop every child gracefully (stdin close, grace, SIGTERM to its group,
//! SIGKILL), flush the cache, remove the socket file, return.

use std::future::Future;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cache::ToolCache;
use crate::config::{Config, SettingsCell};
use crate::control::Control;
use crate::listener::Handoff;
use crate::reaper::Reaper;
use crate::reload::{Reloader, Running, Trigger};
use crate::session::Hub;
use crate::slots::Slots;
use crate::supervisor::Supervisor;
use crate::upstream::Shared;
use crate::wire::Registry;

/// What `serve` needs besides the listener.
pub struct ServeOptions {
    /// The loaded config (empty when the file does not exist).
    pub config: Config,
    /// The text it was loaded from, if any (to skip no-op reloads).
    pub config_text: Option<String>,
    /// Where it came from.
    pub config_path: PathBuf,
    /// The socket path (for status, and to remove on exit when we bound it).
    pub socket_path: PathBuf,
    /// True when we bound the socket ourselves (and so remove it on exit).
    pub owns_socket_file: bool,
    /// systemd's watchdog ping interval (half of WatchdogSec), if enabled.
    pub watchdog: Option<Duration>,
    /// Reload requests from outside (the binary sends one per SIGHUP).
    pub reload_requests: Option<mpsc::Receiver<()>>,
    /// The on-disk list cache ([`ToolCache::default_path`] for the binary).
    pub cache_path: PathBuf,
}

/// The running parts, as [`run`] wires them.
struct Parts {
    supervisor: Arc<Supervisor>,
    reloader: Arc<Reloader>,
    handoff: Arc<Handoff>,
    cache: Arc<ToolCache>,
    shutdown_tx: watch::Sender<bool>,
}

/// Runs the daemon on `listener` until `shutdown` completes, then stops it
/// in order. Must be called inside a tokio runtime.
pub async fn run(
    listener: StdUnixListener,
    mut opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::upstream::raise_fd_limit();
    if !opts.owns_socket_file {
        crate::listener::secure_activated(&listener);
    }
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let parts = Parts::build(&opts);
    parts.supervisor.start(&opts.config);
    let accept = tokio::spawn(crate::listener::accept_loop(
        listener,
        parts.handoff.clone(),
    ));
    parts.reload_on_requests(&mut opts);
    tracing::info!(
        socket = %opts.socket_path.display(),
        config = %opts.config_path.display(),
        servers = opts.config.enabled_servers().count(),
        "stdioproxy listening"
    );
    parts.announce_ready(&opts.config);
    parts.serve_until(opts.watchdog, shutdown).await;
    parts.stop(accept, &opts).await;
    Ok(())
}

impl Parts {
    /// Builds every part; nothing runs yet (the servers start with
    /// `supervisor.start`).
    fn build(opts: &ServeOptions) -> Self {
        let reaper = match Reaper::start() {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(
                    "cannot start the reaper process ({e}); children may outlive a crashed daemon"
                );
                None
            }
        };
        let cache = Arc::new(ToolCache::load(&opts.cache_path));
        cache.spawn_writer();
        let registry = Arc::new(Registry::default());
        let supervisor = Supervisor::new(Shared {
            registry: registry.clone(),
            lists_changed: std::sync::OnceLock::new(),
            reaper,
            cache: Some(cache.clone()),
            max_message: std::sync::atomic::AtomicUsize::new(opts.config.daemon.max_message_size),
            stderr: Arc::new(crate::stderr_ring::StderrLogs::default()),
            pins: Arc::new(parking_lot::Mutex::new(crate::pins::PinStore::open(
                &crate::paths::state_dir().join(crate::pins::FILE_NAME),
            ))),
        });
        let settings = SettingsCell::new(opts.config.daemon.clone());
        let sessions = Arc::new(Slots::default());
        let reloader = Arc::new(Reloader::new(
            supervisor.clone(),
            settings.clone(),
            sessions.clone(),
            opts.config_path.clone(),
            Running::new(opts.config.clone(), opts.config_text.as_deref()),
        ));
        let shutdown_tx = watch::channel(false).0;
        let hub = Arc::new(Hub::new(
            supervisor.clone(),
            registry,
            settings,
            reloader.clone(),
            shutdown_tx.subscribe(),
        ));
        let control = Arc::new(Control::new(
            reloader.clone(),
            supervisor.clone(),
            sessions.clone(),
            opts.socket_path.clone(),
        ));
        Self {
            supervisor,
            reloader,
            handoff: Arc::new(Handoff::new(hub, control, sessions)),
            cache,
            shutdown_tx,
        }
    }

    /// Reloads on every settled config file change (when watched) and on
    /// every outside request.
    fn reload_on_requests(&self, opts: &mut ServeOptions) {
        if opts.config.daemon.watch_config {
            let (check_tx, mut checks) = mpsc::channel(1);
            let debounce = opts.config.daemon.reload_debounce.0;
            let path = opts.config_path.clone();
            tokio::spawn(crate::config::watch::watch(path, debounce, check_tx));
            let reloader = self.reloader.clone();
            tokio::spawn(async move {
                while checks.recv().await.is_some() {
                    let _ = reloader.reload(Trigger::Inotify).await;
                }
            });
        }
        if let Some(mut requests) = opts.reload_requests.take() {
            let reloader = self.reloader.clone();
            tokio::spawn(async move {
                while requests.recv().await.is_some() {
                    let r = reloader.clone();
                    tokio::spawn(async move {
                        let _ = r.reload(Trigger::Signal).await;
                    });
                }
            });
        }
    }

    /// READY=1 once listening and every initial server has been attempted.
    fn announce_ready(&self, config: &Config) {
        let initial_limit = config
            .enabled_servers()
            .map(|(_, s)| s.timeouts().resolve(&config.defaults).startup_timeout)
            .max()
            .unwrap_or_default()
            + Duration::from_secs(1);
        let (supervisor, reloader) = (self.supervisor.clone(), self.reloader.clone());
        tokio::spawn(async move {
            supervisor.wait_attempted(initial_limit).await;
            let status = reloader.status_line();
            crate::systemd::notify_ready(&status);
            tracing::info!(status = %status, "ready");
        });
    }

    /// Pings the watchdog and keeps systemd's STATUS= current until
    /// `shutdown` completes. The watchdog is pinged from this loop, so a
    /// wedged loop stops the pings.
    async fn serve_until(&self, watchdog: Option<Duration>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut watchdog_tick =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        let mut status_tick = tokio::time::interval(Duration::from_secs(2));
        let mut last_status = String::new();
        loop {
            tokio::select! {
                _ = watchdog_tick.tick(), if watchdog.is_some() => crate::systemd::notify_watchdog(),
                _ = status_tick.tick() => {
                    let line = self.reloader.status_line();
                    if line != last_status {
                        crate::systemd::notify_status(&line);
                        last_status = line;
                    }
                }
                () = &mut shutdown => return,
            }
        }
    }

    /// The shutdown order (see the module docs).
    async fn stop(self, accept: JoinHandle<()>, opts: &ServeOptions) {
        tracing::info!("shutting down: stopping sessions and servers");
        crate::systemd::notify_stopping();
        self.shutdown_tx.send_replace(true);
        let _ = accept.await;
        self.supervisor.shutdown().await;
        self.cache.flush();
        if opts.owns_socket_file {
            let _ = std::fs::remove_file(&opts.socket_path);
        }
        // Give session writers a moment to flush their last lines.
        tokio::time::sleep(Duration::from_millis(10)).await;
        tracing::info!("stdioproxy stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shutdown future alone stops a daemon: no signal involved.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_returns_when_its_shutdown_future_completes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run").join("stdioproxy.sock");
        let listener = crate::listener::bind(&socket).expect("bind");
        let opts = ServeOptions {
            config: Config::default(),
            config_text: None,
            config_path: dir.path().join("config.toml"),
            socket_path: socket.clone(),
            owns_socket_file: true,
            watchdog: None,
            reload_requests: None,
            cache_path: dir.path().join("cache").join("tools.json"),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(run(listener, opts, async {
            let _ = stop_rx.await;
        }));
        let path = socket.clone();
        let status = tokio::task::spawn_blocking(move || {
            crate::control::request(&path, "status", Duration::from_secs(20))
        })
        .await
        .expect("join")
        .expect("status");
        assert_eq!(status["sessions"], 0, "{status}");
        assert_eq!(status["servers"], serde_json::json!([]), "{status}");
        stop_tx.send(()).expect("daemon alive");
        tokio::time::timeout(Duration::from_secs(20), daemon)
            .await
            .expect("the daemon stopped")
            .expect("join")
            .expect("run");
        assert!(!socket.exists(), "the socket file was removed");
    }
}
