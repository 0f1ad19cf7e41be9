//! The TOML config: what servers exist and how the daemon treats them.
//!
//! Types here are the parsed, validated form; [`load`] reads a file into them
//! and turns every problem into a [`ConfigError`] naming file, line and column.
//! Unknown keys are errors (`deny_unknown_fields`): a typo such as `comand`
//! must not silently start nothing. Secret-bearing values (`env`) are never
//! printed: `Debug` redacts them.

mod diff;
mod duplicate;
mod duration;
mod expand;
mod filter;
mod instances;
mod load;
mod roots;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use diff::{diff, ConfigDiff};
pub use duration::{parse_duration, ConfigDuration};
pub use expand::{expand_env_table, expand_env_table_with, expand_vars};
pub use filter::{Glob, ToolFilter};
pub use instances::{EffectiveInstances, InstanceLimit, Share, Start, DEFAULT_IDLE_STOP};
pub use load::{check_permissions, load, parse_str, ConfigError};
pub use roots::RootPath;

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon-wide settings.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// Per-server option defaults (timeouts, instance settings),
    /// overridable per server.
    #[serde(default)]
    pub defaults: Timeouts,
    /// The servers, keyed by name. The name is the tool prefix clients see.
    #[serde(default)]
    pub servers: BTreeMap<ServerName, ServerConfig>,
}

/// Daemon-wide settings (`[daemon]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Items per page of `tools/list` and friends. Large by default because
    /// some clients ignore `nextCursor`.
    pub page_size: usize,
    /// Largest message accepted from a client or a child, in bytes (at least
    /// 1 KiB: below that not even `initialize` fits).
    #[serde(deserialize_with = "message_size")]
    pub max_message_size: usize,
    /// Most client sessions open at once; one more is refused with a message
    /// (the hello reply for a shim, a JSON-RPC error for a plain client).
    /// Control requests (`status`, `reload`) are not sessions and always work.
    #[serde(deserialize_with = "at_least_one")]
    pub max_sessions: usize,
    /// How long a new connection may stay silent before its first line
    /// (hello, control request or first MCP message); then it is dropped.
    #[serde(deserialize_with = "nonzero_duration")]
    pub handshake_timeout: ConfigDuration,
    /// Quiet time after the last config file event before reloading.
    pub reload_debounce: ConfigDuration,
    /// Reload when the config file changes (inotify). When false, only
    /// SIGHUP and `stdioproxy reload` reload. Read at start.
    pub watch_config: bool,
    /// Expose the built-in tool `stdioproxy__reload`, which lets a client
    /// make the daemon re-read its config. Off by default: a model should
    /// not be able to restart servers unless you decided it may.
    pub reload_tool: bool,
    /// While the daemon's first start is under way (no cached lists yet),
    /// how long a session's first `tools/list` may wait for every enabled
    /// server to be ready or to have failed, so a client that ignores
    /// `list_changed` does not keep a partial catalog. "0s" answers at once.
    pub first_list_wait: ConfigDuration,
}

/// How long a new connection may stay silent before its first line, unless
/// `[daemon] handshake_timeout` says otherwise.
pub const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// The running `[daemon]` settings, shared by the reloader (which replaces
/// them whole on reload) and their readers (listener, sessions): a read is
/// a lock-free snapshot that a concurrent reload never tears.
#[derive(Clone)]
pub struct SettingsCell(std::sync::Arc<arc_swap::ArcSwap<DaemonSettings>>);

impl SettingsCell {
    /// A cell holding `settings`.
    pub fn new(settings: DaemonSettings) -> Self {
        Self(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
            settings,
        )))
    }

    /// The current settings.
    pub fn get(&self) -> std::sync::Arc<DaemonSettings> {
        self.0.load_full()
    }

    /// Replaces the settings (reload).
    pub fn set(&self, settings: DaemonSettings) {
        self.0.store(std::sync::Arc::new(settings));
    }
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            page_size: 1000,
            max_message_size: 16 * 1024 * 1024,
            max_sessions: 256,
            handshake_timeout: ConfigDuration(FIRST_LINE_TIMEOUT),
            reload_debounce: ConfigDuration(Duration::from_millis(150)),
            watch_config: true,
            reload_tool: false,
            first_list_wait: ConfigDuration(Duration::from_secs(5)),
        }
    }
}

/// Smallest accepted `max_message_size`.
pub const MIN_MESSAGE_SIZE: usize = 1024;

fn message_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n < MIN_MESSAGE_SIZE {
        return Err(serde::de::Error::custom(format!(
            "max_message_size must be at least {MIN_MESSAGE_SIZE} bytes (the default is 16777216)"
        )));
    }
    Ok(n)
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(
            "must be at least 1 (0 would refuse every client)",
        ));
    }
    Ok(n)
}

fn nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<ConfigDuration, D::Error> {
    let t = ConfigDuration::deserialize(d)?;
    if t.0.is_zero() {
        return Err(serde::de::Error::custom("must be longer than 0s"));
    }
    Ok(t)
}

/// Timeouts and supervision settings; every field is optional so that a
/// server's value falls back to `[defaults]`, then to the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Spawn + initialize + first tools/list (default 30s).
    pub startup_timeout: Option<ConfigDuration>,
    /// One client request, restarted by progress (default 5m).
    pub request_timeout: Option<ConfigDuration>,
    /// Interval of MCP ping health checks; "0s" disables (default 30s).
    pub health_interval: Option<ConfigDuration>,
    /// How long a health ping may take (default 10s).
    pub health_timeout: Option<ConfigDuration>,
    /// First restart delay (default 1s), doubled up to `restart_backoff_max`.
    pub restart_backoff: Option<ConfigDuration>,
    /// Longest restart delay (default 60s).
    pub restart_backoff_max: Option<ConfigDuration>,
    /// Wait after closing stdin before SIGTERM (default 5s).
    pub stop_grace: Option<ConfigDuration>,
    /// How long a removed or replaced server may finish in-flight calls
    /// before it is stopped (default 30s).
    pub drain_timeout: Option<ConfigDuration>,
    /// Pin tool definitions on first use and hold changed or new ones until
    /// `stdioproxy tools approve` (default false).
    pub pin_tools: Option<bool>,
    /// Who shares a process (`[defaults]` only; see `config::instances`).
    pub share: Option<Share>,
    /// When instances start (`[defaults]` only).
    pub start: Option<Start>,
    /// Idle time after which an instance stops (`[defaults]` only).
    pub idle_stop: Option<ConfigDuration>,
    /// Most instances of a per-client or per-workspace server
    /// (`[defaults]` only).
    pub max_instances: Option<InstanceLimit>,
}

/// Resolved timeouts with built-in defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveTimeouts {
    pub startup_timeout: Duration,
    pub request_timeout: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    pub stop_grace: Duration,
    pub drain_timeout: Duration,
    /// Tool definitions are pinned (see [`crate::pins`]).
    pub pin_tools: bool,
}

impl Timeouts {
    /// `self` over `defaults` over the built-in values.
    pub fn resolve(&self, defaults: &Timeouts) -> EffectiveTimeouts {
        let pick = |a: Option<ConfigDuration>, b: Option<ConfigDuration>, builtin: u64| {
            a.or(b).map_or(Duration::from_millis(builtin), |d| d.0)
        };
        EffectiveTimeouts {
            startup_timeout: pick(self.startup_timeout, defaults.startup_timeout, 30_000),
            request_timeout: pick(self.request_timeout, defaults.request_timeout, 300_000),
            health_interval: pick(self.health_interval, defaults.health_interval, 30_000),
            health_timeout: pick(self.health_timeout, defaults.health_timeout, 10_000),
            restart_backoff: pick(self.restart_backoff, defaults.restart_backoff, 1_000),
            restart_backoff_max: pick(
                self.restart_backoff_max,
                defaults.restart_backoff_max,
                60_000,
            ),
            stop_grace: pick(self.stop_grace, defaults.stop_grace, 5_000),
            drain_timeout: pick(self.drain_timeout, defaults.drain_timeout, 30_000),
            pin_tools: self.pin_tools.or(defaults.pin_tools).unwrap_or(false),
        }
    }
}

/// Server names a config cannot use: `stdioproxy` prefixes the daemon's own
/// tools.
pub const RESERVED_SERVER_NAMES: &[&str] = &["stdioproxy"];

/// A validated server name: `[A-Za-z0-9_-]+` without `__` (the separator in
/// exposed tool names) and not ending in `_` (so the first `__` of an
/// exposed name is always the separator), at most 32 characters so prefixed
/// names stay short, and not one of [`RESERVED_SERVER_NAMES`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);

impl ServerName {
    /// Validates a name.
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("server name is empty".into());
        }
        if name.len() > 32 {
            return Err(format!("server name {name:?} is longer than 32 characters"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "server name {name:?} contains {bad:?}; use only A-Z a-z 0-9 _ -"
            ));
        }
        if name.contains("__") || name.ends_with('_') {
            return Err(format!(
                "server name {name:?} contains \"__\" or ends with \"_\": \"__\" separates server and tool names"
            ));
        }
        if RESERVED_SERVER_NAMES.contains(&name) {
            return Err(format!(
                "server name {name:?} is reserved for the daemon's own tools; choose another"
            ));
        }
        Ok(Self(name.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ServerName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// One `[servers.NAME]` table.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Program to run: a bare name is looked up on the daemon's PATH, then
    /// next to the stdioproxy binary ([`crate::paths::resolve_program`]).
    pub command: Command,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment on top of the daemon's; values may use `${VAR}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; a leading `~` is expanded.
    pub cwd: Option<String>,
    /// A disabled server is not started (and clients do not see it).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Which of the server's tools clients see (applied in place on reload).
    #[serde(default)]
    pub tools: ToolFilter,
    /// The roots the daemon answers the server's `roots/list` with. The
    /// `roots` client capability is declared to the server only when this is
    /// set, so a shared server never sees one client's roots (server-filesystem
    /// would replace its allowed directories with them).
    pub roots: Option<Vec<RootPath>>,
    /// Which MCP era the server speaks: `auto` (probe it with
    /// `server/discover` in a throwaway spawn, cache the verdict), or
    /// `legacy` / `modern` to skip the probe.
    #[serde(default)]
    pub era: EraSetting,
    // Per-server timeouts, over `[defaults]`. Listed one by one rather than
    // flattened: serde's flatten loses the spans that errors need.
    startup_timeout: Option<ConfigDuration>,
    request_timeout: Option<ConfigDuration>,
    health_interval: Option<ConfigDuration>,
    health_timeout: Option<ConfigDuration>,
    restart_backoff: Option<ConfigDuration>,
    restart_backoff_max: Option<ConfigDuration>,
    stop_grace: Option<ConfigDuration>,
    drain_timeout: Option<ConfigDuration>,
    pin_tools: Option<bool>,
    // Instance settings (`config::instances`); spans kept where a
    // combination with the effective mode can be refused.
    share: Option<toml::Spanned<Share>>,
    start: Option<Start>,
    idle_stop: Option<instances::SpannedDuration>,
    max_instances: Option<toml::Spanned<InstanceLimit>>,
}

/// The `era` key of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EraSetting {
    /// Probe the child (once per command, args and env; the verdict is cached).
    #[default]
    Auto,
    /// `initialize` (2025-11-25 and before).
    Legacy,
    /// `2026-07-28`: stateless, `_meta` on every request.
    Modern,
}

fn yes() -> bool {
    true
}

/// A non-empty command string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command(pub String);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("command is empty"));
        }
        Ok(Command(s))
    }
}

impl ServerConfig {
    /// A server running `command` with defaults for everything else.
    pub fn new(command: &str) -> Self {
        Self {
            command: Command(command.to_string()),
            args: Vec::new(),
            env: Default::default(),
            cwd: None,
            enabled: true,
            tools: ToolFilter::default(),
            roots: None,
            era: EraSetting::Auto,
            startup_timeout: None,
            request_timeout: None,
            health_interval: None,
            health_timeout: None,
            restart_backoff: None,
            restart_backoff_max: None,
            stop_grace: None,
            drain_timeout: None,
            pin_tools: None,
            share: None,
            start: None,
            idle_stop: None,
            max_instances: None,
        }
    }

    /// This server's own timeout overrides.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            startup_timeout: self.startup_timeout,
            request_timeout: self.request_timeout,
            health_interval: self.health_interval,
            health_timeout: self.health_timeout,
            restart_backoff: self.restart_backoff,
            restart_backoff_max: self.restart_backoff_max,
            stop_grace: self.stop_grace,
            drain_timeout: self.drain_timeout,
            pin_tools: self.pin_tools,
            ..Timeouts::default()
        }
    }

    /// The working directory with `~` expanded.
    pub fn cwd_path(&self) -> Option<PathBuf> {
        self.cwd.as_deref().map(crate::paths::expand_tilde)
    }

    /// True when a change from `other` needs a new process: command, args,
    /// env or cwd differ, or roots appear or disappear (the roots capability
    /// is declared at initialize). Other differences (timeouts, tool
    /// filters, the list of roots) are applied in place. A change of
    /// `share` or `start` is decided with `[defaults]` in `config::diff`.
    pub fn needs_new_process(&self, other: &ServerConfig) -> bool {
        self.command != other.command
            || self.args != other.args
            || self.env != other.env
            || self.cwd != other.cwd
            || self.roots.is_some() != other.roots.is_some()
            || self.era != other.era
    }

    /// The `roots/list` result for this server, when roots are configured.
    pub fn roots_result(&self) -> Option<String> {
        self.roots.as_deref().map(roots::list_result)
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // env values may be tokens: print only the keys.
        f.debug_struct("ServerConfig")
            .field("command", &self.command.0)
            .field("args", &self.args)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("enabled", &self.enabled)
            .field("tools", &self.tools)
            .field("roots", &self.roots)
            .field("era", &self.era)
            .field("timeouts", &self.timeouts())
            .field("share", &instances::value(&self.share))
            .field("start", &self.start)
            .field("idle_stop", &instances::value(&self.idle_stop))
            .field(
                "max_instances",
                &instances::value(&self.max_instances).map(|m| m.0),
            )
            .finish()
    }
}

impl Config {
    /// The enabled servers, in name order.
    pub fn enabled_servers(&self) -> impl Iterator<Item = (&ServerName, &ServerConfig)> {
        self.servers.iter().filter(|(_, s)| s.enabled)
    }
}
