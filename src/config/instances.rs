//! How many processes a server runs and when: `share`, `start`, `idle_stop`
//! and `max_instances` (see docs/INSTANCES.md).
//!
//! The four keys may be set per server and in `[defaults]`. Their defaults
//! depend on the mode, because what is right for a shared stateless server
//! (start at boot, never stop) is wrong for a per-workspace git server (start
//! when a project first uses it, stop a while after the last one leaves).
//! Combinations that mean nothing are errors located at the key, so a
//! reader never wonders which of two contradicting settings wins:
//! `idle_stop` on a per-client server (its instance stops when its session
//! closes) and `max_instances` on a shared one (it has one instance).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigDuration, ServerConfig, Timeouts};

/// Who shares one process of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Share {
    /// One process for every client (stateless servers).
    #[default]
    Shared,
    /// One process per client session (browsers, REPLs, database sessions).
    PerClient,
    /// One process per workspace directory (git, filesystem, language
    /// servers), started there and told it as its only root.
    PerWorkspace,
}

impl Share {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Share::Shared => "shared",
            Share::PerClient => "per-client",
            Share::PerWorkspace => "per-workspace",
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When an instance is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// As soon as it can be: a shared server at daemon start, a per-client
    /// one when its session opens, a per-workspace one when the first
    /// session of its workspace opens.
    Eager,
    /// On the first call of one of its tools, prompts or resources; its
    /// catalog comes from the on-disk cache meanwhile.
    Lazy,
}

impl Start {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Start::Eager => "eager",
            Start::Lazy => "lazy",
        }
    }
}

/// `max_instances`: at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceLimit(pub usize);

impl<'de> Deserialize<'de> for InstanceLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = usize::deserialize(d)?;
        if n == 0 {
            return Err(serde::de::Error::custom(
                "max_instances must be at least 1 (0 would refuse every call; leave it out for no limit)",
            ));
        }
        Ok(InstanceLimit(n))
    }
}

/// The idle stop of a per-workspace server, and of a lazy one, unless set.
pub const DEFAULT_IDLE_STOP: Duration = Duration::from_secs(600);

/// A server's instance settings with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveInstances {
    /// Who shares a process.
    pub share: Share,
    /// When an instance starts.
    pub start: Start,
    /// Stop an instance nobody used for this long (`None`: never for
    /// idleness). Per-client instances stop with their session instead.
    pub idle_stop: Option<Duration>,
    /// Most instances at once (`None`: no limit). Always `None` for shared.
    pub max_instances: Option<usize>,
}

impl EffectiveInstances {
    /// True when instances are keyed by session or workspace.
    pub fn is_pooled(&self) -> bool {
        self.share != Share::Shared
    }
}

impl ServerConfig {
    /// This server's instance settings over `defaults` over the built-in
    /// ones: `share` shared; `start` eager for shared servers and lazy (on
    /// first use) for the others; `idle_stop` 10m for per-workspace and lazy
    /// servers, never for eager shared ones, and not at all for per-client
    /// ones; `"0s"` means never.
    pub fn instances(&self, defaults: &Timeouts) -> EffectiveInstances {
        let share = value(&self.share).or(defaults.share).unwrap_or_default();
        let start = self.start.or(defaults.start).unwrap_or(match share {
            Share::Shared => Start::Eager,
            Share::PerClient | Share::PerWorkspace => Start::Lazy,
        });
        let idle_stop = match share {
            Share::PerClient => None,
            _ => {
                let set = value(&self.idle_stop).or(defaults.idle_stop);
                let builtin = (share == Share::PerWorkspace || start == Start::Lazy)
                    .then_some(DEFAULT_IDLE_STOP);
                set.map_or(builtin, |d| (!d.0.is_zero()).then_some(d.0))
            }
        };
        let max_instances = match share {
            Share::Shared => None,
            _ => value(&self.max_instances)
                .or(defaults.max_instances)
                .map(|m| m.0),
        };
        EffectiveInstances {
            share,
            start,
            idle_stop,
            max_instances,
        }
    }

    /// A key set on this server that its (effective) mode makes
    /// meaningless: the byte span of the value and why. Checked after
    /// parsing, when `[defaults]` is known.
    pub(super) fn instance_conflict(
        &self,
        defaults: &Timeouts,
    ) -> Option<(std::ops::Range<usize>, String)> {
        let share = self.instances(defaults).share;
        if let (Share::PerClient, Some(idle)) = (share, &self.idle_stop) {
            return Some((
                idle.span(),
                "idle_stop means nothing for a per-client server: its instance stops when its client session closes (after stop_grace); remove it, or use share = \"per-workspace\" or \"shared\"".into(),
            ));
        }
        if let (Share::Shared, Some(max)) = (share, &self.max_instances) {
            return Some((
                max.span(),
                "max_instances applies to per-client and per-workspace servers; a shared server has one instance (set share = \"per-client\" or \"per-workspace\", or remove it)".into(),
            ));
        }
        None
    }
}

/// The value of a key kept with where it was written, without the span.
pub(super) fn value<T: Copy>(key: &Option<toml::Spanned<T>>) -> Option<T> {
    key.as_ref().map(|k| *k.get_ref())
}

/// Deserialises `idle_stop` keeping where it was written.
pub(super) type SpannedDuration = toml::Spanned<ConfigDuration>;

#[cfg(test)]
mod tests {
    use super::super::{parse_str, Config, ServerName};
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, super::super::ConfigError> {
        parse_str(Path::new("c.toml"), text)
    }

    fn inst(c: &Config, name: &str) -> EffectiveInstances {
        let name = ServerName::new(name).unwrap();
        c.servers[&name].instances(&c.defaults)
    }

    #[test]
    fn defaults_depend_on_the_mode() {
        let c = parse(
            r#"
[servers.plain]
command = "x"
[servers.browser]
command = "x"
share = "per-client"
[servers.git]
command = "x"
share = "per-workspace"
max_instances = 4
[servers.rare]
command = "x"
start = "lazy"
[servers.never]
command = "x"
share = "per-workspace"
idle_stop = "0s"
"#,
        )
        .unwrap();
        let p = inst(&c, "plain");
        assert_eq!(
            (p.share, p.start, p.idle_stop, p.max_instances),
            (Share::Shared, Start::Eager, None, None)
        );
        assert!(!p.is_pooled());
        let b = inst(&c, "browser");
        assert_eq!(
            (b.share, b.start, b.idle_stop),
            (Share::PerClient, Start::Lazy, None)
        );
        let g = inst(&c, "git");
        assert_eq!(g.idle_stop, Some(DEFAULT_IDLE_STOP));
        assert_eq!(g.max_instances, Some(4));
        assert!(g.is_pooled());
        assert_eq!(inst(&c, "rare").idle_stop, Some(DEFAULT_IDLE_STOP));
        assert_eq!(inst(&c, "never").idle_stop, None);
    }

    #[test]
    fn defaults_section_applies_and_servers_override_it() {
        let c = parse(
            r#"
[defaults]
share = "per-workspace"
start = "eager"
idle_stop = "2m"
max_instances = 3

[servers.a]
command = "x"
[servers.b]
command = "x"
share = "shared"
start = "lazy"
idle_stop = "30s"
[servers.c]
command = "x"
share = "per-client"
"#,
        )
        .unwrap();
        let a = inst(&c, "a");
        assert_eq!(
            (a.share, a.start, a.idle_stop, a.max_instances),
            (
                Share::PerWorkspace,
                Start::Eager,
                Some(Duration::from_secs(120)),
                Some(3)
            )
        );
        let b = inst(&c, "b");
        assert_eq!(
            (b.share, b.start, b.idle_stop, b.max_instances),
            (
                Share::Shared,
                Start::Lazy,
                Some(Duration::from_secs(30)),
                None
            )
        );
        // The defaults' idle_stop does not apply to per-client servers.
        let c3 = inst(&c, "c");
        assert_eq!((c3.idle_stop, c3.max_instances), (None, Some(3)));
    }

    #[test]
    fn bad_values_are_located() {
        for (text, line, needle) in [
            ("[servers.a]\ncommand = \"x\"\nshare = \"per-user\"\n", 3, "per-workspace"),
            ("[servers.a]\ncommand = \"x\"\nstart = \"later\"\n", 3, "lazy"),
            ("[servers.a]\ncommand = \"x\"\nshare = \"per-client\"\n\nmax_instances = 0\n", 5, "at least 1"),
            ("[defaults]\nmax_instances = 0\n", 2, "at least 1"),
            ("[defaults]\nshare = \"all\"\n", 2, "shared"),
            ("[servers.a]\ncommand = \"x\"\nshare = \"per-client\"\nidle_stop = \"5m\"\n", 4, "per-client"),
            ("[defaults]\nshare = \"per-client\"\n[servers.a]\ncommand = \"x\"\nidle_stop = \"5m\"\n", 5, "per-client"),
            ("[servers.a]\ncommand = \"x\"\nmax_instances = 2\n", 3, "shared"),
            ("[servers.a]\ncommand = \"x\"\nidle_stop = \"5\"\n", 3, "needs a unit"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.position.map(|p| p.0), Some(line), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("c.toml:{line}:")), "{e}");
        }
        // A per-client server under a per-workspace default may not set
        // idle_stop either, but the defaults' own idle_stop is fine.
        assert!(parse("[defaults]\nidle_stop = \"1m\"\n[servers.a]\ncommand = \"x\"\nshare = \"per-client\"\n").is_ok());
    }
}
