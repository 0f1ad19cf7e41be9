//! `stdioproxy setup-client <client>`: pointing an MCP client at `stdioproxy-shim`.
//!
//! Each supported client keeps an `mcpServers` object in a JSON file. We can
//! print the snippet to paste ([`snippet`]) or add the entry ourselves
//! ([`merge`]). Merging edits the user's file, so it is careful:
//!
//! - only `mcpServers.stdioproxy` changes. The new entry is spliced into the
//!   original text, so every other key keeps its order, formatting and
//!   content (Claude Code's `~/.claude.json` holds much more than servers);
//!   the result is re-parsed and compared with the intended document before
//!   anything is written;
//! - the original is copied to `<file>.bak.<unix-seconds>` first;
//! - the new content goes to a temporary file in the same directory that is
//!   then renamed over the original, so a crash never leaves half a file,
//!   and it gets the original's permission bits (these files can hold
//!   tokens; a new file is created `0600`);
//! - a symlinked config (dotfiles) is written through: the link stays;
//! - nothing is written when the entry is already there as wanted.
//!
//! Other `mcpServers` entries are left alone and reported, so the CLI can
//! suggest `stdioproxy import` to move them into the daemon's config.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// The key of our entry in `mcpServers`.
pub const ENTRY_NAME: &str = "stdioproxy";

/// An MCP client whose config we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// Claude Desktop (`claude_desktop_config.json`).
    ClaudeDesktop,
    /// Claude Code (`~/.claude.json`, user scope).
    ClaudeCode,
    /// Cursor (`~/.cursor/mcp.json`, global).
    Cursor,
}

impl Client {
    /// Every client, in the order shown to people.
    pub const ALL: [Client; 3] = [Client::ClaudeDesktop, Client::ClaudeCode, Client::Cursor];

    /// The command-line name: `claude-desktop`, `claude-code`, `cursor`.
    pub fn cli_name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
        }
    }

    /// The product name.
    pub fn display_name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "Claude Desktop",
            Client::ClaudeCode => "Claude Code",
            Client::Cursor => "Cursor",
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// An unknown client name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client {0:?}; expected one of: claude-desktop, claude-code, cursor")]
pub struct UnknownClient(pub String);

impl FromStr for Client {
    type Err = UnknownClient;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Client::ALL
            .into_iter()
            .find(|c| c.cli_name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownClient(s.to_string()))
    }
}

/// Where `client` keeps its MCP servers on Linux, under `home`.
pub fn config_path(client: Client, home: &Path) -> PathBuf {
    match client {
        Client::ClaudeDesktop => home.join(".config/Claude/claude_desktop_config.json"),
        Client::ClaudeCode => home.join(".claude.json"),
        Client::Cursor => home.join(".cursor/mcp.json"),
    }
}

/// What to paste into the client's config to use the shim at `shim`.
/// For Claude Code, also the `claude mcp add` command that does it.
pub fn snippet(client: Client, shim: &Path) -> String {
    let shim_str = shim.to_string_lossy();
    let json = pretty(&document_for(&shim_str)) + "\n";
    match client {
        Client::ClaudeCode => format!(
            "claude mcp add --scope user {ENTRY_NAME} -- {}\n\n\
             or merge this into ~/.claude.json:\n{json}",
            sh_quote(&shim_str)
        ),
        Client::ClaudeDesktop | Client::Cursor => json,
    }
}

/// What [`merge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The file written (the symlink target when the path was a symlink).
    pub path: PathBuf,
    /// The copy of the previous content, when there was a file and it changed.
    pub backup: Option<PathBuf>,
    /// The file did not exist before.
    pub created: bool,
    /// False when `mcpServers.stdioproxy` already pointed at the shim.
    pub changed: bool,
    /// A different `stdioproxy` entry was replaced.
    pub replaced: bool,
    /// Names of the other entries of the top-level `mcpServers`.
    pub other_servers: Vec<String>,
    /// Claude Code project-scope entries: (project path, name).
    pub project_servers: Vec<(String, String)>,
}

impl MergeOutcome {
    /// True when the client still starts other MCP servers itself (which
    /// `stdioproxy import` could move into the daemon's config).
    pub fn has_other_servers(&self) -> bool {
        !self.other_servers.is_empty() || !self.project_servers.is_empty()
    }
}

/// Why [`merge`] did not write.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Reading or writing failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The existing file is not JSON.
    #[error("{} is not valid JSON ({source}); fix it or move it away, then retry", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The JSON does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Shape { path: PathBuf, message: String },
    /// The shim path cannot be written into JSON.
    #[error("the shim path {} is not valid UTF-8", .0.display())]
    NonUtf8Shim(PathBuf),
}

/// Sets `mcpServers.stdioproxy` in `file` (the config of `client`) to run the
/// shim at `shim`, keeping everything else. A missing file counts as `{}`.
pub fn merge(client: Client, file: &Path, shim: &Path) -> Result<MergeOutcome, MergeError> {
    // Every supported client uses the same top-level `mcpServers` object;
    // the parameter keeps the API open for clients that differ.
    let _ = client;
    let shim_str = shim
        .to_str()
        .ok_or_else(|| MergeError::NonUtf8Shim(shim.to_path_buf()))?;
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io {
            action,
            path,
            source,
        }
    };

    let target = resolve_symlink(file).map_err(io_err("resolve", file))?;
    let original = match fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &target)(e)),
    };
    let text = match &original {
        Some(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| MergeError::Shape {
                path: target.clone(),
                message: format!("not UTF-8 text ({e})"),
            })?
            .to_string(),
        None => String::new(),
    };

    let spliced = merge_text(&text, shim_str).map_err(|e| match e {
        TextError::Json(source) => MergeError::Json {
            path: target.clone(),
            source,
        },
        TextError::Shape(message) => MergeError::Shape {
            path: target.clone(),
            message,
        },
    })?;

    let mut outcome = MergeOutcome {
        path: target.clone(),
        backup: None,
        created: original.is_none(),
        changed: spliced.text != text,
        replaced: spliced.replaced,
        other_servers: spliced.other_servers,
        project_servers: spliced.project_servers,
    };
    if !outcome.changed {
        return Ok(outcome);
    }

    let mode = match &original {
        Some(_) => {
            fs::metadata(&target)
                .map_err(io_err("inspect", &target))?
                .permissions()
                .mode()
                & 0o7777
        }
        None => 0o600,
    };
    if let Some(bytes) = &original {
        outcome.backup = Some(write_backup(file, bytes, mode)?);
    } else if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    write_atomically(&target, spliced.text.as_bytes(), mode).map_err(io_err("write", &target))?;
    Ok(outcome)
}

/// The file a write to `path` should replace: `path` itself, or the file a
/// symlink (chain) points to, so the link survives.
fn resolve_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_path_buf()),
    }
}

/// Copies the previous content to `<file>.bak.<unix-seconds>` (with `.N`
/// appended if that exists), with the original's permission bits.
fn write_backup(file: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, MergeError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut base = file.as_os_str().to_owned();
    base.push(format!(".bak.{secs}"));
    for n in 0..1000u32 {
        let mut candidate = base.clone();
        if n > 0 {
            candidate.push(format!(".{n}"));
        }
        let candidate = PathBuf::from(candidate);
        let opened = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&candidate);
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(MergeError::Io {
                    action: "create the backup",
                    path: candidate,
                    source,
                })
            }
        };
        let written = f
            .write_all(bytes)
            .and_then(|()| f.set_permissions(fs::Permissions::from_mode(mode & 0o777)))
            .and_then(|()| f.sync_all());
        return match written {
            Ok(()) => Ok(candidate),
            Err(source) => {
                let _ = fs::remove_file(&candidate);
                Err(MergeError::Io {
                    action: "write the backup",
                    path: candidate,
                    source,
                })
            }
        };
    }
    Err(MergeError::Io {
        action: "create the backup",
        path: PathBuf::from(base),
        source: io::Error::new(io::ErrorKind::AlreadyExists, "too many backups this second"),
    })
}

/// Writes `bytes` to a temporary file next to `target`, gives it `mode` and
/// renames it over `target`.
fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".stdioproxy-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);

    if let Err(e) = write_then_rename(&tmp, target, bytes, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable; failing that is not worth an error.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_then_rename(tmp: &Path, target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(bytes)?;
    // The umask does not apply to chmod: the original's bits exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    fs::rename(tmp, target)
}

// ---------------------------------------------------------------------------
// The JSON edit. serde_json's `preserve_order` keeps every key where it was;
// the file is re-rendered pretty with two-space indentation (what Claude,
// Claude Code and Cursor write) or compact when it was on one line.

#[derive(Debug)]
enum TextError {
    Json(serde_json::Error),
    Shape(String),
}

#[derive(Debug)]
struct Spliced {
    text: String,
    replaced: bool,
    other_servers: Vec<String>,
    project_servers: Vec<(String, String)>,
}

fn entry_value(shim: &str) -> Value {
    serde_json::json!({ "command": shim, "args": [] })
}

fn document_for(shim: &str) -> Value {
    serde_json::json!({ "mcpServers": { ENTRY_NAME: entry_value(shim) } })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Sets `mcpServers.stdioproxy` in the JSON `text`, keeping every other key
/// and its order. An entry that is already right leaves `text` unchanged.
fn merge_text(text: &str, shim: &str) -> Result<Spliced, TextError> {
    if text.trim().is_empty() {
        return Ok(Spliced {
            text: pretty(&document_for(shim)) + "\n",
            replaced: false,
            other_servers: Vec::new(),
            project_servers: Vec::new(),
        });
    }
    let mut doc: Value = serde_json::from_str(text).map_err(TextError::Json)?;
    let root = doc
        .as_object_mut()
        .ok_or_else(|| TextError::Shape("the top level is not a JSON object".into()))?;
    let project_servers = project_servers(root);
    let servers = root
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()));
    if servers.is_null() {
        *servers = Value::Object(Map::new());
    }
    let servers = servers
        .as_object_mut()
        .ok_or_else(|| TextError::Shape("\"mcpServers\" is not a JSON object".into()))?;
    let other_servers = servers
        .keys()
        .filter(|k| *k != ENTRY_NAME)
        .cloned()
        .collect();
    let wanted = entry_value(shim);
    let existing = servers.get(ENTRY_NAME).cloned();
    if existing.as_ref() == Some(&wanted) {
        return Ok(Spliced {
            text: text.to_string(),
            replaced: false,
            other_servers,
            project_servers,
        });
    }
    servers.insert(ENTRY_NAME.into(), wanted);
    let compact = !text.trim().contains('\n');
    let mut out = if compact {
        serde_json::to_string(&doc).map_err(TextError::Json)?
    } else {
        pretty(&doc)
    };
    if !compact || text.ends_with('\n') {
        out.push('\n');
    }
    Ok(Spliced {
        text: out,
        replaced: existing.is_some(),
        other_servers,
        project_servers,
    })
}

fn project_servers(root: &Map<String, Value>) -> Vec<(String, String)> {
    let Some(projects) = root.get("projects").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, project) in projects {
        if let Some(servers) = project.get("mcpServers").and_then(Value::as_object) {
            for name in servers.keys() {
                out.push((path.clone(), name.clone()));
            }
        }
    }
    out
}

/// Quotes a path for a POSIX shell command line.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const SHIM: &str = "/home/alice/.nix-profile/bin/stdioproxy-shim";

    fn merged(text: &str) -> String {
        merge_text(text, SHIM).expect("merge").text
    }

    fn entry_of(text: &str) -> Value {
        let v: Value = serde_json::from_str(text).expect("valid JSON");
        v["mcpServers"][ENTRY_NAME].clone()
    }

    #[test]
    fn client_names() {
        for c in Client::ALL {
            assert_eq!(c.to_string().parse::<Client>().expect("parse"), c);
        }
        assert_eq!(
            "Claude-Code".parse::<Client>().expect("parse"),
            Client::ClaudeCode
        );
        let e = "vscode".parse::<Client>().expect_err("unknown");
        assert!(
            e.to_string()
                .contains("claude-desktop, claude-code, cursor"),
            "{e}"
        );
    }

    #[test]
    fn config_paths() {
        let home = Path::new("/home/alice");
        assert_eq!(
            config_path(Client::ClaudeDesktop, home),
            Path::new("/home/alice/.config/Claude/claude_desktop_config.json")
        );
        assert_eq!(
            config_path(Client::ClaudeCode, home),
            Path::new("/home/alice/.claude.json")
        );
        assert_eq!(
            config_path(Client::Cursor, home),
            Path::new("/home/alice/.cursor/mcp.json")
        );
    }

    #[test]
    fn snippets() {
        let s = snippet(Client::ClaudeDesktop, Path::new(SHIM));
        assert_eq!(
            s,
            format!(
                "{{\n  \"mcpServers\": {{\n    \"stdioproxy\": {{\n      \"command\": \"{SHIM}\",\n      \"args\": []\n    }}\n  }}\n}}\n"
            )
        );
        assert_eq!(entry_of(&s), entry_value(SHIM));
        assert_eq!(snippet(Client::Cursor, Path::new(SHIM)), s);

        let cc = snippet(Client::ClaudeCode, Path::new("/opt/my tools/shim"));
        assert!(
            cc.starts_with("claude mcp add --scope user stdioproxy -- '/opt/my tools/shim'\n"),
            "{cc}"
        );
        let json = &cc[cc.find('{').expect("json")..];
        assert_eq!(entry_of(json)["command"], "/opt/my tools/shim");
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().expect("object").keys().cloned().collect()
    }

    #[test]
    fn inserts_next_to_existing_servers_keeping_keys_values_and_order() {
        let original = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"]
    }
  },
  "zzz": [1, 2, {"a": "}\"{"}],
  "aaa": true
}
"#;
        let out = merge_text(original, SHIM).expect("merge");
        let before: Value = serde_json::from_str(original).expect("json");
        let after: Value = serde_json::from_str(&out.text).expect("json");
        assert_eq!(
            keys(&after),
            keys(&before),
            "top-level keys keep their order"
        );
        assert_eq!(keys(&after["mcpServers"]), vec!["github", "stdioproxy"]);
        assert_eq!(
            after["mcpServers"]["github"],
            before["mcpServers"]["github"]
        );
        assert_eq!(after["zzz"], before["zzz"]);
        assert_eq!(after["mcpServers"]["stdioproxy"], entry_value(SHIM));
        assert!(
            out.text.starts_with("{\n  \"globalShortcut\""),
            "pretty, 2 spaces: {}",
            out.text
        );
        assert!(out.text.ends_with("}\n"));
        assert_eq!(out.other_servers, vec!["github"]);
        assert!(!out.replaced);
    }

    #[test]
    fn adds_mcp_servers_when_missing_or_null_or_empty() {
        for original in [
            "{\n    \"a\": 1,\n    \"b\": {\"c\": true}\n}",
            "{\n\t\"mcpServers\": null\n}\n",
            "{\n  \"mcpServers\": {}\n}\n",
            "{}\n",
        ] {
            let out = merged(original);
            assert_eq!(entry_of(&out), entry_value(SHIM), "{original:?} -> {out}");
            let before: Value = serde_json::from_str(original).expect("json");
            let after: Value = serde_json::from_str(&out).expect("json");
            for k in keys(&before).iter().filter(|k| *k != "mcpServers") {
                assert_eq!(after[k], before[k]);
            }
        }
        assert_eq!(
            keys(&serde_json::from_str(&merged("{\"a\": 1,\n\"b\": 2}")).expect("json")),
            vec!["a", "b", "mcpServers"]
        );
    }

    #[test]
    fn compact_files_stay_compact() {
        for original in [
            r#"{"theme":"dark","mcpServers":{"x":{"command":"y"}}}"#,
            r#"{"a": 1}"#,
            "{}",
        ] {
            let out = merged(original);
            assert!(!out.contains('\n'), "{out}");
            assert_eq!(entry_of(&out), entry_value(SHIM));
        }
        let out = merged(r#"{"theme":"dark","mcpServers":{"x":{"command":"y"}}}"#);
        assert_eq!(
            out,
            format!(
                r#"{{"theme":"dark","mcpServers":{{"x":{{"command":"y"}},"stdioproxy":{{"command":"{SHIM}","args":[]}}}}}}"#
            )
        );
    }

    #[test]
    fn replaces_an_old_entry_and_leaves_an_identical_one() {
        let original = "{\n  \"mcpServers\": {\n    \"stdioproxy\": {\n      \"command\": \"/usr/bin/stdioproxy-shim\",\n      \"args\": [\"--servers\", \"a\"]\n    },\n    \"other\": {\"command\": \"x\"}\n  }\n}\n";
        let out = merge_text(original, SHIM).expect("merge");
        assert!(out.replaced);
        assert_eq!(out.other_servers, vec!["other"]);
        let after: Value = serde_json::from_str(&out.text).expect("json");
        assert_eq!(
            keys(&after["mcpServers"]),
            vec!["stdioproxy", "other"],
            "replaced in place"
        );
        assert_eq!(after["mcpServers"]["stdioproxy"], entry_value(SHIM));
        let again = merge_text(&out.text, SHIM).expect("merge");
        assert_eq!(again.text, out.text);
        assert!(!again.replaced);
    }

    #[test]
    fn escaped_keys_and_strings_survive() {
        let original =
            r#"{"a\"mcpServers": {"}": "{"}, "b": "\\", "mcpServers": {"k\\": [{"x": "]"}]}}"#;
        let out = merged(original);
        let v: Value = serde_json::from_str(&out).expect("valid");
        assert_eq!(v["a\"mcpServers"]["}"], "{");
        assert_eq!(v["b"], "\\");
        assert_eq!(v["mcpServers"]["k\\"][0]["x"], "]");
        assert_eq!(entry_of(&out), entry_value(SHIM));
    }

    #[test]
    fn bad_documents_are_refused() {
        assert!(matches!(merge_text("{", SHIM), Err(TextError::Json(_))));
        assert!(matches!(merge_text("[]", SHIM), Err(TextError::Shape(_))));
        assert!(matches!(
            merge_text(r#"{"mcpServers": []}"#, SHIM),
            Err(TextError::Shape(_))
        ));
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn merge_creates_a_missing_file_privately() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = config_path(Client::ClaudeDesktop, dir.path());
        let out = merge(Client::ClaudeDesktop, &file, Path::new(SHIM)).expect("merge");
        assert!(out.created && out.changed);
        assert_eq!(out.backup, None);
        assert!(!out.has_other_servers());
        assert_eq!(out.path, file);
        let text = fs::read_to_string(&file).expect("read");
        assert_eq!(text, snippet(Client::ClaudeDesktop, Path::new(SHIM)));
        assert_eq!(mode_of(&file), 0o600);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(file.parent().expect("dir"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["claude_desktop_config.json"]);
    }

    #[test]
    fn merge_backs_up_keeps_mode_and_reports_other_servers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(".claude.json");
        let original = r#"{
  "numStartups": 3,
  "mcpServers": {
    "playwright": {
      "type": "stdio",
      "command": "npx",
      "args": ["@playwright/mcp@latest"],
      "env": {}
    }
  },
  "projects": {
    "/home/alice/src/app": {
      "allowedTools": [],
      "mcpServers": {
        "postgres": { "type": "stdio", "command": "npx", "args": [] }
      }
    }
  }
}
"#;
        fs::write(&file, original).expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");

        let out = merge(Client::ClaudeCode, &file, Path::new(SHIM)).expect("merge");
        assert!(out.changed && !out.created && !out.replaced);
        assert_eq!(out.other_servers, vec!["playwright"]);
        assert_eq!(
            out.project_servers,
            vec![("/home/alice/src/app".to_string(), "postgres".to_string())]
        );
        assert!(out.has_other_servers());

        let backup = out.backup.clone().expect("backup");
        let backup_name = backup
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let secs = backup_name
            .strip_prefix(".claude.json.bak.")
            .expect("backup name");
        assert!(secs.parse::<u64>().is_ok(), "{backup_name}");
        assert_eq!(fs::read_to_string(&backup).expect("backup"), original);
        assert_eq!(mode_of(&backup), 0o640);
        assert_eq!(mode_of(&file), 0o640);

        let text = fs::read_to_string(&file).expect("read");
        assert_eq!(entry_of(&text), entry_value(SHIM));
        // Everything else is kept, in order.
        let before: Value = serde_json::from_str(original).expect("json");
        let after: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(keys(&after), keys(&before));
        assert_eq!(after["projects"], before["projects"]);
        assert_eq!(
            after["mcpServers"]["playwright"],
            before["mcpServers"]["playwright"]
        );

        // A second merge changes nothing and makes no backup.
        let again = merge(Client::ClaudeCode, &file, Path::new(SHIM)).expect("merge");
        assert!(!again.changed);
        assert_eq!(again.backup, None);
        assert_eq!(fs::read_to_string(&file).expect("read"), text);

        // Merging a different shim twice within a second makes two backups.
        let b1 = merge(Client::ClaudeCode, &file, Path::new("/a/shim")).expect("merge");
        let b2 = merge(Client::ClaudeCode, &file, Path::new("/b/shim")).expect("merge");
        assert!(b1.replaced && b2.replaced);
        assert_ne!(b1.backup, b2.backup);
        assert_eq!(
            entry_of(&fs::read_to_string(&file).expect("read"))["command"],
            "/b/shim"
        );
    }

    #[test]
    fn merge_writes_through_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("dotfiles-mcp.json");
        fs::write(&real, "{\"mcpServers\": {}}").expect("write");
        let link = dir.path().join("mcp.json");
        symlink(&real, &link).expect("symlink");
        let out = merge(Client::Cursor, &link, Path::new(SHIM)).expect("merge");
        assert!(fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(out.path, fs::canonicalize(&real).expect("canonical"));
        assert_eq!(
            entry_of(&fs::read_to_string(&real).expect("read")),
            entry_value(SHIM)
        );
        let backup = out.backup.expect("backup");
        assert!(backup.to_string_lossy().contains("mcp.json.bak."));
        assert_eq!(
            fs::read_to_string(backup).expect("backup"),
            "{\"mcpServers\": {}}"
        );
    }

    #[test]
    fn merge_leaves_invalid_files_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mcp.json");
        fs::write(&file, "{ \"mcpServers\": { ").expect("write");
        let e = merge(Client::Cursor, &file, Path::new(SHIM)).expect_err("invalid");
        assert!(matches!(e, MergeError::Json { .. }), "{e}");
        assert!(e.to_string().contains("mcp.json is not valid JSON"), "{e}");
        assert_eq!(
            fs::read_to_string(&file).expect("read"),
            "{ \"mcpServers\": { "
        );
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1);

        // An empty file counts as {} (and is backed up).
        fs::write(&file, "").expect("write");
        let out = merge(Client::Cursor, &file, Path::new(SHIM)).expect("merge");
        assert!(out.backup.is_some() && !out.created);
        assert_eq!(
            entry_of(&fs::read_to_string(&file).expect("read")),
            entry_value(SHIM)
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
