//! Config reload: parse -> validate -> diff -> apply, whatever triggered it
//! (inotify, SIGHUP, or the `reload` control request).
//!
//! The [`Reloader`] owns everything a reload touches besides the servers:
//! the running config (whose async lock serialises reloads), the settings
//! cell it replaces, and the last outcome shown in `status`. It takes the
//! supervisor to apply a diff, so a config change flows one way: trigger ->
//! reloader -> supervisor -> catalog -> sessions.
//!
//! An invalid config (syntax,
//! unknown keys, bad values, unsafe permissions) or a deleted file changes
//! nothing that runs: the error is logged with file:line:column and stays in
//! `status` until a valid config arrives. A reload whose file content is
//! byte-identical to the running one is skipped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::{self, Config, ConfigDiff, DaemonSettings, SettingsCell};
use crate::names::fnv1a64;
use crate::slots::Slots;
use crate::supervisor::Supervisor;
use crate::upstream::State;

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The config file changed on disk.
    Inotify,
    /// SIGHUP (also what systemd's reload sends).
    Signal,
    /// `stdioproxy reload`.
    Control,
    /// A client called the built-in `stdioproxy__reload` tool.
    Tool,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Inotify => "config file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Control => "stdioproxy reload",
            Trigger::Tool => "the stdioproxy__reload tool",
        })
    }
}

/// The config the daemon runs, and the hash of the text it came from.
pub struct Running {
    /// The config.
    pub config: Config,
    /// FNV-1a of the file's text (0 when it came from no file).
    pub text_hash: u64,
}

impl Running {
    /// What the daemon started with.
    pub fn new(config: Config, text: Option<&str>) -> Self {
        Self {
            config,
            text_hash: text.map_or(0, |t| fnv1a64(t.as_bytes())),
        }
    }
}

/// The outcome of the last reload, for `status`.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadRecord {
    /// When it finished (unix seconds).
    pub at_unix: u64,
    /// What triggered it.
    pub trigger: Trigger,
    /// `applied`, `unchanged` or `error`.
    pub result: &'static str,
    /// The diff summary, or the error.
    pub detail: String,
}

/// Owns the reload state and applies reloads through the supervisor.
pub struct Reloader {
    supervisor: Arc<Supervisor>,
    settings: SettingsCell,
    /// Open sessions, for the status line.
    sessions: Arc<Slots>,
    config_path: PathBuf,
    /// The running config; its lock serialises reloads.
    running: tokio::sync::Mutex<Running>,
    config_error: Mutex<Option<String>>,
    last_reload: Mutex<Option<ReloadRecord>>,
}

impl Reloader {
    /// A reloader for the config at `config_path`, which runs `running` now.
    /// Applies `running`'s settings (into `settings` and the supervisor), so
    /// call it before the supervisor starts the servers.
    pub fn new(
        supervisor: Arc<Supervisor>,
        settings: SettingsCell,
        sessions: Arc<Slots>,
        config_path: PathBuf,
        running: Running,
    ) -> Self {
        let initial = running.config.daemon.clone();
        let reloader = Self {
            supervisor,
            settings,
            sessions,
            config_path,
            running: tokio::sync::Mutex::new(running),
            config_error: Mutex::new(None),
            last_reload: Mutex::new(None),
        };
        reloader.apply_settings(initial);
        reloader
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The current config problem, if the file on disk is not what runs.
    pub fn config_error(&self) -> Option<String> {
        self.config_error.lock().clone()
    }

    /// The last reload's outcome.
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload.lock().clone()
    }

    /// One line for systemd's STATUS=: "3/4 servers ready, 2 clients".
    pub fn status_line(&self) -> String {
        let servers = self.supervisor.status();
        let ready = servers.iter().filter(|s| s.state == State::Ready).count();
        let idle = servers.iter().filter(|s| s.state == State::Idle).count();
        let sessions = self.sessions.taken();
        let mut line = format!(
            "{ready}/{} servers ready, {sessions} client{}",
            servers.len(),
            if sessions == 1 { "" } else { "s" }
        );
        if idle > 0 {
            // Lazy, idle-stopped or per-client/per-workspace servers: they
            // start on demand.
            line.push_str(&format!(", {idle} idle until used"));
        }
        if self.config_error().is_some() {
            line.push_str("; config error (see stdioproxy status)");
        }
        line
    }

    /// Replaces the daemon-wide settings, and what the supervisor derives
    /// from them (the message limit for new children, the built-in tools).
    fn apply_settings(&self, settings: DaemonSettings) {
        self.supervisor.set_max_message(settings.max_message_size);
        self.supervisor
            .set_builtin_tools(crate::builtin::tools(&settings));
        self.settings.set(settings);
    }

    /// Reloads the config. Returns the applied diff, or the reason nothing
    /// was applied.
    pub async fn reload(&self, trigger: Trigger) -> Result<ConfigDiff, String> {
        let mut running = self.running.lock().await;
        crate::systemd::notify_reloading();
        let outcome = self.load_and_apply(&mut running, trigger).await;
        let (result, detail) = match &outcome {
            Ok(Some(d)) => ("applied", d.summary()),
            Ok(None) => ("unchanged", "no changes".to_string()),
            Err(e) => ("error", e.clone()),
        };
        *self.config_error.lock() = outcome.as_ref().err().cloned();
        *self.last_reload.lock() = Some(ReloadRecord {
            at_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            trigger,
            result,
            detail,
        });
        crate::systemd::notify_ready(&self.status_line());
        outcome.map(Option::unwrap_or_default)
    }

    /// Loads the file; when it differs from what runs, applies it. `None`:
    /// the content is unchanged.
    async fn load_and_apply(
        &self,
        running: &mut Running,
        trigger: Trigger,
    ) -> Result<Option<ConfigDiff>, String> {
        let path = &self.config_path;
        let (new, text) = match config::load(path) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                let msg = format!(
                    "{} does not exist; still running the previous config (restore the file, or empty it to run no servers)",
                    path.display()
                );
                tracing::warn!(trigger = %trigger, "{msg}");
                return Err(msg);
            }
            Err(e) => {
                tracing::error!(trigger = %trigger, "invalid config, nothing changed: {e}");
                return Err(e.to_string());
            }
        };
        let hash = fnv1a64(text.as_bytes());
        if hash == running.text_hash {
            tracing::debug!(trigger = %trigger, "config content unchanged; nothing to do");
            return Ok(None);
        }
        let d = config::diff(&running.config, &new);
        tracing::info!(trigger = %trigger, changes = %d.summary(), "reloading config");
        // Settings first, so the catalog that apply() publishes has the
        // built-in tools the new settings ask for.
        self.apply_settings(new.daemon.clone());
        self.supervisor.apply(&new, &d).await;
        *running = Running {
            config: new,
            text_hash: hash,
        };
        tracing::info!(trigger = %trigger, changes = %d.summary(), "config reloaded");
        Ok(Some(d))
    }
}
