//! Watching the config file with raw inotify.
//!
//! Editors replace files by rename (vim, `sed -i`, VS Code's atomic save),
//! `cp` and `>` rewrite in place, home-manager re-points a symlink into
//! /nix/store, and the directory may not exist yet. So we never watch the
//! file's inode: we watch its directory and filter by name, plus the
//! grandparent (the directory itself replaced, re-pointed or created), plus
//! the directory of the symlink's target unless it is inside /nix/store
//! (immutable, and watching it wakes on every build). A missing directory is
//! watched through its nearest existing ancestor. Every relevant burst is
//! debounced into one "check" message once events have been quiet for the
//! debounce time; the reload then compares content hashes, so `touch` or a
//! re-pointed symlink with identical content changes nothing. Watches are
//! re-armed after every burst, and a periodic check covers lost events
//! (queue overflow, network filesystems).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// How often the file is checked even without events.
pub const PERIODIC_CHECK: Duration = Duration::from_secs(60);

/// (directory, entry name in it that matters).
type Target = (PathBuf, OsString);

/// The directories to watch for `config`, with the entry name that matters
/// in each.
pub fn plan(config: &Path) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    let parent = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(file) = config.file_name() else {
        return targets;
    };
    push_existing(&mut targets, &parent, file.to_os_string());
    if let (Some(gp), Some(name)) = (parent.parent(), parent.file_name()) {
        let gp = if gp.as_os_str().is_empty() {
            Path::new(".")
        } else {
            gp
        };
        push_existing(&mut targets, gp, name.to_os_string());
    }
    if let Ok(real) = std::fs::canonicalize(config) {
        if !real.starts_with("/nix/store") {
            if let (Some(dir), Some(name)) = (real.parent(), real.file_name()) {
                push_existing(&mut targets, dir, name.to_os_string());
            }
        }
    }
    targets.sort();
    targets.dedup();
    targets
}

/// Adds (dir, name); when `dir` does not exist, watches its nearest existing
/// ancestor for the creation of the next path component instead.
fn push_existing(targets: &mut Vec<Target>, dir: &Path, name: OsString) {
    let mut dir = dir.to_path_buf();
    let mut name = name;
    while !dir.is_dir() {
        let (Some(up), Some(component)) = (dir.parent(), dir.file_name()) else {
            return;
        };
        name = component.to_os_string();
        dir = if up.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            up.to_path_buf()
        };
    }
    if !dir.starts_with("/nix/store") {
        targets.push((dir, name));
    }
}

struct Armed {
    names: HashMap<WatchDescriptor, Vec<OsString>>,
    /// Watches we removed ourselves: their IGNORED events are not news.
    retired: HashSet<WatchDescriptor>,
}

impl Armed {
    fn arm(&mut self, watches: &mut Watches, config: &Path) {
        for wd in self.names.keys().cloned().collect::<Vec<_>>() {
            if watches.remove(wd.clone()).is_ok() {
                self.retired.insert(wd);
            }
        }
        self.names.clear();
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ATTRIB;
        for (dir, name) in plan(config) {
            match watches.add(&dir, mask) {
                Ok(wd) => {
                    self.retired.remove(&wd);
                    self.names.entry(wd).or_default().push(name);
                }
                Err(e) => tracing::debug!(dir = %dir.display(), "cannot watch: {e}"),
            }
        }
    }

    fn relevant(&mut self, wd: &WatchDescriptor, mask: EventMask, name: Option<&OsString>) -> bool {
        if mask.contains(EventMask::Q_OVERFLOW) {
            return true;
        }
        if mask.contains(EventMask::IGNORED) {
            // Ours (from re-arming) is noise; anyone else's means a watched
            // directory went away.
            return !self.retired.remove(wd) && self.names.contains_key(wd);
        }
        let Some(names) = self.names.get(wd) else {
            return false;
        };
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
            return true;
        }
        name.is_some_and(|n| names.contains(n))
    }
}

/// Watches `config` until the receiver of `tx` is gone, sending `()` after
/// every settled burst of relevant events and every [`PERIODIC_CHECK`].
pub async fn watch(config: PathBuf, debounce: Duration, tx: mpsc::Sender<()>) {
    let inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("cannot use inotify ({e}); the config is reloaded only on SIGHUP and `stdioproxy reload`");
            return;
        }
    };
    let mut stream = match inotify.into_event_stream(vec![0u8; 16 * 1024]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot read inotify events ({e}); the config is reloaded only on SIGHUP and `stdioproxy reload`");
            return;
        }
    };
    let mut watches = stream.watches();
    let mut armed = Armed {
        names: HashMap::new(),
        retired: HashSet::new(),
    };
    armed.arm(&mut watches, &config);
    tracing::debug!(config = %config.display(), watches = armed.names.len(), "watching the config");
    loop {
        // Wait for the first relevant event (or the periodic check).
        let first = tokio::select! {
            ev = stream.next() => ev,
            _ = tokio::time::sleep(PERIODIC_CHECK) => {
                if tx.send(()).await.is_err() { return; }
                armed.arm(&mut watches, &config);
                continue;
            }
        };
        match first {
            None => return,
            Some(Err(e)) => {
                tracing::warn!("inotify read failed: {e}");
                continue;
            }
            Some(Ok(ev)) => {
                if !armed.relevant(&ev.wd, ev.mask, ev.name.as_ref()) {
                    continue;
                }
            }
        }
        // Debounce: wait until events have been quiet for `debounce`.
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    None => return,
                    Some(Ok(ev)) => { let _ = armed.relevant(&ev.wd, ev.mask, ev.name.as_ref()); }
                    Some(Err(_)) => {}
                },
                _ = tokio::time::sleep(debounce) => break,
            }
        }
        armed.arm(&mut watches, &config);
        if tx.send(()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parent_grandparent_and_missing_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let cfg = base.join("conf/stdioproxy/config.toml");
        // Nothing exists below base: watch base for "conf".
        assert_eq!(plan(&cfg), vec![(base.clone(), OsString::from("conf"))]);
        std::fs::create_dir_all(base.join("conf/stdioproxy")).unwrap();
        let p = plan(&cfg);
        assert!(
            p.contains(&(base.join("conf/stdioproxy"), OsString::from("config.toml"))),
            "{p:?}"
        );
        assert!(
            p.contains(&(base.join("conf"), OsString::from("stdioproxy"))),
            "{p:?}"
        );
        // A symlink to a file elsewhere adds the target's directory.
        std::fs::create_dir_all(base.join("dotfiles")).unwrap();
        std::fs::write(base.join("dotfiles/sp.toml"), "").unwrap();
        std::os::unix::fs::symlink(base.join("dotfiles/sp.toml"), &cfg).unwrap();
        let p = plan(&cfg);
        assert!(
            p.contains(&(base.join("dotfiles"), OsString::from("sp.toml"))),
            "{p:?}"
        );
    }
}
