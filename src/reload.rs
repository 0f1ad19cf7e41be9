//! Config reload: parse -> validate -> diff -> apply, whatever triggered it
//! (inotify, SIGHUP, or the `reload` control request).
//!
//! Reloads are serialised by one async lock. An invalid config (syntax,
//! unknown keys, bad values, unsafe permissions) or a deleted file changes
//! nothing that runs: the error is logged with file:line:column and stays in
//! `status` until a valid config arrives. A reload whose file content is
//! byte-identical to the running one is skipped.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{self, Config, ConfigDiff};
use crate::daemon::Daemon;
use crate::names::fnv1a64;

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

/// Reloads the config. Returns the applied diff, or the reason nothing was
/// applied.
pub async fn reload(daemon: &Daemon, trigger: Trigger) -> Result<ConfigDiff, String> {
    let mut running = daemon.running.lock().await;
    crate::systemd::notify_reloading();
    let path = daemon.config_path.clone();
    let outcome = match config::load(&path) {
        Ok(None) => {
            let msg = format!(
                "{} does not exist; still running the previous config (restore the file, or empty it to run no servers)",
                path.display()
            );
            tracing::warn!(trigger = %trigger, "{msg}");
            Err(msg)
        }
        Err(e) => {
            tracing::error!(trigger = %trigger, "invalid config, nothing changed: {e}");
            Err(e.to_string())
        }
        Ok(Some((new, text))) => {
            let hash = fnv1a64(text.as_bytes());
            if hash == running.text_hash {
                tracing::debug!(trigger = %trigger, "config content unchanged; nothing to do");
                Ok(None)
            } else {
                let d = config::diff(&running.config, &new);
                tracing::info!(trigger = %trigger, changes = %d.summary(), "reloading config");
                // Settings first, so the catalog that apply() publishes has
                // the built-in tools the new settings ask for.
                daemon.set_settings(new.daemon.clone());
                daemon.supervisor.apply(&new, &d).await;
                *running = Running {
                    config: new,
                    text_hash: hash,
                };
                tracing::info!(trigger = %trigger, changes = %d.summary(), "config reloaded");
                Ok(Some(d))
            }
        }
    };
    let (result, detail) = match &outcome {
        Ok(Some(d)) => ("applied", d.summary()),
        Ok(None) => ("unchanged", "no changes".to_string()),
        Err(e) => ("error", e.clone()),
    };
    daemon.set_config_error(outcome.as_ref().err().cloned());
    daemon.record_reload(ReloadRecord {
        at_unix: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        trigger,
        result,
        detail,
    });
    crate::systemd::notify_ready(&daemon.status_line());
    outcome.map(Option::unwrap_or_default)
}
