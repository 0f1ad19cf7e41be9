//! The on-disk list cache (`$XDG_CACHE_HOME/stdioproxy/tools.json`).
//!
//! Clients that connect at login, while servers are still starting, would see
//! an empty catalog. The daemon therefore remembers each server's last lists
//! (tools, prompts, resources, templates) and capabilities, and serves them
//! until the server is ready; calls made meanwhile wait for the server. An entry is used only while the server's command, args and cwd
//! are unchanged (env is left out of the key so that secrets are never hashed
//! into a file, and because env rarely changes which tools exist). The file is
//! rewritten whole (temp file + rename, mode 0600) by a writer task at most
//! every [`WRITE_DELAY`] after a change, off the async threads, so fifty
//! servers starting at once cost one write, not fifty; it is flushed at
//! shutdown.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Lists, RawItem};
use crate::config::ServerConfig;
use crate::names::fnv1a64;

#[derive(Default, Serialize, Deserialize)]
struct File {
    servers: BTreeMap<String, Entry>,
    /// Era verdicts of `era = "auto"` servers, by
    /// [`crate::era::child::verdict_key`], so later starts skip the probe.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    eras: BTreeMap<String, crate::era::Era>,
}

/// One server's entry. The lists' members sit next to `key` (the shape of
/// the first cache files, which had only `tools`); not `#[serde(flatten)]`,
/// which cannot carry raw JSON values.
#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    key: String,
    #[serde(default)]
    tools: Vec<RawItem>,
    #[serde(default)]
    prompts: Vec<RawItem>,
    #[serde(default)]
    resources: Vec<RawItem>,
    #[serde(default)]
    resource_templates: Vec<RawItem>,
    #[serde(default)]
    capabilities: Value,
}

impl Entry {
    /// True when the entry already holds exactly these lists.
    fn holds(&self, lists: &Lists) -> bool {
        self.tools == lists.tools
            && self.prompts == lists.prompts
            && self.resources == lists.resources
            && self.resource_templates == lists.resource_templates
    }

    fn lists(&self) -> Lists {
        Lists {
            tools: self.tools.clone(),
            prompts: self.prompts.clone(),
            resources: self.resources.clone(),
            resource_templates: self.resource_templates.clone(),
        }
    }
}

/// What the cache remembers of a server.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedServer {
    /// Its lists.
    pub lists: Lists,
    /// Its capabilities (from its last initialize).
    pub capabilities: Value,
}

/// How long the writer waits after a change before writing, so a burst of
/// changes is one write.
pub const WRITE_DELAY: Duration = Duration::from_millis(500);

/// The cache, loaded once at start.
pub struct ToolCache {
    path: PathBuf,
    file: Mutex<File>,
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
}

/// The cache key of a server's config.
pub fn spec_key(spec: &ServerConfig) -> String {
    let mut text = spec.command.0.clone();
    for a in &spec.args {
        text.push('\0');
        text.push_str(a);
    }
    text.push_str("\0cwd=");
    text.push_str(spec.cwd.as_deref().unwrap_or(""));
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

impl ToolCache {
    /// Loads the cache at `path`; a missing or unreadable file is an empty
    /// cache (with a warning when it exists but cannot be used).
    pub fn load(path: &Path) -> Self {
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "ignoring an unreadable tool cache: {e}");
                File::default()
            }),
            Err(_) => File::default(),
        };
        Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            dirty: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Starts the task that writes the file after changes. Must be called
    /// inside a tokio runtime.
    pub fn spawn_writer(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        let wake = self.clone();
        tokio::spawn(async move {
            loop {
                wake.wake.notified().await;
                tokio::time::sleep(WRITE_DELAY).await;
                let Some(c) = cache.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || c.flush()).await;
            }
        });
    }

    /// Writes the file now if anything changed since the last write.
    pub fn flush(&self) {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let text = match serde_json::to_vec(&*self.lock()) {
            Ok(t) => t,
            Err(_) => return,
        };
        if let Err(e) = write_private(&self.path, &text) {
            tracing::warn!(path = %self.path.display(), "cannot write the tool cache: {e}");
        }
    }

    /// The default location.
    pub fn default_path() -> PathBuf {
        crate::paths::cache_dir().join("tools.json")
    }

    /// What is cached for `server`, if cached for this `key`.
    pub fn get(&self, server: &str, key: &str) -> Option<CachedServer> {
        let file = self.lock();
        let e = file.servers.get(server)?;
        (e.key == key).then(|| CachedServer {
            lists: e.lists(),
            capabilities: e.capabilities.clone(),
        })
    }

    /// Records a server's lists and capabilities; the writer task writes the
    /// file soon when they changed.
    pub fn put(&self, server: &str, key: &str, lists: &Lists, capabilities: &Value) {
        {
            let mut file = self.lock();
            if let Some(e) = file.servers.get(server) {
                if e.key == key && e.holds(lists) && e.capabilities == *capabilities {
                    return;
                }
            }
            file.servers.insert(
                server.to_string(),
                Entry {
                    key: key.to_string(),
                    tools: lists.tools.clone(),
                    prompts: lists.prompts.clone(),
                    resources: lists.resources.clone(),
                    resource_templates: lists.resource_templates.clone(),
                    capabilities: capabilities.clone(),
                },
            );
        }
        self.dirty.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The era verdict cached under `key`.
    pub fn era(&self, key: &str) -> Option<crate::era::Era> {
        self.lock().eras.get(key).copied()
    }

    /// Records an era verdict; written soon.
    pub fn set_era(&self, key: &str, era: crate::era::Era) {
        if self.lock().eras.insert(key.to_string(), era) == Some(era) {
            return;
        }
        self.dirty.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, File> {
        self.file.lock()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roundtrips_and_checks_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tools.json");
        let spec = ServerConfig::new("npx");
        let key = spec_key(&spec);
        let c = ToolCache::load(&path);
        assert!(c.get("a", &key).is_none());
        let lists = Lists {
            // A number no f64 holds survives the round trip.
            tools: vec![RawItem(
                serde_json::value::RawValue::from_string(r#"{"name":"x","maximum":1e999}"#.into())
                    .unwrap(),
            )],
            prompts: vec![RawItem::from_value(&json!({"name": "p"}))],
            ..Lists::default()
        };
        let caps = json!({"tools": {}, "prompts": {}});
        c.put("a", &key, &lists, &caps);
        assert!(
            !path.exists(),
            "written by the writer task or a flush, not by put"
        );
        c.flush();
        let c2 = ToolCache::load(&path);
        let got = c2.get("a", &key).unwrap();
        assert_eq!((got.lists, got.capabilities), (lists, caps));
        assert!(c2.get("a", "other").is_none());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A cache written before prompts and capabilities were kept.
        std::fs::write(
            &path,
            r#"{"servers":{"a":{"key":"k","tools":[{"name":"old"}]}}}"#,
        )
        .unwrap();
        let old = ToolCache::load(&path).get("a", "k").unwrap();
        assert_eq!(
            old.lists.tools,
            vec![RawItem::from_value(&json!({"name": "old"}))]
        );
        assert!(old.lists.prompts.is_empty() && old.capabilities.is_null());
        let mut other = ServerConfig::new("npx");
        other.args.push("-y".into());
        assert_ne!(spec_key(&other), key);
    }
}
