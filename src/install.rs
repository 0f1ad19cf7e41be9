//! `stdioproxy install`: writes the systemd user units for a binary
//! that was not installed by a package (cargo install, a release tarball).
//!
//! The unit files are the ones in the repository's `systemd/` directory,
//! embedded at build time, so what gets installed is exactly what the
//! repository's `systemd-analyze verify` test checks. Only the program path
//! changes: `/usr/bin/stdioproxy` becomes the running binary's path, quoted
//! for systemd when needed. systemd < 253 does not know
//! `Type=notify-reload`; [`systemd_version`] lets the CLI pick the legacy
//! service (`Type=notify` + `ExecReload=`) there.
//!
//! Enabling and starting the units (`systemctl --user daemon-reload`,
//! `enable --now stdioproxy.socket`) is left to the CLI or the person, so
//! that this module never touches a running service manager.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The service for systemd >= 253 (`Type=notify-reload`).
pub const SERVICE_UNIT: &str = include_str!("../systemd/stdioproxy.service");
/// The service for systemd < 253 (`Type=notify` + `ExecReload=`).
pub const LEGACY_SERVICE_UNIT: &str = include_str!("../systemd/legacy/stdioproxy.service");
/// The socket unit.
pub const SOCKET_UNIT: &str = include_str!("../systemd/stdioproxy.socket");

/// The first systemd version with `Type=notify-reload`.
pub const NOTIFY_RELOAD_MIN_VERSION: u32 = 253;

/// The program path written in the unit files in the repository.
const PLACEHOLDER_EXE: &str = "/usr/bin/stdioproxy";

/// Writes `stdioproxy.service` (the legacy variant when `legacy`) and
/// `stdioproxy.socket` into `unit_dir` (created if needed), with the daemon
/// started as `<exe> serve`. Returns the paths written. Existing files are
/// replaced atomically.
pub fn install_units(exe: &Path, unit_dir: &Path, legacy: bool) -> io::Result<Vec<PathBuf>> {
    let service = if legacy {
        LEGACY_SERVICE_UNIT
    } else {
        SERVICE_UNIT
    };
    let service = rewrite_exe(service, exe)?;
    let socket = rewrite_exe(SOCKET_UNIT, exe)?;
    fs::create_dir_all(unit_dir)?;
    let mut written = Vec::new();
    for (name, text) in [
        ("stdioproxy.service", service),
        ("stdioproxy.socket", socket),
    ] {
        let path = unit_dir.join(name);
        write_file(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}

/// Rewrites a unit text for the binary at `exe`: `ExecStart=` becomes
/// `<exe> serve`, and any other `/usr/bin/stdioproxy` becomes `<exe>`.
fn rewrite_exe(unit: &str, exe: &Path) -> io::Result<String> {
    let quoted = exec_path(exe)?;
    let mut out = String::with_capacity(unit.len() + 64);
    for line in unit.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        if body.trim_start().starts_with("ExecStart=") {
            out.push_str(&format!("ExecStart={quoted} serve{ending}"));
        } else {
            out.push_str(&body.replace(PLACEHOLDER_EXE, &quoted));
            out.push_str(ending);
        }
    }
    Ok(out)
}

/// `exe` as the first word of a systemd command line: absolute, valid UTF-8,
/// with `%` and `$` escaped (specifiers and variables), and double-quoted
/// when it contains whitespace, quotes or backslashes.
fn exec_path(exe: &Path) -> io::Result<String> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot use {} in a unit file: {why}", exe.display()),
        )
    };
    if !exe.is_absolute() {
        return Err(invalid("the path must be absolute"));
    }
    let s = exe.to_str().ok_or_else(|| invalid("not valid UTF-8"))?;
    if s.chars().any(|c| c.is_control()) {
        return Err(invalid("it contains control characters"));
    }
    let escaped = s.replace('%', "%%").replace('$', "$$");
    if escaped
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        let inner = escaped.replace('\\', "\\\\").replace('"', "\\\"");
        Ok(format!("\"{inner}\""))
    } else {
        Ok(escaped)
    }
}

/// Unit files are public configuration (systemd's own are 0644).
const UNIT_MODE: u32 = 0o644;

/// Replaced atomically, so systemd never reads half a unit.
fn write_file(path: &Path, text: &str) -> io::Result<()> {
    crate::atomic_file::write(path, text.as_bytes(), UNIT_MODE)
}

/// The version of the installed systemd (from `systemctl --version`), or
/// `None` when `systemctl` cannot be run or says something unexpected. Does
/// not need a running service manager.
pub fn systemd_version() -> Option<u32> {
    let output = Command::new("systemctl")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_systemd_version(&String::from_utf8_lossy(&output.stdout))
}

/// Parses the first line of `systemctl --version`: `systemd 252 (252.38-1~deb12u1)`.
fn parse_systemd_version(text: &str) -> Option<u32> {
    let mut words = text.lines().next()?.split_whitespace();
    if words.next()? != "systemd" {
        return None;
    }
    let number = words.next()?;
    // Some builds print "255~rc1" or "256.5"; take the leading digits.
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Where user units go: `$XDG_CONFIG_HOME/systemd/user`, or
/// `~/.config/systemd/user`.
pub fn default_unit_dir(home: &Path) -> PathBuf {
    unit_dir_from(std::env::var_os("XDG_CONFIG_HOME"), home)
}

fn unit_dir_from(xdg_config_home: Option<OsString>, home: &Path) -> PathBuf {
    // The XDG spec says relative values are invalid and must be ignored.
    let base = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    base.join("systemd/user")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn installs_both_units_with_the_exe_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unit_dir = dir.path().join("config/systemd/user");
        let exe = Path::new("/home/alice/.cargo/bin/stdioproxy");
        let written = install_units(exe, &unit_dir, false).expect("install");
        assert_eq!(
            written,
            vec![
                unit_dir.join("stdioproxy.service"),
                unit_dir.join("stdioproxy.socket")
            ]
        );
        let service = fs::read_to_string(&written[0]).expect("service");
        assert_eq!(
            directive(&service, "ExecStart"),
            vec!["/home/alice/.cargo/bin/stdioproxy serve"]
        );
        assert_eq!(directive(&service, "Type"), vec!["notify-reload"]);
        assert!(directive(&service, "ExecReload").is_empty());
        // Only the program path changed.
        assert_eq!(
            service.replace("/home/alice/.cargo/bin/stdioproxy", "/usr/bin/stdioproxy"),
            SERVICE_UNIT
        );
        let socket = fs::read_to_string(&written[1]).expect("socket");
        assert_eq!(socket, SOCKET_UNIT);
        // No temporary files left.
        assert_eq!(fs::read_dir(&unit_dir).expect("dir").count(), 2);
    }

    #[test]
    fn legacy_variant_and_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = Path::new("/opt/stdioproxy/bin/stdioproxy");
        install_units(exe, dir.path(), false).expect("install");
        let written = install_units(exe, dir.path(), true).expect("install legacy");
        let service = fs::read_to_string(&written[0]).expect("service");
        assert_eq!(directive(&service, "Type"), vec!["notify"]);
        assert_eq!(
            directive(&service, "ExecStart"),
            vec!["/opt/stdioproxy/bin/stdioproxy serve"]
        );
        assert_eq!(
            directive(&service, "ExecReload"),
            vec!["/opt/stdioproxy/bin/stdioproxy reload"]
        );
        assert!(!service.contains("/usr/bin/stdioproxy"));
    }

    #[test]
    fn units_carry_the_decided_settings() {
        for unit in [SERVICE_UNIT, LEGACY_SERVICE_UNIT] {
            assert_eq!(directive(unit, "WatchdogSec"), vec!["30s"]);
            assert_eq!(directive(unit, "Restart"), vec!["on-failure"]);
            assert_eq!(directive(unit, "KillMode"), vec!["mixed"]);
            assert_eq!(directive(unit, "TimeoutStopSec"), vec!["20s"]);
            assert_eq!(directive(unit, "UMask"), vec!["0077"]);
            assert_eq!(directive(unit, "NotifyAccess"), vec!["main"]);
            assert_eq!(directive(unit, "Requires"), vec!["stdioproxy.socket"]);
            assert_eq!(directive(unit, "After"), vec!["stdioproxy.socket"]);
            assert_eq!(
                directive(unit, "ExecStart"),
                vec!["/usr/bin/stdioproxy serve"]
            );
        }
        let s = SOCKET_UNIT;
        assert_eq!(
            directive(s, "ListenStream"),
            vec!["%t/stdioproxy/stdioproxy.sock"]
        );
        assert_eq!(directive(s, "SocketMode"), vec!["0600"]);
        assert_eq!(directive(s, "DirectoryMode"), vec!["0700"]);
        assert_eq!(directive(s, "RemoveOnStop"), vec!["yes"]);
        assert_eq!(directive(s, "FileDescriptorName"), vec!["stdioproxy"]);
        assert_eq!(
            directive(s, "FileDescriptorName"),
            vec![crate::systemd::SOCKET_FD_NAME]
        );
        assert_eq!(directive(s, "WantedBy"), vec!["sockets.target"]);
    }

    #[test]
    fn exec_paths_are_escaped_for_systemd() {
        let q = |p: &str| exec_path(Path::new(p));
        assert_eq!(
            q("/usr/local/bin/stdioproxy").expect("plain"),
            "/usr/local/bin/stdioproxy"
        );
        assert_eq!(
            q("/home/a/My Tools/stdioproxy").expect("space"),
            "\"/home/a/My Tools/stdioproxy\""
        );
        assert_eq!(
            q("/opt/100%/$HOME/x").expect("specials"),
            "/opt/100%%/$$HOME/x"
        );
        assert_eq!(q("/a \"b\"\\c").expect("quotes"), r#""/a \"b\"\\c""#);
        assert!(q("relative/stdioproxy").is_err());
        assert!(q("/a\nb").is_err());

        let unit =
            rewrite_exe(SERVICE_UNIT, Path::new("/home/a/My Tools/stdioproxy")).expect("rewrite");
        assert_eq!(
            directive(&unit, "ExecStart"),
            vec!["\"/home/a/My Tools/stdioproxy\" serve"]
        );
    }

    #[test]
    fn parses_systemctl_version_output() {
        let debian = "systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT +SELINUX +APPARMOR +IMA\n";
        assert_eq!(parse_systemd_version(debian), Some(252));
        assert_eq!(
            parse_systemd_version("systemd 256 (256.5-1-arch)\n"),
            Some(256)
        );
        assert_eq!(parse_systemd_version("systemd 255~rc1\n"), Some(255));
        assert_eq!(parse_systemd_version("elogind 252\n"), None);
        assert_eq!(parse_systemd_version(""), None);
        // On this machine: whatever it says, it parses (or systemctl is absent).
        if let Some(v) = systemd_version() {
            assert!(v > 200, "{v}");
        }
    }

    #[test]
    fn unit_dir_follows_xdg_config_home() {
        let home = Path::new("/home/alice");
        assert_eq!(
            unit_dir_from(None, home),
            Path::new("/home/alice/.config/systemd/user")
        );
        assert_eq!(
            unit_dir_from(Some("/x/cfg".into()), home),
            Path::new("/x/cfg/systemd/user")
        );
        assert_eq!(
            unit_dir_from(Some("relative".into()), home),
            Path::new("/home/alice/.config/systemd/user")
        );
        assert_eq!(
            unit_dir_from(Some("".into()), home),
            Path::new("/home/alice/.config/systemd/user")
        );
    }
}
