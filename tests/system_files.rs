//! Checks of the files that are not Rust: the systemd units, as systemd
//! itself parses them, every Nix file, as Nix parses it, and (in
//! nix/evaluation.rs) the Nix modules, package and flake as nixpkgs'
//! module system evaluates them.
//!
//! The checks work offline and never talk to a service manager: they must
//! not start `systemd --user` or run `systemctl --user` (a user manager
//! started on a shared machine can move its processes between cgroups).
//!
//! When `systemd-analyze`, `nix-instantiate` or nixpkgs' lib is missing a
//! check says so in one line on stderr (past the test harness's capture, so
//! it shows in a plain `cargo test`), except under CI (`CI` set), where it
//! fails: CI must install the `systemd` and `nix-bin` packages.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "nix/evaluation.rs"]
mod nix_evaluation;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const DAEMON: &str = env!("CARGO_BIN_EXE_stdioproxy");

/// The warning systemd < 253 prints for the notify-reload unit.
const OLD_SYSTEMD_WARNING: &str = "Failed to parse service type, ignoring: notify-reload";

/// A check that cannot run: a failure under CI, else one line on the real
/// stderr (not the captured one, which `cargo test` hides for passing
/// tests), so a skipped check never reads as a passed one.
fn skip_or_fail(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("system_files")
        .to_string();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {reason}, but CI is set: .ci/run must provide it");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: {reason} (this check is required under CI)"
    );
}

/// Runs `program args`, or reports that it is missing: `None` (skip) outside
/// CI, a panic under CI.
fn run_tool(program: &str, package: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip_or_fail(&format!(
                "{program} is not installed (Debian package {package})"
            ));
            None
        }
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

/// `systemd 252 (252.38-1~deb12u1)` -> 252.
fn systemd_major(version_output: &str) -> u32 {
    let first = version_output.lines().next().unwrap_or_default();
    let number = first.split_whitespace().nth(1).unwrap_or_default();
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("cannot read the systemd version from {first:?}"))
}

/// A fresh private (0700) directory.
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    dir
}

/// `systemd-analyze --user verify --man=no` on the `units` in `dir`.
/// Returns stderr, after asserting success.
fn verify_units(dir: &Path, units: &[&str]) -> String {
    // --user needs an existing runtime dir; the config and data dirs are
    // pointed at empty ones so the user's own units cannot interfere. Only
    // the child's environment changes.
    let runtime = private_dir();
    let config = private_dir();
    let data = private_dir();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify", "--man=no"])
        .args(units)
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("XDG_CONFIG_HOME", config.path())
        .env("XDG_DATA_HOME", data.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}) in {}:\n{stderr}",
        out.status,
        dir.display()
    );
    stderr
}

const BOTH_UNITS: &[&str] = &["stdioproxy.socket", "stdioproxy.service"];

/// Copies the repository's socket unit and `service` into a fresh
/// directory, with ExecStart pointing at the test build of the daemon
/// (verify fails when the program does not exist).
fn stage_units(service: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(MANIFEST_DIR).join("systemd");
    let socket = fs::read_to_string(repo.join("stdioproxy.socket")).expect("read socket unit");
    let service = fs::read_to_string(repo.join(service)).expect("read service unit");
    assert!(
        service.contains("\nExecStart=/usr/bin/stdioproxy serve\n"),
        "{service}"
    );
    assert!(
        !DAEMON.contains(char::is_whitespace),
        "unusual binary path {DAEMON}"
    );
    // ExecStart (and the legacy unit's ExecReload) must name a real program.
    let service = service.replace("/usr/bin/stdioproxy", DAEMON);
    fs::write(dir.path().join("stdioproxy.socket"), socket).expect("write socket unit");
    fs::write(dir.path().join("stdioproxy.service"), service).expect("write service unit");
    dir
}

/// Fails on any stderr output, except the one warning an old systemd gives
/// for `Type=notify-reload` when `old_systemd_warning_allowed`.
fn assert_clean(stderr: &str, old_systemd_warning_allowed: bool, what: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tolerated =
        old_systemd_warning_allowed && lines.len() == 1 && lines[0].contains(OLD_SYSTEMD_WARNING);
    assert!(
        lines.is_empty() || tolerated,
        "systemd-analyze verify printed warnings for {what}:\n{stderr}"
    );
}

#[test]
fn systemd_units_verify() {
    let Some(version) = run_tool("systemd-analyze", "systemd", &["--version"]) else {
        return;
    };
    let major = systemd_major(&String::from_utf8_lossy(&version.stdout));

    // The notify-reload service (systemd >= 253). Older systemd only warns
    // and falls back to Type=simple; that one warning is expected there.
    let current = stage_units("stdioproxy.service");
    let stderr = verify_units(current.path(), BOTH_UNITS);
    assert_clean(
        &stderr,
        major < 253,
        "systemd/stdioproxy.service + stdioproxy.socket",
    );
    if major < 253 {
        eprintln!("note: systemd {major} < 253, tolerated: {}", stderr.trim());
    }

    // The legacy service must be clean everywhere.
    let legacy = stage_units("legacy/stdioproxy.service");
    let stderr = verify_units(legacy.path(), BOTH_UNITS);
    assert_clean(
        &stderr,
        false,
        "systemd/legacy/stdioproxy.service + stdioproxy.socket",
    );
}

#[test]
fn installed_units_verify() {
    // The units as `stdioproxy install` writes them (embedded copies,
    // ExecStart rewritten by the library), for both variants.
    let Some(version) = run_tool("systemd-analyze", "systemd", &["--version"]) else {
        return;
    };
    let major = systemd_major(&String::from_utf8_lossy(&version.stdout));
    for legacy in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = stdioproxy::install::install_units(Path::new(DAEMON), dir.path(), legacy)
            .expect("install_units");
        assert_eq!(written.len(), 2);
        let stderr = verify_units(dir.path(), BOTH_UNITS);
        assert_clean(
            &stderr,
            !legacy && major < 253,
            &format!("install_units(legacy = {legacy})"),
        );
    }
}

/// Every `.nix` file under `dir`, skipping build outputs, dependencies, VCS
/// data and symlinks (`result` links of `nix build`).
fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        let name = entry.file_name();
        if kind.is_dir() {
            if ["target", "node_modules", ".git", ".venv"]
                .iter()
                .any(|skip| name == OsStr::new(skip))
            {
                continue;
            }
            nix_files(&path, out);
        } else if kind.is_file() && path.extension() == Some(OsStr::new("nix")) {
            out.push(path);
        }
    }
}

#[test]
fn nix_files_parse() {
    let mut files = Vec::new();
    nix_files(Path::new(MANIFEST_DIR), &mut files);
    files.sort();
    let root = Path::new(MANIFEST_DIR);
    for expected in [
        "flake.nix",
        "nix/package.nix",
        "nix/hm-module.nix",
        "nix/nixos-module.nix",
    ] {
        assert!(
            files.contains(&root.join(expected)),
            "{expected} not found among {files:?}"
        );
    }

    if run_tool("nix-instantiate", "nix-bin", &["--version"]).is_none() {
        return;
    }
    let mut failures = Vec::new();
    for file in &files {
        // The dummy store: parsing needs no store, and without it Nix tries
        // to reach the daemon (and fails for non-root users).
        let out = Command::new("nix-instantiate")
            .args(["--store", "dummy://", "--parse"])
            .arg(file)
            .output()
            .expect("run nix-instantiate");
        if !out.status.success() {
            failures.push(format!(
                "{}:\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "nix-instantiate --parse failed:\n{}",
        failures.join("\n")
    );
}
