//! Where things live: the config file, the daemon's socket, its cache and
//! state directories.
//!
//! The same resolution rules are used by `stdioproxy serve`, every control
//! subcommand and `stdioproxy-shim`, so a client and the daemon always agree
//! without configuration. This module is std-only on purpose: the shim links it
//! and must stay small.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable overriding the config file location.
pub const CONFIG_ENV: &str = "STDIOPROXY_CONFIG";
/// Environment variable overriding the socket location.
pub const SOCKET_ENV: &str = "STDIOPROXY_SOCKET";

fn non_empty_env(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The user's home directory, from `$HOME`.
pub fn home_dir() -> Option<PathBuf> {
    non_empty_env("HOME")
}

/// `--config PATH`, else `$STDIOPROXY_CONFIG`, else
/// `$XDG_CONFIG_HOME/stdioproxy/config.toml` (`~/.config/...` when unset).
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = non_empty_env(CONFIG_ENV) {
        return p;
    }
    let base = non_empty_env("XDG_CONFIG_HOME")
        .or_else(|| home_dir().map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("stdioproxy").join("config.toml")
}

/// `--socket PATH`, else `$STDIOPROXY_SOCKET`, else
/// `$XDG_RUNTIME_DIR/stdioproxy/stdioproxy.sock`; with no runtime dir, a
/// private directory under the temp dir keyed by uid.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = non_empty_env(SOCKET_ENV) {
        return p;
    }
    if let Some(run) = non_empty_env("XDG_RUNTIME_DIR") {
        return run.join("stdioproxy").join("stdioproxy.sock");
    }
    let uid = nix::unistd::getuid();
    env::temp_dir()
        .join(format!("stdioproxy-{uid}"))
        .join("stdioproxy.sock")
}

/// Expands a leading `~` or `~/` to `$HOME`; other paths are returned as is.
pub fn expand_tilde(path: &str) -> PathBuf {
    if path == "~" {
        if let Some(h) = home_dir() {
            return h;
        }
    } else if let Some(rest) = path.strip_prefix("~/") {
        if let Some(h) = home_dir() {
            return h.join(rest);
        }
    }
    PathBuf::from(path)
}

/// The XDG cache directory for stdioproxy (`$XDG_CACHE_HOME/stdioproxy`).
pub fn cache_dir() -> PathBuf {
    non_empty_env("XDG_CACHE_HOME")
        .or_else(|| home_dir().map(|h| h.join(".cache")))
        .unwrap_or_else(env::temp_dir)
        .join("stdioproxy")
}

/// The XDG state directory for stdioproxy (`$XDG_STATE_HOME/stdioproxy`,
/// `~/.local/state/stdioproxy` when unset): what must survive restarts and
/// is not a cache (pinned tool definitions).
pub fn state_dir() -> PathBuf {
    non_empty_env("XDG_STATE_HOME")
        .or_else(|| home_dir().map(|h| h.join(".local").join("state")))
        .unwrap_or_else(env::temp_dir)
        .join("stdioproxy")
}
