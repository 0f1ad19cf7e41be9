//! A session's workspace: the project directory its per-workspace instances
//! run in and are told as their only root.
//!
//! The shim sends it in the hello (its `--workspace DIR`, else its working
//! directory, canonicalised). The daemon canonicalises it again, because
//! the hello may come from an older shim or another program, and refuses the
//! session when it is not an existing directory. A path is bytes, not text:
//! one that is not UTF-8 travels as a JSON array of its bytes, and every
//! place a person reads it (logs, `status`) gets an escaped rendering, so a
//! newline or an escape sequence in a directory name cannot forge a log line
//! or garble a terminal.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A canonical, existing directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workspace(PathBuf);

impl Workspace {
    /// Canonicalises `path` (absolute, symlinks resolved) and checks that it
    /// is a directory. The error is a sentence naming the path.
    pub fn resolve(path: &Path) -> Result<Self, String> {
        let shown = Escaped(path.as_os_str().as_bytes());
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| format!("workspace {shown} cannot be used: {e}"))?;
        if !canonical.is_dir() {
            return Err(format!("workspace {shown} is not a directory"));
        }
        Ok(Self(canonical))
    }

    /// The workspace of a hello's `workspace` member: a string, or an array
    /// of bytes for a path that is not UTF-8. `Ok(None)` when absent.
    pub fn from_hello(value: Option<&Value>) -> Result<Option<Self>, String> {
        let bytes: Vec<u8> = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<_>>()
                .ok_or("workspace must be a path: a string, or an array of bytes")?,
            Some(_) => {
                return Err("workspace must be a path: a string, or an array of bytes".into())
            }
        };
        if bytes.is_empty() {
            return Err("workspace is empty".into());
        }
        if bytes.contains(&0) {
            return Err("workspace contains a NUL byte".into());
        }
        let path = Path::new(OsStr::from_bytes(&bytes));
        if !path.is_absolute() {
            return Err(format!(
                "workspace {} must be an absolute path",
                Escaped(&bytes)
            ));
        }
        Self::resolve(path).map(Some)
    }

    /// How a hello carries `path`: a string when it is UTF-8, else its bytes.
    pub fn hello_value(path: &Path) -> Value {
        match path.to_str() {
            Some(s) => Value::String(s.to_string()),
            None => Value::Array(
                path.as_os_str()
                    .as_bytes()
                    .iter()
                    .map(|b| Value::from(*b))
                    .collect(),
            ),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The `file://` URI of the directory, percent-encoded from its bytes.
    pub fn uri(&self) -> String {
        file_uri(&self.0)
    }

    /// The `roots/list` result naming exactly this directory.
    pub fn roots_result(&self) -> String {
        let name = self
            .0
            .file_name()
            .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
        serde_json::json!({ "roots": [{ "uri": self.uri(), "name": name }] }).to_string()
    }

    /// The path for JSON (`status --json`): lossy where it is not UTF-8.
    pub fn lossy(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    /// A short stable id for the directory (the `STDIOPROXY_INSTANCE` of
    /// its instances).
    pub fn id(&self) -> String {
        format!(
            "{:016x}",
            crate::names::fnv1a64(self.0.as_os_str().as_bytes())
        )
    }
}

/// The `file://` URI of an absolute path, percent-encoded from its bytes
/// (so a name that is not UTF-8 keeps its exact bytes).
pub fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Logs and `status` print the escaped form: `"/tmp/a\nb"`.
impl fmt::Display for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Escaped(self.0.as_os_str().as_bytes()).fmt(f)
    }
}

impl fmt::Debug for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Bytes of a path rendered for people: quoted, with control characters,
/// quotes, backslashes and bytes that are not UTF-8 escaped.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    c if c.is_control() => write!(f, "{}", c.escape_default())?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_existing_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let via_link = Workspace::resolve(&dir.path().join("link/.")).unwrap();
        assert_eq!(via_link, Workspace::resolve(&real).unwrap());
        assert_eq!(via_link.path(), std::fs::canonicalize(&real).unwrap());

        let e = Workspace::resolve(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("missing") && e.contains("cannot be used"), "{e}");
        std::fs::write(dir.path().join("file"), "").unwrap();
        let e = Workspace::resolve(&dir.path().join("file")).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn hello_values_roundtrip_odd_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join(OsStr::from_bytes(b"a\nb \xff\x1b[31m\"q"));
        std::fs::create_dir(&odd).unwrap();
        let v = Workspace::hello_value(&odd);
        assert!(v.is_array(), "not UTF-8, so bytes: {v}");
        let w = Workspace::from_hello(Some(&v)).unwrap().unwrap();
        assert_eq!(w.path(), std::fs::canonicalize(&odd).unwrap());
        let shown = w.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\x1b'), "{shown}");
        assert!(shown.ends_with("a\\nb \\xff\\u{1b}[31m\\\"q\""), "{shown}");
        assert!(
            w.uri().ends_with("/a%0Ab%20%FF%1B%5B31m%22q"),
            "{}",
            w.uri()
        );
        let roots: Value = serde_json::from_str(&w.roots_result()).unwrap();
        assert_eq!(roots["roots"][0]["uri"], w.uri());
        assert_eq!(roots["roots"].as_array().unwrap().len(), 1);

        let plain = Workspace::hello_value(dir.path());
        assert!(plain.is_string());
        assert!(Workspace::from_hello(Some(&plain)).unwrap().is_some());
        assert_eq!(Workspace::from_hello(None).unwrap(), None);
        assert_eq!(Workspace::from_hello(Some(&Value::Null)).unwrap(), None);
    }

    #[test]
    fn bad_hello_values_are_refused_with_a_reason() {
        for (v, needle) in [
            (json!(3), "a string"),
            (json!([1, 300]), "array of bytes"),
            (json!(""), "empty"),
            (json!("relative/dir"), "absolute"),
            (json!("/no/such/dir/for/stdioproxy"), "cannot be used"),
            (json!("/tmp/a\u{0}b"), "NUL"),
        ] {
            let e = Workspace::from_hello(Some(&v)).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }
}
