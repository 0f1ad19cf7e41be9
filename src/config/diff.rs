//! The difference between the running config and a new one, per server.
//!
//! Pure and unit-tested: what the reload applies is decided here and nowhere
//! else. A disabled server counts as absent, so enabling one is an addition
//! and disabling one a removal.

use std::collections::BTreeSet;

use super::{Config, ServerConfig};

/// What a reload changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    /// New servers: start them.
    pub added: Vec<String>,
    /// Gone (or disabled) servers: drain and stop them.
    pub removed: Vec<String>,
    /// Command, args, env or cwd changed, or `share` or `start`: start new
    /// instances, switch to them when ready, drain and stop the old ones
    /// (for a lazy or pooled server: new instances start on demand).
    pub replaced: Vec<String>,
    /// Only options that need no new process changed (timeouts, tool
    /// filters, the list of roots, `idle_stop`, `max_instances`): applied
    /// in place.
    pub updated: Vec<String>,
    /// Untouched.
    pub unchanged: Vec<String>,
    /// `[daemon]` settings changed.
    pub daemon_changed: bool,
}

impl ConfigDiff {
    /// True when nothing at all changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.replaced.is_empty()
            && self.updated.is_empty()
            && !self.daemon_changed
    }

    /// One line for logs, status and `stdioproxy reload`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes".into();
        }
        let mut parts = Vec::new();
        for (label, list) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.replaced),
            ("updated in place", &self.updated),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}: {}", list.join(", ")));
            }
        }
        if self.daemon_changed {
            parts.push("daemon settings updated".into());
        }
        if !self.unchanged.is_empty() {
            parts.push(format!("unchanged: {}", self.unchanged.join(", ")));
        }
        parts.join("; ")
    }
}

/// Computes what it takes to go from `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let enabled = |c: &Config| -> BTreeSet<String> {
        c.enabled_servers()
            .map(|(n, _)| n.as_str().to_string())
            .collect()
    };
    let (before, after) = (enabled(old), enabled(new));
    let get = |c: &'_ Config, name: &str| -> Option<ServerConfig> {
        c.servers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, s)| s.clone())
    };
    let mut d = ConfigDiff {
        daemon_changed: old.daemon != new.daemon,
        ..ConfigDiff::default()
    };
    for name in after.difference(&before) {
        d.added.push(name.clone());
    }
    for name in before.difference(&after) {
        d.removed.push(name.clone());
    }
    for name in before.intersection(&after) {
        let (Some(o), Some(n)) = (get(old, name), get(new, name)) else {
            continue;
        };
        let list = match classify(old, &o, new, &n) {
            Change::Replace => &mut d.replaced,
            Change::Update => &mut d.updated,
            Change::Same => &mut d.unchanged,
        };
        list.push(name.clone());
    }
    d
}

/// How one server present on both sides changes.
enum Change {
    Replace,
    Update,
    Same,
}

/// The one place that says which settings need a new process and which are
/// applied in place: adding a key is one line in one of the two lists.
fn classify(old: &Config, o: &ServerConfig, new: &Config, n: &ServerConfig) -> Change {
    let (oi, ni) = (o.instances(&old.defaults), n.instances(&new.defaults));
    let replace = [
        o.needs_new_process(n),
        oi.share != ni.share,
        oi.start != ni.start,
    ];
    let update = [
        o.timeouts().resolve(&old.defaults) != n.timeouts().resolve(&new.defaults),
        o.tools != n.tools,
        o.roots != n.roots,
        oi != ni,
    ];
    if replace.contains(&true) {
        Change::Replace
    } else if update.contains(&true) {
        Change::Update
    } else {
        Change::Same
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        super::super::parse_str(Path::new("t.toml"), text).unwrap()
    }

    #[test]
    fn classifies_every_kind_of_change() {
        let old = cfg(r#"
[servers.same]
command = "a"
[servers.gone]
command = "b"
[servers.args]
command = "c"
args = ["1"]
[servers.env]
command = "d"
env = { K = "1" }
[servers.timeout]
command = "e"
request_timeout = "1m"
[servers.off]
command = "f"
enabled = false
[servers.defaults]
command = "g"
[servers.filter]
command = "i"
[servers.roots]
command = "j"
roots = ["/a"]
[servers.noroots]
command = "k"
"#);
        let new = cfg(r#"
[defaults]
stop_grace = "9s"
[servers.same]
command = "a"
stop_grace = "5s"
[servers.args]
command = "c"
args = ["2"]
[servers.env]
command = "d"
env = { K = "2" }
[servers.timeout]
command = "e"
request_timeout = "2m"
stop_grace = "5s"
[servers.off]
command = "f"
[servers.new]
command = "h"
[servers.defaults]
command = "g"
[servers.filter]
command = "i"
tools = { deny = ["x*"] }
[servers.roots]
command = "j"
roots = ["/a", "/b"]
[servers.noroots]
command = "k"
roots = ["/a"]
"#);
        let d = diff(&old, &new);
        assert_eq!(d.added, vec!["new", "off"]);
        assert_eq!(d.removed, vec!["gone"]);
        assert_eq!(d.replaced, vec!["args", "env", "noroots"]);
        assert_eq!(d.updated, vec!["defaults", "filter", "roots", "timeout"]);
        assert_eq!(d.unchanged, vec!["same"]);
        assert!(!d.daemon_changed);
        assert!(d.summary().contains("restarted: args, env"));
    }

    #[test]
    fn instance_settings_replace_or_update() {
        let old = cfg(r#"
[servers.share]
command = "a"
[servers.start]
command = "b"
[servers.idle]
command = "c"
share = "per-workspace"
[servers.max]
command = "d"
share = "per-client"
[servers.viadefaults]
command = "e"
[servers.same]
command = "f"
share = "per-client"
"#);
        let new = cfg(r#"
[defaults]
idle_stop = "5m"
[servers.share]
command = "a"
share = "per-client"
[servers.start]
command = "b"
start = "lazy"
[servers.idle]
command = "c"
share = "per-workspace"
idle_stop = "1m"
[servers.max]
command = "d"
share = "per-client"
max_instances = 2
[servers.viadefaults]
command = "e"
[servers.same]
command = "f"
share = "per-client"
start = "lazy"
"#);
        let d = diff(&old, &new);
        assert_eq!(d.replaced, vec!["share", "start"]);
        // The defaults' idle_stop now stops `viadefaults` when idle;
        // `same` spells out its mode's default and is per-client (the
        // defaults' idle_stop does not apply to it).
        assert_eq!(d.updated, vec!["idle", "max", "viadefaults"]);
        assert_eq!(d.unchanged, vec!["same"]);
    }

    #[test]
    fn identical_configs_have_an_empty_diff() {
        let c = cfg("[servers.a]\ncommand = \"x\"\n");
        let d = diff(&c, &c.clone());
        assert!(d.is_empty());
        assert_eq!(d.summary(), "no changes");
        let d = diff(
            &c,
            &cfg("[daemon]\npage_size = 3\n[servers.a]\ncommand = \"x\"\n"),
        );
        assert!(d.daemon_changed && !d.is_empty());
    }
}
