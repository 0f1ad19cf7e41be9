//! Which era to speak with a server's child: from the config (`era =
//! "legacy" | "modern"`), else the cached verdict for its command, args,
//! cwd and env, else a probe: `server/discover` to a throwaway spawn of the
//! child (see [`crate::era::probe`]), which is then stopped. The verdict is
//! cached (unless the probe got no answer at all, which a slow start looks
//! like too), and corrected when a legacy handshake is refused with -32022
//! naming a modern revision (a modern server that answered the probe too
//! slowly).

use std::time::Duration;

use tokio::io::BufReader;

use serde_json::Value;

use super::{process, InitInfo, Upstream};
use crate::catalog::ListKind;
use crate::config::EraSetting;
use crate::era::child::{discovered, verdict_key};
use crate::era::decorate::CacheHint;
use crate::era::probe::{probe, Verdict};
use crate::era::Era;

fn hint_slot(kind: ListKind) -> usize {
    match kind {
        ListKind::Tools => 0,
        ListKind::Prompts => 1,
        ListKind::Resources => 2,
        ListKind::Templates => 3,
    }
}
use crate::error::UpstreamError;
use crate::wire::{Connection, Reply};

/// Where an era verdict came from (for `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EraSource {
    /// `era = "legacy" | "modern"` in the config.
    Config,
    /// The on-disk cache of earlier probes.
    Cache,
    /// A probe of this daemon.
    Probe,
    /// A legacy handshake refused with -32022 naming a modern revision.
    Handshake,
}

impl EraSource {
    /// Lower-case name, as in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            EraSource::Config => "config",
            EraSource::Cache => "cache",
            EraSource::Probe => "probe",
            EraSource::Handshake => "handshake",
        }
    }
}

impl Upstream {
    /// The era to speak with the next instance of the child.
    pub(super) async fn child_era(&self) -> (Era, EraSource) {
        let spec = self.spec();
        let known = match spec.era {
            EraSetting::Legacy => Some((Era::Legacy, EraSource::Config)),
            EraSetting::Modern => Some((Era::Modern, EraSource::Config)),
            EraSetting::Auto => self.era_known().or_else(|| {
                let key = verdict_key(&spec);
                let cached = self.shared.cache.as_ref().and_then(|c| c.era(&key));
                cached.map(|e| (e, EraSource::Cache))
            }),
        };
        if let Some((era, source)) = known {
            self.lock().era = Some((era, source));
            return (era, source);
        }
        // As long as a start may take: a slow start is not a legacy server.
        let limit = self.timeouts().startup_timeout;
        let workspace = self.workspace_dir();
        let verdict = match process::spawn(&spec, workspace.as_deref(), &self.instance_vars()) {
            Ok(mut child) => {
                let pid = child.pid;
                if let Some(r) = &self.shared.reaper {
                    r.track(pid);
                }
                let v = match (child.stdin.take(), child.stdout.take()) {
                    (Some(stdin), Some(stdout)) => {
                        probe(stdin, BufReader::new(stdout), 1 << 20, limit).await
                    }
                    _ => Verdict::Legacy("the probe's pipes were not created".into()),
                };
                process::kill(&mut child.child, pid).await;
                if let Some(r) = &self.shared.reaper {
                    r.untrack(pid);
                }
                v
            }
            // The real spawn will fail the same way and report it.
            Err(_) => return (Era::Legacy, EraSource::Probe),
        };
        let era = match &verdict {
            Verdict::Modern(_) => Era::Modern,
            Verdict::Legacy(why) => {
                tracing::info!(server = %self.name, "server speaks the legacy era: {why}");
                Era::Legacy
            }
            Verdict::Silent(why) => {
                // Legacy for this daemon, but not cached: it may only have
                // been slow (the next daemon probes again).
                tracing::info!(server = %self.name, "taking the server for a legacy one: {why}");
                self.lock().era = Some((Era::Legacy, EraSource::Probe));
                return (Era::Legacy, EraSource::Probe);
            }
        };
        tracing::info!(server = %self.name, era = era.as_str(), "probed the server's era");
        self.record_era(era, EraSource::Probe);
        (era, EraSource::Probe)
    }

    /// Remembers a verdict (for this daemon, and in the cache when probed).
    pub(super) fn record_era(&self, era: Era, source: EraSource) {
        self.lock().era = Some((era, source));
        if matches!(source, EraSource::Probe | EraSource::Handshake) {
            if let Some(c) = &self.shared.cache {
                c.set_era(&verdict_key(&self.spec()), era);
            }
        }
    }

    /// The modern handshake: `server/discover` (the connection adds the
    /// envelope), read as an initialize result would be.
    pub(super) async fn discover(&self, conn: &Connection) -> Result<InitInfo, UpstreamError> {
        let forever = Duration::from_secs(24 * 3600);
        let result = match conn.request("server/discover", None, forever).await? {
            Reply::Result(r) => r,
            Reply::Error(e) => return Err(UpstreamError::Rpc(e.get().to_string())),
        };
        let v: Value = serde_json::from_str(result.get())
            .map_err(|e| UpstreamError::Protocol(format!("discover result: {e}")))?;
        let d = discovered(&v).map_err(UpstreamError::Protocol)?;
        Ok(InitInfo {
            protocol_version: d.protocol_version,
            capabilities: d.capabilities,
            server_info: d.server_info,
            instructions: d.instructions,
        })
    }

    /// A legacy `initialize` refused with -32022 naming a modern revision:
    /// the child is modern after all (it answered the probe too late, or
    /// was configured `legacy` wrongly, which is kept); the next start
    /// speaks modern.
    pub(super) fn refused_initialize(&self, error: &str) {
        if self.spec().era != EraSetting::Auto {
            return;
        }
        let offers_modern = serde_json::from_str::<Value>(error).ok().is_some_and(|e| {
            e.get("code").and_then(Value::as_i64) == Some(crate::era::code::UNSUPPORTED_VERSION)
                && e.pointer("/data/supported")
                    .and_then(Value::as_array)
                    .is_some_and(|v| {
                        v.iter()
                            .any(|v| v.as_str() == Some(crate::era::MODERN_VERSION))
                    })
        });
        if offers_modern {
            tracing::info!(server = %self.name, "the server refused initialize for 2026-07-28; speaking modern from the next start");
            self.record_era(Era::Modern, EraSource::Handshake);
        }
    }

    /// Keeps a modern child's cache hint for its list of `kind`.
    pub(super) fn set_list_hint(&self, kind: ListKind, hint: CacheHint) {
        self.lock().list_hints[hint_slot(kind)] = Some(hint);
    }

    /// The cache hint of this server's list of `kind`: a modern child's,
    /// else [`CacheHint::UNKNOWN`] (a legacy child gives none).
    pub fn list_hint(&self, kind: ListKind) -> CacheHint {
        self.lock().list_hints[hint_slot(kind)].unwrap_or(CacheHint::UNKNOWN)
    }

    fn era_known(&self) -> Option<(Era, EraSource)> {
        self.lock().era
    }

    /// The era of the server's child, once known.
    pub fn era(&self) -> Option<Era> {
        self.era_known().map(|(e, _)| e)
    }
}
