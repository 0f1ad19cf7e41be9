//! Per-server `roots = ["~/src", "/data"]`: what the daemon answers a
//! server's `roots/list` with.
//!
//! A shared server must not see one client's roots, so the daemon answers
//! `roots/list` itself from the config. Paths are absolute after `~`
//! expansion (checked when the config is read, with the error located) and
//! are sent as `file://` URIs, percent-encoded.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// An absolute directory path (after `~` expansion) from the config.
#[derive(Clone, PartialEq, Eq)]
pub struct RootPath(String);

impl RootPath {
    /// The path as written in the config.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `file://` URI of the path, `~` expanded.
    pub fn uri(&self) -> String {
        crate::workspace::file_uri(&crate::paths::expand_tilde(&self.0))
    }

    /// The last path component (the root's display name).
    pub fn name(&self) -> String {
        let path = crate::paths::expand_tilde(&self.0);
        path.file_name()
            .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned())
    }
}

impl fmt::Debug for RootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for RootPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !crate::paths::expand_tilde(&s).is_absolute() {
            return Err(serde::de::Error::custom(format!(
                "root {s:?} must be an absolute path (or start with ~/)"
            )));
        }
        Ok(RootPath(s))
    }
}

/// `{"roots":[{"uri":"file:///...","name":"..."}]}`.
pub fn list_result(roots: &[RootPath]) -> String {
    let roots: Vec<_> = roots
        .iter()
        .map(|r| serde_json::json!({ "uri": r.uri(), "name": r.name() }))
        .collect();
    serde_json::json!({ "roots": roots }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_percent_encoded() {
        let r = RootPath("/data/my dir/é".into());
        assert_eq!(r.uri(), "file:///data/my%20dir/%C3%A9");
        assert_eq!(r.name(), "é");
        assert_eq!(RootPath("/".into()).name(), "/");
        let v: serde_json::Value =
            serde_json::from_str(&list_result(&[RootPath("/srv".into())])).unwrap();
        assert_eq!(v["roots"][0]["uri"], "file:///srv");
        assert_eq!(v["roots"][0]["name"], "srv");
    }
}
