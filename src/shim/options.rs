//! The shim's command line, in one struct.
//!
//! Hand-parsed (no clap) because the shim must start in about a millisecond
//! and stay small. Every option is a field of [`Options`]; adding one means
//! a field, a line in [`USAGE`], an arm in [`Options::set`] and its name in
//! `TAKES_VALUE`, its `STDIOPROXY_*` variable in [`Options::from_env`] when
//! it has one, and, if the daemon must know it, a field of
//! [`crate::proto::Hello`] filled in [`Options::hello`].

use std::path::PathBuf;
use std::time::Duration;

use crate::fit_options::{self, Fit};
use crate::proto::{Hello, Resumed, PROTO_VERSION};

/// `--help` text.
pub const USAGE: &str =
    "usage: stdioproxy-shim [--socket PATH] [--servers a,b,... | --server NAME] [--name-max N]
                       [--tools search] [--workspace DIR] [--reconnect-timeout DURATION]

Connects an MCP client's stdio to the stdioproxy daemon.
  --socket PATH     daemon socket (default: $STDIOPROXY_SOCKET, else
                    $XDG_RUNTIME_DIR/stdioproxy/stdioproxy.sock)
  --servers a,b     only show this client the listed servers
  --server NAME     show exactly this server, under its own names, as if
                    the client ran it directly (not with --servers)
  --name-max N      keep every tool and prompt name within N characters
                    (8..=128; for hosts that prefix names and cap them)
  --tools search    list only search_tools and call_tool, which find and
                    run every tool
  --workspace DIR   the project that per-workspace servers run in (default:
                    the current directory)
  --reconnect-timeout DURATION
                    when the daemon goes away (restart, upgrade, crash), keep
                    the client's session and reconnect for this long, e.g.
                    30s (the default), 2m, 500ms; 0 turns reconnecting off
                    (also $STDIOPROXY_RECONNECT_TIMEOUT)";

/// Environment variable for `--reconnect-timeout`.
pub const RECONNECT_TIMEOUT_ENV: &str = "STDIOPROXY_RECONNECT_TIMEOUT";

/// How long the shim tries to reconnect unless told otherwise.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the command line and the environment say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--socket`: `None` resolves through [`crate::paths::socket_path`].
    pub socket: Option<PathBuf>,
    /// `--servers`: only these servers are visible (all when empty).
    pub servers: Vec<String>,
    /// `--reconnect-timeout`: zero means do not reconnect.
    pub reconnect_timeout: Duration,
    /// `--server`, `--name-max`, `--tools` (see [`crate::fit_options`]).
    pub fit: Fit,
    /// `--workspace`: the current directory when `None`.
    pub workspace: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: None,
            servers: Vec::new(),
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            fit: Fit::default(),
            workspace: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
    Version,
}

impl Options {
    /// Defaults overridden by the environment (`var` reads a variable).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Options, String> {
        let mut o = Options::default();
        if let Some(v) = var(RECONNECT_TIMEOUT_ENV).filter(|v| !v.trim().is_empty()) {
            o.reconnect_timeout =
                reconnect_timeout(&v).map_err(|e| format!("{RECONNECT_TIMEOUT_ENV}: {e}"))?;
        }
        Ok(o)
    }

    /// Parses the arguments (without the program name) over `self`.
    /// Errors are one sentence for stderr.
    pub fn parse(mut self, args: impl IntoIterator<Item = String>) -> Result<Command, String> {
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                _ if flag.starts_with('-') => {
                    let value = match inline {
                        Some(v) => v,
                        None if TAKES_VALUE.contains(&flag.as_str())
                            || fit_options::FLAGS.contains(&flag.as_str()) =>
                        {
                            args.next().ok_or_else(|| format!("{flag} needs a value"))?
                        }
                        None => return Err(format!("unknown argument {arg:?}")),
                    };
                    self.set(&flag, value)?;
                }
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        self.fit.check(&self.servers)?;
        Ok(Command::Run(self))
    }

    /// Sets one option from its value.
    fn set(&mut self, flag: &str, value: String) -> Result<(), String> {
        match flag {
            "--socket" => self.socket = Some(PathBuf::from(value)),
            "--servers" => self.servers.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "--workspace" => self.workspace = Some(PathBuf::from(value)),
            "--reconnect-timeout" => {
                self.reconnect_timeout =
                    reconnect_timeout(&value).map_err(|e| format!("--reconnect-timeout: {e}"))?
            }
            f if fit_options::FLAGS.contains(&f) => self.fit.set(f, value)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
        Ok(())
    }

    /// The hello line's fields for a new (`resume: None`) or resumed
    /// session.
    pub fn hello(&self, resume: Option<Resumed>) -> Hello {
        Hello {
            stdioproxy: PROTO_VERSION,
            shim: Some(env!("CARGO_PKG_VERSION").to_string()),
            servers: (!self.servers.is_empty()).then(|| self.servers.clone()),
            resume,
            server: self.fit.server.clone(),
            name_max: self.fit.name_max.map(|n| n as u64),
            tools: self.fit.tools.clone(),
            workspace: self
                .session_workspace()
                .map(|w| crate::workspace::Workspace::hello_value(&w)),
            ..Hello::default()
        }
    }

    /// The workspace sent in the hello: `--workspace DIR` or the current
    /// directory, canonicalised. A directory that cannot be resolved is sent
    /// as an absolute path anyway, so the daemon refuses the session with
    /// the reason (which the client sees as this process's error).
    pub fn session_workspace(&self) -> Option<PathBuf> {
        let dir = match &self.workspace {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().ok()?,
        };
        std::fs::canonicalize(&dir)
            .ok()
            .or_else(|| std::path::absolute(&dir).ok())
    }
}

/// Flags that take a value (also as `--flag VALUE`, not only `--flag=VALUE`).
const TAKES_VALUE: &[&str] = &[
    "--socket",
    "--servers",
    "--workspace",
    "--reconnect-timeout",
];

/// `0` (off) or a duration such as `30s`.
fn reconnect_timeout(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::config::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::from_env(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?
            .parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_and_env() {
        let Ok(Command::Run(o)) = parse(&[], &[]) else {
            panic!("no run")
        };
        assert_eq!(o.reconnect_timeout, DEFAULT_RECONNECT_TIMEOUT);
        let Ok(Command::Run(o)) = parse(
            &[
                "--socket",
                "/s",
                "--servers=a, b",
                "--reconnect-timeout",
                "0",
            ],
            &[(RECONNECT_TIMEOUT_ENV, "5s")],
        ) else {
            panic!("no run")
        };
        assert_eq!(o.socket, Some(PathBuf::from("/s")));
        assert_eq!(o.servers, vec!["a", "b"]);
        assert_eq!(o.reconnect_timeout, Duration::ZERO);
        let Ok(Command::Run(o)) = parse(&[], &[(RECONNECT_TIMEOUT_ENV, "2m")]) else {
            panic!("no run")
        };
        assert_eq!(o.reconnect_timeout, Duration::from_secs(120));
        let Ok(Command::Run(o)) = parse(&["--workspace", "/no/such/dir/x"], &[]) else {
            panic!("no run")
        };
        assert_eq!(o.session_workspace(), Some(PathBuf::from("/no/such/dir/x")));
        let here = std::fs::canonicalize(".").unwrap();
        assert_eq!(Options::default().session_workspace(), Some(here));
        assert!(parse(&["--reconnect-timeout", "soon"], &[]).is_err());
        assert!(parse(&[], &[(RECONNECT_TIMEOUT_ENV, "x")]).is_err());
        assert!(parse(&["--socket"], &[]).is_err());
        assert!(parse(&["--bogus"], &[]).is_err());
        assert!(parse(&["stray"], &[]).is_err());
        assert_eq!(parse(&["-h"], &[]), Ok(Command::Help));
        let Ok(Command::Run(o)) = parse(
            &["--server", "github", "--name-max=47", "--tools", "search"],
            &[],
        ) else {
            panic!("no run")
        };
        let hello = o.hello(None);
        assert_eq!(hello.server.as_deref(), Some("github"));
        assert_eq!(hello.name_max, Some(47));
        assert_eq!(hello.tools.as_deref(), Some("search"));
        assert!(parse(&["--name-max", "7"], &[]).is_err());
        assert!(parse(&["--tools", "all"], &[]).is_err());
        assert!(parse(&["--server", "a", "--servers", "b"], &[]).is_err());
    }
}
