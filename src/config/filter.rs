//! Per-server tool filters: `tools = { allow = ["read_*"], deny = ["*delete*"] }`.
//!
//! A tool is exposed when it matches some `allow` glob (or `allow` is empty)
//! and matches no `deny` glob. Globs are matched against the tool's original
//! name (as the server lists it): `*` is any run of characters, `?` exactly
//! one, everything else is literal. Hand-written because that is the whole
//! grammar. Filters change in place on reload: no new process is needed.

use serde::{Deserialize, Deserializer};

/// A glob over tool names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A glob; every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_string())
    }

    /// True when `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom(
                "an empty pattern matches nothing; remove it",
            ));
        }
        Ok(Glob(s))
    }
}

/// `tools = { allow = [...], deny = [...] }`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFilter {
    /// Only tools matching one of these are exposed (all when empty).
    #[serde(default)]
    pub allow: Vec<Glob>,
    /// Tools matching one of these are never exposed.
    #[serde(default)]
    pub deny: Vec<Glob>,
}

impl ToolFilter {
    /// True when the tool named `name` is exposed.
    pub fn allows(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(name)))
            && !self.deny.iter().any(|g| g.matches(name))
    }

    /// True when the filter lets everything through.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in
/// practice, never exponential.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| Glob::new(p).matches(t);
        assert!(m("read_*", "read_file"));
        assert!(m("*", ""));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*delete*", "bulk_delete_all"));
        assert!(!m("*delete*", "remove"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
    }

    #[test]
    fn allow_then_deny() {
        let f = ToolFilter {
            allow: vec![Glob::new("read_*"), Glob::new("list_*")],
            deny: vec![Glob::new("*_secret")],
        };
        assert!(f.allows("read_file"));
        assert!(!f.allows("write_file"));
        assert!(!f.allows("read_secret"));
        assert!(ToolFilter::default().allows("anything"));
        assert!(ToolFilter::default().is_open());
    }
}
