//! Reading a config file: permissions first, then TOML, then validation, with
//! every error located at file:line:column.
//!
//! The config decides which programs the daemon runs, so like ssh we refuse a
//! file that another user could have written: owned by someone other than us
//! (root excepted, which covers /nix/store) or writable by group or others.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Config;

/// A config problem a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when the problem has a place in the text.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn whole_file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            position: None,
            message: message.into(),
        }
    }
}

/// Refuses a file another user could have written. `meta` must describe the
/// file itself (symlinks followed).
pub fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(ConfigError::whole_file(
            path,
            format!(
                "refusing a config owned by uid {} (the daemon runs as uid {me}): it decides which programs run",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(ConfigError::whole_file(
            path,
            format!(
                "refusing a config writable by group or others (mode {mode:04o}): it decides which programs run; fix with: chmod go-w {}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Loads the config file. `Ok(None)` means the file does not exist, which the
/// daemon treats as "no servers" at start. Returns the text too so callers can
/// detect unchanged content.
pub fn load(path: &Path) -> Result<Option<(Config, String)>, ConfigError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConfigError::whole_file(path, format!("cannot read: {e}"))),
    };
    if !meta.is_file() {
        return Err(ConfigError::whole_file(path, "is not a regular file"));
    }
    check_permissions(path, &meta)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read: {e}")))?;
    let config = parse_str(path, &text)?;
    Ok(Some((config, text)))
}

/// Parses config text; `path` is only used in errors.
pub fn parse_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let config = toml::from_str::<Config>(text).map_err(|e| {
        let message = e.message().trim();
        let message = match e.span() {
            Some(span) if message == "duplicate key" => {
                super::duplicate::describe(text, span).unwrap_or_else(|| message.to_string())
            }
            _ => message.to_string(),
        };
        ConfigError {
            path: path.to_path_buf(),
            position: e.span().map(|s| line_col(text, s.start)),
            message,
        }
    })?;
    // Checks that need `[defaults]` and a server together.
    for (name, server) in &config.servers {
        if let Some((span, why)) = server.instance_conflict(&config.defaults) {
            return Err(ConfigError {
                path: path.to_path_buf(),
                position: Some(line_col(text, span.start)),
                message: format!("server {name}: {why}"),
            });
        }
    }
    Ok(config)
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_str(Path::new("c.toml"), text)
    }

    #[test]
    fn parses_a_full_server() {
        let c = parse(
            r#"
[defaults]
request_timeout = "2m"

[servers.github]
command = "npx"
args = ["-y", "server"]
env = { TOKEN = "${TOKEN}" }
cwd = "~/src"
startup_timeout = "10s"

[servers.off]
command = "x"
enabled = false
"#,
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        let gh = &c.servers[&crate::config::ServerName::new("github").unwrap()];
        assert_eq!(gh.args, vec!["-y", "server"]);
        let t = gh.timeouts().resolve(&c.defaults);
        assert_eq!(t.startup_timeout, Duration::from_secs(10));
        assert_eq!(t.request_timeout, Duration::from_secs(120));
        assert_eq!(t.stop_grace, Duration::from_secs(5));
        assert_eq!(c.enabled_servers().count(), 1);
        // Debug never shows env values.
        assert!(!format!("{gh:?}").contains("${TOKEN}"));
    }

    #[test]
    fn pin_tools_per_server_over_defaults() {
        let c = parse(
            "[defaults]\npin_tools = true\n[servers.a]\ncommand = \"x\"\n[servers.b]\ncommand = \"x\"\npin_tools = false\n",
        )
        .unwrap();
        let pin = |n: &str| {
            c.servers[&crate::config::ServerName::new(n).unwrap()]
                .timeouts()
                .resolve(&c.defaults)
                .pin_tools
        };
        assert!(pin("a"));
        assert!(!pin("b"));
        let off = parse("[servers.a]\ncommand = \"x\"\n").unwrap();
        assert!(
            !off.servers
                .values()
                .next()
                .unwrap()
                .timeouts()
                .resolve(&off.defaults)
                .pin_tools
        );
        assert!(parse("[servers.a]\ncommand = \"x\"\npin_tools = \"yes\"\n").is_err());
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse("[servers.a]\ncommand = \"x\"\ncomand = \"y\"\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("comand"), "{e}");

        let e = parse("[servers.a]\ncommand = \"x\"\nstartup_timeout = \"10\"\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("needs a unit"), "{e}");

        let e = parse("[servers.a]\ncommand = [\n").unwrap_err();
        assert!(e.position.is_some(), "{e}");
        assert!(e.to_string().starts_with("c.toml:"), "{e}");
    }

    #[test]
    fn bad_server_names_are_located() {
        for bad in ["a__b", "a.b", "a b", "stdioproxy", "a_"] {
            let e = parse(&format!("[servers.\"{bad}\"]\ncommand = \"x\"\n")).unwrap_err();
            assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
            assert!(e.message.contains("server name"), "{e}");
        }
        let e = parse("[servers.a]\ncommand = \"\"\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
    }

    #[test]
    fn daemon_limits_parse_and_bad_values_are_located() {
        let c = parse("[daemon]\nmax_sessions = 3\nhandshake_timeout = \"2s\"\n").unwrap();
        assert_eq!(c.daemon.max_sessions, 3);
        assert_eq!(c.daemon.handshake_timeout.0, Duration::from_secs(2));
        let d = parse("").unwrap().daemon;
        assert_eq!(d.first_list_wait.0, Duration::from_secs(5));
        let w = parse("[daemon]\nfirst_list_wait = \"0s\"\n")
            .unwrap()
            .daemon;
        assert_eq!(w.first_list_wait.0, Duration::ZERO);
        assert_eq!(d.max_sessions, 256);
        assert_eq!(d.handshake_timeout.0, Duration::from_secs(60));
        for (bad, line) in [
            ("[daemon]\nmax_sessions = 0\n", 2),
            ("[daemon]\n\nhandshake_timeout = \"0s\"\n", 3),
            ("[daemon]\nmax_message_size = 10\n", 2),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.position.map(|p| p.0), Some(line), "{bad}: {e}");
        }
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_col("ab\ncéd", 6), (2, 3));
    }
}

#[cfg(test)]
mod era_tests {
    use super::*;
    use crate::config::{EraSetting, ServerName};

    #[test]
    fn the_era_key() {
        let c = parse_str(
            Path::new("c.toml"),
            "[servers.a]\ncommand = \"x\"\n[servers.b]\ncommand = \"x\"\nera = \"modern\"\n[servers.c]\ncommand = \"x\"\nera = \"legacy\"\n",
        )
        .unwrap();
        let era = |n: &str| c.servers[&ServerName::new(n).unwrap()].era;
        assert_eq!(era("a"), EraSetting::Auto);
        assert_eq!(era("b"), EraSetting::Modern);
        assert_eq!(era("c"), EraSetting::Legacy);
        let e = parse_str(
            Path::new("c.toml"),
            "[servers.a]\ncommand = \"x\"\nera = \"2026\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("auto") && e.contains("c.toml:3"), "{e}");
        // Another era is another process.
        let b = &c.servers[&ServerName::new("b").unwrap()];
        let a = &c.servers[&ServerName::new("a").unwrap()];
        assert!(a.needs_new_process(b) && !a.needs_new_process(a));
    }
}
