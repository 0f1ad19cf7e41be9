//! Where things live: the config file, the daemon's socket, its cache and
//! state directories.
//!
//! The same resolution rules are used by `stdioproxy serve`, every control
//! subcommand and `stdioproxy-shim`, so a client and the daemon always agree
//! without configuration. This module needs nothing but std (and `nix` for
//! the uid) on purpose: the shim links it and must stay small.

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

/// The program to start for a server's `command`.
///
/// A command with a `/` is used as written (relative to the daemon's working
/// directory). A bare name is looked up on the daemon's `PATH` as usual and,
/// when it is not there, next to the running stdioproxy binary: programs
/// installed with stdioproxy (and this repository's demo server, in
/// whatever `CARGO_TARGET_DIR` cargo built it) are found without a path.
pub fn resolve_program(command: &str) -> PathBuf {
    resolve_program_in(command, env::var_os("PATH"), current_exe_dir())
}

fn current_exe_dir() -> Option<PathBuf> {
    let exe = env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent().map(Path::to_path_buf)
}

fn resolve_program_in(
    command: &str,
    path: Option<std::ffi::OsString>,
    exe_dir: Option<PathBuf>,
) -> PathBuf {
    if command.contains('/') || command.is_empty() {
        return PathBuf::from(command);
    }
    let on_path = path
        .as_deref()
        .is_some_and(|p| env::split_paths(p).any(|dir| is_executable(&dir.join(command))));
    if !on_path {
        if let Some(candidate) = exe_dir.map(|d| d.join(command)) {
            if is_executable(&candidate) {
                return candidate;
            }
        }
    }
    PathBuf::from(command)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod program_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bare_names_fall_back_to_the_binary_s_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        let exe_dir = dir.path().join("exe");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::create_dir_all(&exe_dir).expect("mkdir");
        for p in [bin.join("both"), exe_dir.join("both"), exe_dir.join("mine")] {
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(exe_dir.join("data"), "").expect("write");
        let resolve =
            |c: &str| resolve_program_in(c, Some(bin.clone().into()), Some(exe_dir.clone()));
        // PATH first, as always.
        assert_eq!(resolve("both"), PathBuf::from("both"));
        assert_eq!(resolve("mine"), exe_dir.join("mine"));
        // Not executable, or not anywhere: left for the spawn to report.
        assert_eq!(resolve("data"), PathBuf::from("data"));
        assert_eq!(resolve("nowhere"), PathBuf::from("nowhere"));
        // Paths are never rewritten.
        assert_eq!(resolve("./mine"), PathBuf::from("./mine"));
        assert_eq!(resolve("/x/mine"), PathBuf::from("/x/mine"));
    }
}
