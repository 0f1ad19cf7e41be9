//! The Nix expressions (nix/hm-module.nix, nix/nixos-module.nix,
//! nix/package.nix and flake.nix) evaluated with nixpkgs' own `lib` and
//! module system, through the harnesses beside this file.
//!
//! nixpkgs itself cannot be fetched here, but its `lib` sits in
//! `../shared/nixpkgs-lib/lib` beside the repository. With it,
//! `lib.evalModules` treats our modules exactly as home-manager and NixOS
//! would, except that the options those projects declare are re-declared in
//! hm-options.nix / nixos-options.nix, and the few nixpkgs functions we call
//! (`formats.toml`, `buildRustPackage`, `writeShellScript`...) are stubs
//! (stubs.nix). What this proves and what it does not: nix/README.md.
//!
//! Each test checks the evaluated result against the thing it must agree
//! with: the rendered config.toml against `stdioproxy check`, the rendered
//! units against systemd-analyze and the repository's own units, the
//! package's install script against the unit files it edits.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{assert_clean, private_dir, run_tool, skip_or_fail, systemd_major, verify_units};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const DAEMON: &str = env!("CARGO_BIN_EXE_stdioproxy");

/// `nix-instantiate` and nixpkgs' lib, when both are there.
struct Nix {
    lib: PathBuf,
}

/// An argument to a harness: `--argstr` or `--arg` (a Nix expression).
enum Arg<'a> {
    Str(&'a str, &'a str),
    Expr(&'a str, &'a str),
}

impl Nix {
    /// Both, or None after the one-line notice (a failure under CI).
    fn find() -> Option<Nix> {
        run_tool("nix-instantiate", "nix-bin", &["--version"])?;
        // shared/ sits beside a clone (CI), or beside the directory that
        // holds the worktrees; STDIOPROXY_NIXPKGS_LIB points elsewhere.
        let repo = Path::new(MANIFEST_DIR);
        let candidates: Vec<PathBuf> = match std::env::var_os("STDIOPROXY_NIXPKGS_LIB") {
            Some(dir) => vec![PathBuf::from(dir)],
            None => vec![
                repo.join("../shared/nixpkgs-lib/lib"),
                repo.join("../../shared/nixpkgs-lib/lib"),
            ],
        };
        let Some(lib) = candidates.iter().find(|d| d.join("default.nix").is_file()) else {
            skip_or_fail(&format!(
                "nixpkgs' lib is not at {} (shared/ beside the repository)",
                candidates[0].display()
            ));
            return None;
        };
        let lib = lib
            .canonicalize()
            .expect("canonicalize the nixpkgs lib path");
        Some(Nix { lib })
    }

    /// Evaluates `tests/nix/<harness>` strictly to JSON. Err holds Nix's
    /// error output. No store is used (`dummy://`): nothing is built,
    /// copied or fetched, and an expression that would need to is an error.
    fn eval(&self, harness: &str, args: &[Arg]) -> Result<Value, String> {
        let mut cmd = Command::new("nix-instantiate");
        cmd.args(["--eval", "--strict", "--json", "--store", "dummy://"])
            // No Nix daemon, build users or channels are involved.
            .args(["--option", "build-users-group", ""])
            .env("NIX_PATH", "")
            .arg(Path::new(MANIFEST_DIR).join("tests/nix").join(harness))
            .arg("--argstr")
            .arg("libPath")
            .arg(&self.lib);
        for arg in args {
            match arg {
                Arg::Str(name, value) => cmd.args(["--argstr", name, value]),
                Arg::Expr(name, value) => cmd.args(["--arg", name, value]),
            };
        }
        let out = cmd.output().expect("run nix-instantiate");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(stderr);
        }
        Ok(serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("nix-instantiate printed no JSON ({e}); stderr:\n{stderr}")))
    }

    /// Like `eval`, panicking with Nix's message on an error.
    fn ok(&self, harness: &str, args: &[Arg]) -> Value {
        self.eval(harness, args)
            .unwrap_or_else(|e| panic!("evaluating tests/nix/{harness} failed:\n{e}"))
    }

    /// The home-manager module with `module` as the user's configuration.
    fn hm(&self, module: &str, package_out: Option<&Path>) -> Result<Value, String> {
        let out = package_out.map(|p| p.to_str().expect("UTF-8 path").to_string());
        let mut args = vec![Arg::Expr("userModule", module)];
        if let Some(out) = &out {
            args.push(Arg::Str("packageOut", out));
        }
        self.eval("hm.nix", &args)
    }
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| str_of(s, "list item").to_string())
        .collect()
}

/// The TOML that nixpkgs' formats.toml writes for the JSON it hands
/// json2toml: the same value, as TOML.
fn toml_from_json(json: &str) -> String {
    let value: toml::Value = serde_json::from_str(json).expect("the generator's JSON as TOML");
    toml::to_string(&value).expect("render TOML")
}

/// A directory that looks like the package's output to systemd-analyze:
/// `bin/stdioproxy` is the test build.
fn fake_package_out() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("bin")).expect("mkdir bin");
    std::os::unix::fs::symlink(DAEMON, dir.path().join("bin/stdioproxy")).expect("symlink");
    dir
}

/// A unit file's settings, `section -> key -> values`, without comments;
/// booleans spelled as systemd's yes/no so units written by hand and by
/// home-manager (true/false) compare equal.
fn unit_settings(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a unit line: {line:?}"));
        let value = match value.trim() {
            "true" => "yes",
            "false" => "no",
            v => v,
        };
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.to_string());
    }
    sections
}

fn repo_unit(name: &str) -> String {
    fs::read_to_string(Path::new(MANIFEST_DIR).join("systemd").join(name))
        .unwrap_or_else(|e| panic!("read systemd/{name}: {e}"))
}

/// Asserts that a unit home-manager renders has the settings of the
/// repository's hand-written one, apart from `ignored` keys (those that
/// point into the package or only exist on one side for a reason).
fn assert_same_settings(rendered: &str, repo_name: &str, ignored: &[&str]) {
    let strip = |mut s: BTreeMap<String, BTreeMap<String, Vec<String>>>| {
        for keys in s.values_mut() {
            keys.retain(|k, _| !ignored.contains(&k.as_str()));
        }
        s
    };
    let ours = strip(unit_settings(rendered));
    let theirs = strip(unit_settings(&repo_unit(repo_name)));
    assert_eq!(
        ours, theirs,
        "the home-manager unit and systemd/{repo_name} disagree (fix one of them):\n{rendered}"
    );
}

/// Writes rendered units into a fresh directory for systemd-analyze.
fn stage(units: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in units {
        fs::write(dir.path().join(name), text).expect("write unit");
    }
    dir
}

fn systemd_version() -> Option<u32> {
    let out = run_tool("systemd-analyze", "systemd", &["--version"])?;
    Some(systemd_major(&String::from_utf8_lossy(&out.stdout)))
}

/// `stdioproxy check --config FILE` on `text`; (success, output).
fn daemon_check(text: &str) -> (bool, String) {
    let dir = private_dir();
    let path = dir.path().join("config.toml");
    fs::write(&path, text).expect("write config");
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 0600");
    let out = Command::new(DAEMON)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run stdioproxy check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the module's build-time check of the config (the `runCommand`
/// script) as the builder would, on `rendered` as the TOML generator's
/// output, with the test build as the package's `stdioproxy`. Returns
/// (success, stderr, the built file).
fn build_checked_config(file: &Value, rendered: &str) -> (bool, String, Option<String>) {
    let script = str_of(&file["checkScript"], "the config's build script");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("rendered.toml");
    fs::write(&input, rendered).expect("write rendered");
    fs::set_permissions(&input, std::os::unix::fs::PermissionsExt::from_mode(0o444))
        .expect("chmod like the store");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir bin");
    std::os::unix::fs::symlink(DAEMON, bin.join("stdioproxy")).expect("symlink");
    let build = dir.path().join("build");
    fs::create_dir(&build).expect("mkdir build");
    let out = dir.path().join("out");
    let result = Command::new("bash")
        .args(["-c", &format!("set -eu -o pipefail\n{script}")])
        .current_dir(&build)
        .env("rendered", &input)
        .env("out", &out)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("run bash");
    (
        result.status.success(),
        String::from_utf8_lossy(&result.stderr).into_owned(),
        fs::read_to_string(&out).ok(),
    )
}

const HM_SETTINGS: &str = r#"{
  services.stdioproxy = {
    enable = true;
    settings = {
      daemon.page_size = 500;
      defaults.request_timeout = "2m";
      servers.github = {
        command = "npx";
        args = [ "-y" "@modelcontextprotocol/server-github" ];
        env.GITHUB_TOKEN = "\${GITHUB_TOKEN}";
      };
      servers.sqlite = {
        command = "uvx";
        args = [ "mcp-server-sqlite" "--db-path" "~/data.db" ];
        enabled = false;
        startup_timeout = "90s";
      };
    };
  };
}"#;

#[test]
fn hm_module_writes_a_config_toml_that_the_daemon_accepts() {
    let Some(nix) = Nix::find() else { return };
    let v = nix.hm(HM_SETTINGS, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["failedAssertions"], serde_json::json!([]), "{v:#}");

    let file = &v["configFiles"]["stdioproxy/config.toml"];
    assert_eq!(file["target"], "stdioproxy/config.toml", "{v:#}");
    let source = str_of(&file["source"], "config source");
    assert!(
        source.starts_with("/nix/store/") && source.ends_with("-stdioproxy-config.toml"),
        "{source}"
    );
    // A new config reloads the daemon on `home-manager switch`.
    assert_eq!(
        strings(&v["service"]["Unit"]["X-Reload-Triggers"]),
        [source],
        "{v:#}"
    );

    let rendered = toml_from_json(str_of(&file["tomlJson"], "generator input"));
    assert_eq!(
        rendered,
        r#"[daemon]
page_size = 500

[defaults]
request_timeout = "2m"

[servers.github]
args = ["-y", "@modelcontextprotocol/server-github"]
command = "npx"

[servers.github.env]
GITHUB_TOKEN = "${GITHUB_TOKEN}"

[servers.sqlite]
args = ["mcp-server-sqlite", "--db-path", "~/data.db"]
command = "uvx"
enabled = false
startup_timeout = "90s"
"#
    );
    let (ok, out) = daemon_check(&rendered);
    assert!(ok, "stdioproxy check refused the module's config:\n{out}");
    assert!(out.contains("2 servers (1 enabled)"), "{out}");

    // The module checks it while building, with the configured package,
    // and installs it unchanged.
    assert_eq!(
        strings(&file["checkInputs"]),
        [str_of(&v["package"], "package")]
    );
    let (ok, stderr, built) = build_checked_config(file, &rendered);
    assert!(ok, "the config's build-time check failed:\n{stderr}");
    assert_eq!(built.as_deref(), Some(rendered.as_str()));

    // checkConfig = false installs the generator's output as it is.
    let unchecked =
        HM_SETTINGS.replacen("enable = true;", "enable = true; checkConfig = false;", 1);
    let v = nix.hm(&unchecked, None).unwrap_or_else(|e| panic!("{e}"));
    let file = &v["configFiles"]["stdioproxy/config.toml"];
    assert!(file["checkScript"].is_null(), "{file}");
    assert_eq!(
        toml_from_json(str_of(&file["tomlJson"], "generator input")),
        rendered
    );
}

#[test]
fn hm_module_bad_settings_fail_evaluation_or_check_with_a_clear_message() {
    let Some(nix) = Nix::find() else { return };
    let module =
        |settings: &str| format!("{{ services.stdioproxy = {{ enable = true; {settings} }}; }}");

    // Values TOML cannot hold, and options of the wrong type, fail the
    // evaluation (so `home-manager switch` stops before anything changes).
    for (settings, option, expected) in [
        (
            "settings.servers.x.command = null;",
            "services.stdioproxy.settings.servers.x.command",
            "TOML value",
        ),
        (
            "logFilter = 5;",
            "services.stdioproxy.logFilter",
            "null or string",
        ),
        (
            r#"socketActivation = "yes";"#,
            "services.stdioproxy.socketActivation",
            "boolean",
        ),
        (
            r#"extraPackages = [ "nodejs" ];"#,
            "services.stdioproxy.extraPackages",
            "package",
        ),
    ] {
        let err = nix
            .hm(&module(settings), None)
            .map(|v| v.to_string())
            .expect_err(&format!("{settings} must not evaluate"));
        assert!(
            err.contains(&format!("A definition for option `{option}"))
                && err.contains("is not of type")
                && err.contains(expected),
            "{settings}: unclear error:\n{err}"
        );
    }

    // Values TOML can hold but the daemon refuses evaluate, and then fail
    // the config's build (so `home-manager switch`), naming the problem.
    for (settings, expected) in [
        (
            r#"settings.servers.x.comand = "npx";"#,
            "unknown field `comand`, expected one of `command`",
        ),
        (
            r#"settings.servers.x.command = "npx"; settings.defaults.request_timeout = "5 parsecs";"#,
            r#"duration "5 parsecs" has unknown unit"#,
        ),
    ] {
        let v = nix
            .hm(&module(settings), None)
            .unwrap_or_else(|e| panic!("{settings}: {e}"));
        let file = &v["configFiles"]["stdioproxy/config.toml"];
        let rendered = toml_from_json(str_of(&file["tomlJson"], "generator input"));
        let (ok, stderr, built) = build_checked_config(file, &rendered);
        assert!(
            !ok && built.is_none() && stderr.contains(expected),
            "{settings}: the config's build must fail naming the problem:\n{stderr}"
        );
    }
}

#[test]
fn hm_module_units_match_the_packaged_ones_and_pass_systemd_verify() {
    let Some(nix) = Nix::find() else { return };
    let Some(major) = systemd_version() else {
        return;
    };
    let out = fake_package_out();
    let pkg = out.path().to_str().expect("UTF-8 path");
    let exe = format!("{pkg}/bin/stdioproxy");

    // Defaults: socket activation, Type=notify-reload, no ExecReload.
    let v = nix
        .hm("{ services.stdioproxy.enable = true; }", Some(out.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&v["packages"]), [pkg], "{v:#}");
    assert_eq!(
        v["configFiles"],
        serde_json::json!({}),
        "no settings: the config file is left to the user"
    );
    let service = &v["service"];
    assert_eq!(
        strings(&service["Service"]["ExecStart"]),
        [format!("{exe} serve")]
    );
    assert_eq!(service["Service"]["Type"], "notify-reload");
    assert!(
        service["Service"].get("ExecReload").is_none(),
        "{service:#}"
    );
    assert_eq!(
        strings(&service["Service"]["Environment"]),
        Vec::<String>::new()
    );
    assert_eq!(
        strings(&service["Unit"]["X-Reload-Triggers"]),
        Vec::<String>::new()
    );
    assert_eq!(strings(&service["Unit"]["Requires"]), ["stdioproxy.socket"]);
    assert_eq!(strings(&service["Unit"]["After"]), ["stdioproxy.socket"]);
    assert_eq!(strings(&service["Install"]["Also"]), ["stdioproxy.socket"]);
    let socket = &v["socket"];
    assert_eq!(
        socket["Socket"]["ListenStream"],
        "%t/stdioproxy/stdioproxy.sock"
    );
    assert_eq!(strings(&socket["Install"]["WantedBy"]), ["sockets.target"]);

    let service_text = str_of(&v["services"]["stdioproxy"], "rendered service");
    let socket_text = str_of(&v["sockets"]["stdioproxy"], "rendered socket");
    assert!(
        service_text.contains(&format!("\nExecStart={exe} serve\n")),
        "{service_text}"
    );
    assert_same_settings(service_text, "stdioproxy.service", &["ExecStart"]);
    assert_same_settings(socket_text, "stdioproxy.socket", &[]);
    let dir = stage(&[
        ("stdioproxy.service", service_text),
        ("stdioproxy.socket", socket_text),
    ]);
    let stderr = verify_units(dir.path(), &["stdioproxy.socket", "stdioproxy.service"]);
    assert_clean(&stderr, major < 253, "the home-manager units");

    // notifyReload = false: Type=notify and an ExecReload that waits, as in
    // the legacy unit; clean on every systemd.
    let v = nix
        .hm(
            "{ services.stdioproxy = { enable = true; notifyReload = false; }; }",
            Some(out.path()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["service"]["Service"]["Type"], "notify");
    assert_eq!(
        v["service"]["Service"]["ExecReload"],
        format!("{exe} reload")
    );
    let service_text = str_of(&v["services"]["stdioproxy"], "rendered service");
    assert_same_settings(
        service_text,
        "legacy/stdioproxy.service",
        &["ExecStart", "ExecReload"],
    );
    let dir = stage(&[
        ("stdioproxy.service", service_text),
        ("stdioproxy.socket", socket_text),
    ]);
    let stderr = verify_units(dir.path(), &["stdioproxy.socket", "stdioproxy.service"]);
    assert_clean(
        &stderr,
        false,
        "the home-manager units with notifyReload = false",
    );

    // Without socket activation: no socket unit, started with the session.
    let v = nix
        .hm(
            "{ services.stdioproxy = { enable = true; socketActivation = false; }; }",
            Some(out.path()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["sockets"], serde_json::json!({}), "{v:#}");
    let service = &v["service"];
    assert!(service["Unit"].get("Requires").is_none(), "{service:#}");
    assert!(service["Unit"].get("After").is_none(), "{service:#}");
    assert_eq!(strings(&service["Install"]["WantedBy"]), ["default.target"]);
    assert!(service["Install"].get("Also").is_none(), "{service:#}");
    let dir = stage(&[(
        "stdioproxy.service",
        str_of(&v["services"]["stdioproxy"], "rendered service"),
    )]);
    let stderr = verify_units(dir.path(), &["stdioproxy.service"]);
    assert_clean(
        &stderr,
        major < 253,
        "the home-manager service without socket",
    );
}

#[test]
fn hm_module_puts_extra_packages_on_path_and_sets_the_log_filter() {
    let Some(nix) = Nix::find() else { return };
    let v = nix
        .hm(
            r#"{ pkgs, ... }: {
                 services.stdioproxy = {
                   enable = true;
                   extraPackages = [ pkgs.nodejs pkgs.uv ];
                   logFilter = "info,stdioproxy=debug";
                 };
               }"#,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let env = strings(&v["service"]["Service"]["Environment"]);
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(env[0], "RUST_LOG=info,stdioproxy=debug");
    let path = env[1]
        .strip_prefix("PATH=")
        .unwrap_or_else(|| panic!("{env:?}"));
    let dirs: Vec<&str> = path.split(':').collect();
    // The extra packages come first, in order, then the usual profiles, so
    // `npx`/`uvx` resolve to them and everything else still resolves.
    assert!(
        dirs[0].starts_with("/nix/store/") && dirs[0].ends_with("-node-1.0/bin"),
        "{dirs:?}"
    );
    assert!(
        dirs[1].starts_with("/nix/store/") && dirs[1].ends_with("-uv-1.0/bin"),
        "{dirs:?}"
    );
    for want in [
        "/run/wrappers/bin",
        "%h/.nix-profile/bin",
        "/etc/profiles/per-user/%u/bin",
        "/run/current-system/sw/bin",
        "/usr/bin",
        "/bin",
    ] {
        assert!(dirs[2..].contains(&want), "{want} missing from {dirs:?}");
    }
    let text = str_of(&v["services"]["stdioproxy"], "rendered service");
    assert!(
        text.contains("\nEnvironment=RUST_LOG=info,stdioproxy=debug\nEnvironment=PATH="),
        "one Environment= line each:\n{text}"
    );
}

#[test]
fn hm_module_disabled_or_off_linux() {
    let Some(nix) = Nix::find() else { return };
    // Imported but not enabled: nothing at all.
    let v = nix.hm("{ }", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["packages"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["services"], serde_json::json!({}), "{v:#}");
    assert_eq!(v["sockets"], serde_json::json!({}), "{v:#}");
    assert_eq!(v["configFiles"], serde_json::json!({}), "{v:#}");

    // Enabled on macOS: home-manager's platform assertion names the module.
    let v = nix
        .eval(
            "hm.nix",
            &[
                Arg::Expr("userModule", "{ services.stdioproxy.enable = true; }"),
                Arg::Str("system", "aarch64-darwin"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let failed = strings(&v["failedAssertions"]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("services.stdioproxy does not support your platform")
            && failed[0].contains("x86_64-linux"),
        "{failed:?}"
    );
}

#[test]
fn nixos_module_installs_the_package_and_enables_the_socket_for_every_user() {
    let Some(nix) = Nix::find() else { return };
    let v = nix.ok(
        "nixos.nix",
        &[Arg::Expr(
            "userModule",
            "{ services.stdioproxy.enable = true; }",
        )],
    );
    let pkg = str_of(&v["package"], "package").to_string();
    assert!(pkg.ends_with("-stdioproxy-0.1.0"), "{pkg}");
    assert_eq!(
        strings(&v["systemPackages"]),
        std::slice::from_ref(&pkg),
        "{v:#}"
    );
    // systemd.packages brings $out/lib/systemd/user (checked by the package
    // test below); the [Install] section is applied through wantedBy.
    assert_eq!(strings(&v["systemdPackages"]), [pkg], "{v:#}");
    let socket = &v["userSockets"]["stdioproxy"];
    assert_eq!(strings(&socket["wantedBy"]), ["sockets.target"], "{v:#}");
    assert_eq!(socket["enable"], true);
    assert_eq!(
        strings(&socket["listenStreams"]),
        Vec::<String>::new(),
        "the packaged unit's ListenStream stays the only one"
    );
    assert_eq!(v["userServices"], serde_json::json!({}), "{v:#}");
    assert_eq!(v["failedAssertions"], serde_json::json!([]));

    // Another package is used as given.
    let v = nix.ok(
        "nixos.nix",
        &[Arg::Expr(
            "userModule",
            "{ pkgs, ... }: { services.stdioproxy = { enable = true; package = pkgs.nodejs; }; }",
        )],
    );
    let packages = strings(&v["systemdPackages"]);
    assert!(
        packages.len() == 1 && packages[0].ends_with("-node-1.0"),
        "{v:#}"
    );

    // Disabled: nothing.
    let v = nix.ok("nixos.nix", &[]);
    assert_eq!(v["systemPackages"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["systemdPackages"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["userSockets"], serde_json::json!({}), "{v:#}");

    let err = nix
        .eval(
            "nixos.nix",
            &[Arg::Expr(
                "userModule",
                r#"{ services.stdioproxy.enable = "yes"; }"#,
            )],
        )
        .expect_err("enable must be a boolean");
    assert!(
        err.contains("`services.stdioproxy.enable' is not of type `boolean'"),
        "{err}"
    );
}

/// Every file under `dir` (relative to the repository), recursively.
fn files_under(dir: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the repo");
                out.push(rel.to_str().expect("UTF-8").to_string());
            }
        }
    }
    let root = Path::new(MANIFEST_DIR);
    let mut out = Vec::new();
    walk(root, &root.join(dir), &mut out);
    out
}

/// `--replace-fail OLD NEW` pairs of every `substituteInPlace FILE` in a
/// shell script (continuation lines joined).
fn replace_fail_patterns(script: &str) -> Vec<(String, String, String)> {
    let joined = script.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(start) = words.iter().position(|w| *w == "substituteInPlace") else {
            continue;
        };
        let file = words.get(start + 1).expect("substituteInPlace FILE");
        let mut rest = &words[start + 2..];
        while let [flag, old, new, tail @ ..] = rest {
            assert!(
                *flag == "--replace-fail",
                "only --replace-fail is checked here, found {flag} in {line:?}"
            );
            found.push((file.to_string(), old.to_string(), new.to_string()));
            rest = tail;
        }
        assert!(rest.is_empty(), "unparsed arguments {rest:?} in {line:?}");
    }
    found
}

/// Runs the package's postInstall in bash as stdenv would (`set -eu -o
/// pipefail`, in the source root), with `substituteInPlace --replace-fail`
/// behaving as nixpkgs' (failing when the pattern is absent), into a fresh
/// `$out` whose bin/ holds the three binaries cargo installs.
fn run_post_install(script: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    fs::create_dir(out.path().join("bin")).expect("mkdir bin");
    let shim = env!("CARGO_BIN_EXE_stdioproxy-shim");
    let fixture = env!("CARGO_BIN_EXE_stdioproxy-fixture-server");
    for (name, target) in [
        ("stdioproxy", DAEMON),
        ("stdioproxy-shim", shim),
        ("stdioproxy-fixture-server", fixture),
    ] {
        std::os::unix::fs::symlink(target, out.path().join("bin").join(name)).expect("symlink");
    }
    const SUBSTITUTE: &str = r#"
substituteInPlace() {
  local file=$1 content old new
  shift
  content=$(cat "$file"; printf x)
  content=${content%x}
  while [ $# -gt 0 ]; do
    if [ "$1" != --replace-fail ] || [ $# -lt 3 ]; then
      echo "substituteInPlace: unsupported arguments: $*" >&2
      return 1
    fi
    old=$2 new=$3
    shift 3
    if [[ $content != *"$old"* ]]; then
      echo "substituteInPlace: pattern '$old' doesn't match anything in file '$file'" >&2
      return 1
    fi
    content=${content//"$old"/"$new"}
  done
  printf '%s' "$content" >"$file"
}
"#;
    let result = Command::new("bash")
        .args([
            "-c",
            &format!("set -eu -o pipefail\n{SUBSTITUTE}\n{script}"),
        ])
        .current_dir(MANIFEST_DIR)
        .env("out", out.path())
        .output()
        .expect("run bash");
    assert!(
        result.status.success(),
        "the package's postInstall failed ({}):\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

#[test]
fn package_expression_builds_from_the_right_files_and_its_install_script_matches_the_units() {
    let Some(nix) = Nix::find() else { return };
    let v = nix.ok("package.nix", &[]);

    let cargo: toml::Value = toml::from_str(
        &fs::read_to_string(Path::new(MANIFEST_DIR).join("Cargo.toml")).expect("Cargo.toml"),
    )
    .expect("parse Cargo.toml");
    assert_eq!(v["pname"], cargo["package"]["name"].as_str().expect("name"));
    assert_eq!(
        v["version"],
        cargo["package"]["version"].as_str().expect("version")
    );
    assert_eq!(
        v["meta"]["description"],
        cargo["package"]["description"]
            .as_str()
            .expect("description")
    );
    assert_eq!(v["meta"]["mainProgram"], "stdioproxy");
    // Cargo.toml's "MIT OR Apache-2.0".
    assert_eq!(strings(&v["meta"]["licenses"]), ["MIT", "Apache-2.0"]);
    let platforms = strings(&v["meta"]["platforms"]);
    assert!(
        platforms.iter().all(|p| p.ends_with("-linux"))
            && platforms.contains(&"x86_64-linux".to_string())
            && platforms.contains(&"aarch64-linux".to_string()),
        "{platforms:?}"
    );
    assert_eq!(v["cargoLockFile"], "Cargo.lock");
    assert_eq!(v["srcRoot"], v["repoRoot"]);

    // The source: exactly what the build and the tests read.
    let src = strings(&v["srcFiles"]);
    for file in ["Cargo.toml", "Cargo.lock"] {
        assert!(
            src.contains(&file.to_string()),
            "{file} missing from the source"
        );
    }
    for dir in [
        "src",
        "systemd",
        "tests/e2e",
        "tests/fixture_server",
        "tests/nix",
    ] {
        for file in files_under(dir) {
            assert!(src.contains(&file), "{file} missing from the source");
        }
    }
    for file in &src {
        assert!(
            ["Cargo.toml", "Cargo.lock"].contains(&file.as_str())
                || ["src/", "tests/", "systemd/", "examples/"]
                    .iter()
                    .any(|d| file.starts_with(d)),
            "{file} is in the source but the build does not read it"
        );
        assert!(
            !file.contains("/node_modules/") && !file.contains("/.venv/"),
            "installed test dependencies are in the source: {file}"
        );
    }

    // Every pattern the install script replaces is in the unit it edits.
    let script = str_of(&v["postInstall"], "postInstall");
    let patterns = replace_fail_patterns(script);
    assert!(patterns.len() >= 2, "{patterns:?}");
    for (file, old, _) in &patterns {
        let name = file
            .rsplit_once("/systemd/")
            .map(|(_, rest)| rest.strip_prefix("user/").unwrap_or(rest))
            .unwrap_or_else(|| panic!("unexpected unit path {file}"));
        let text = repo_unit(name);
        assert!(
            text.contains(old.as_str()),
            "postInstall replaces {old:?} in {file}, but systemd/{name} does not contain it"
        );
    }

    // And the script does what it says, on the real unit files.
    let out = run_post_install(script);
    let exe = out.path().join("bin/stdioproxy");
    let exe = exe.to_str().expect("UTF-8");
    for unit in [
        "lib/systemd/user/stdioproxy.service",
        "lib/systemd/user/stdioproxy.socket",
        "share/stdioproxy/systemd/legacy/stdioproxy.service",
    ] {
        let text = fs::read_to_string(out.path().join(unit))
            .unwrap_or_else(|e| panic!("{unit} not installed: {e}"));
        assert!(
            !text.contains("/usr/bin/"),
            "{unit} still names /usr/bin:\n{text}"
        );
        if unit.ends_with(".service") {
            assert!(
                text.contains(&format!("\nExecStart={exe} serve\n")),
                "{unit}:\n{text}"
            );
        }
    }
    let legacy = fs::read_to_string(
        out.path()
            .join("share/stdioproxy/systemd/legacy/stdioproxy.service"),
    )
    .expect("legacy unit");
    assert!(
        legacy.contains(&format!("\nExecReload={exe} reload\n")),
        "{legacy}"
    );
    assert!(
        !out.path().join("bin/stdioproxy-fixture-server").exists(),
        "the test-only fixture server is installed"
    );
    assert!(out.path().join("bin/stdioproxy-shim").exists());

    // The installed units are what systemd accepts (the flake's `units`
    // check, offline).
    let Some(major) = systemd_version() else {
        return;
    };
    let stderr = verify_units(
        &out.path().join("lib/systemd/user"),
        &["stdioproxy.socket", "stdioproxy.service"],
    );
    assert_clean(&stderr, major < 253, "the installed units");
    let legacy_dir = stage(&[
        ("stdioproxy.service", &legacy),
        (
            "stdioproxy.socket",
            &fs::read_to_string(out.path().join("lib/systemd/user/stdioproxy.socket"))
                .expect("socket"),
        ),
    ]);
    let stderr = verify_units(
        legacy_dir.path(),
        &["stdioproxy.socket", "stdioproxy.service"],
    );
    assert_clean(&stderr, false, "the installed legacy unit");
}

#[test]
fn flake_outputs_have_the_documented_shape() {
    let Some(nix) = Nix::find() else { return };
    let v = nix.ok("flake.nix", &[]);
    let linux = serde_json::json!(["aarch64-linux", "x86_64-linux"]);
    let systems = |k: &str| {
        let keys: Vec<&String> = v[k].as_object().expect(k).keys().collect();
        serde_json::json!(keys)
    };

    assert_eq!(
        strings(&v["outputNames"]),
        [
            "apps",
            "checks",
            "devShells",
            "formatter",
            "homeManagerModules",
            "homeModules",
            "nixosModules",
            "overlays",
            "packages"
        ]
    );
    assert_eq!(
        v["inputs"]["nixpkgs"],
        "github:NixOS/nixpkgs/nixos-unstable"
    );
    // Linux only (the stub nixpkgs also offers a Darwin system).
    for k in ["packages", "apps", "checks", "devShells", "formatter"] {
        assert_eq!(systems(k), linux, "{k}: {v:#}");
    }
    for system in ["aarch64-linux", "x86_64-linux"] {
        assert_eq!(
            v["packages"][system],
            serde_json::json!(["default", "stdioproxy"])
        );
        assert_eq!(v["apps"][system], serde_json::json!(["default", "shim"]));
        assert_eq!(
            v["checks"][system],
            serde_json::json!(["clippy", "package", "units"])
        );
        assert_eq!(v["devShells"][system], serde_json::json!(["default"]));
    }

    let pkg = str_of(&v["packagePath"], "package").to_string();
    assert_eq!(v["packageName"]["pname"], "stdioproxy");
    assert_eq!(v["packageSameAsStdioproxy"], true);
    assert_eq!(v["overlayPackage"]["pname"], "stdioproxy");

    // `nix run`: the daemon in the foreground; `nix run .#shim`: the shim.
    assert_eq!(v["appDefault"]["type"], "app");
    let program = str_of(&v["appDefault"]["program"], "program");
    assert!(
        program.starts_with("/nix/store/") && program.ends_with("-stdioproxy-serve"),
        "{program}"
    );
    assert_eq!(
        v["appDefaultScript"],
        format!("exec {pkg}/bin/stdioproxy serve \"$@\"\n")
    );
    assert_eq!(v["appShim"]["type"], "app");
    assert_eq!(
        v["appShim"]["program"],
        format!("{pkg}/bin/stdioproxy-shim")
    );
    for app in ["appDefault", "appShim"] {
        assert!(v[app]["description"].is_string(), "{app}: {v:#}");
    }

    // The modules default to this flake's package, under both names.
    assert_eq!(v["homeModuleIsFunction"], true);
    assert_eq!(v["nixosModuleIsFunction"], true);
    assert_eq!(v["homeModulePackage"], pkg);
    assert_eq!(
        strings(&v["homeModuleExecStart"]),
        [format!("{pkg}/bin/stdioproxy serve")]
    );
    assert_eq!(v["homeManagerModulesExecStart"], v["homeModuleExecStart"]);
    assert_eq!(
        strings(&v["nixosModulePackages"]),
        std::slice::from_ref(&pkg)
    );

    // checks: the package itself (runs cargo test), clippy, and the units
    // check, which verifies files the install script really installs.
    let checks = &v["checkDetails"];
    assert_eq!(checks["package"], pkg);
    assert!(
        str_of(&checks["clippyBuildPhase"], "clippy")
            .contains("cargo clippy --offline --all-targets -- -D warnings"),
        "{checks:#}"
    );
    assert_eq!(checks["clippyDoCheck"], false);
    let package = nix.ok("package.nix", &[]);
    let installed = run_post_install(str_of(&package["postInstall"], "postInstall"));
    let units_script = str_of(&checks["unitsScript"], "units check");
    let prefix = format!("{pkg}/");
    let mut referenced = 0;
    for word in units_script.split_whitespace() {
        if let Some(rel) = word.strip_prefix(&prefix) {
            referenced += 1;
            assert!(
                installed.path().join(rel).is_file(),
                "the units check reads {rel}, which the package does not install"
            );
        }
    }
    assert!(referenced >= 3, "{units_script}");
    assert!(
        units_script.contains("systemd-analyze --user verify"),
        "{units_script}"
    );

    let shell = strings(&v["devShellPackages"]);
    for tool in ["clippy", "rustfmt", "systemd", "python3"] {
        assert!(
            shell.iter().any(|p| p.starts_with(tool)),
            "{tool}: {shell:?}"
        );
    }
    assert_eq!(strings(&v["devShellInputsFrom"]), [pkg]);
}
