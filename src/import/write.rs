//! `stdioproxy import FILE --write`: merging imported servers into the
//! daemon's config file itself.
//!
//! Appending with `>>` fails on a fresh HOME (no directory) and, on a second
//! run, produces a file with duplicate tables. So the merge is done here:
//!
//! - a missing config is created (its directory 0700, the file 0600: env
//!   values can be tokens), holding exactly what `stdioproxy import` prints;
//! - an existing config is edited with `toml_edit`, so its comments, order
//!   and formatting stay as they are; the new `[servers.NAME]` tables are
//!   appended after everything else;
//! - a server whose name the config already has is left alone and reported
//!   by name, unless `replace` is asked for (then its table is replaced in
//!   place, keeping the comment above it);
//! - the result must pass the daemon's own config parser before anything is
//!   written; the previous file is backed up to `<file>.bak.<unix-seconds>`
//!   and replaced atomically with its permission bits kept
//!   ([`crate::atomic_file`]); a symlinked config is written through.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use toml_edit::DocumentMut;

use super::render::comment;
use super::ImportOutcome;
use crate::{atomic_file, toml_doc};

/// What [`write_config`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The file written (the symlink target when the path was a symlink).
    pub path: PathBuf,
    /// The file did not exist before.
    pub created: bool,
    /// The copy of the previous content, when there was one and it changed.
    pub backup: Option<PathBuf>,
    /// Servers added, in order.
    pub added: Vec<String>,
    /// Servers whose existing table was replaced (`replace`).
    pub replaced: Vec<String>,
    /// Servers skipped because the config already has that name.
    pub existing: Vec<String>,
}

impl WriteOutcome {
    /// False when nothing needed writing.
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.replaced.is_empty() || self.created
    }
}

/// Why [`write_config`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading or writing failed.
    #[error("cannot {action} {}: {source}{hint}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    /// The existing config is not TOML, or the merge would not be a valid
    /// config.
    #[error("{0}; nothing was written")]
    Invalid(String),
}

/// Merges the servers of `outcome` into the config at `config` (created if
/// missing). `source` names the imported file in a comment.
pub fn write_config(
    config: &Path,
    outcome: &ImportOutcome,
    source: &str,
    replace: bool,
) -> Result<WriteOutcome, WriteError> {
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        let hint = if path.starts_with("/nix/store") {
            " (the config is managed by Nix: add the servers to services.stdioproxy.settings instead)"
        } else {
            ""
        };
        move |source| WriteError::Io {
            action,
            path,
            hint,
            source,
        }
    };
    let target = atomic_file::resolve_symlink(config).map_err(io_err("resolve", config))?;
    let original = match fs::read_to_string(&target) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &target)(e)),
    };
    let merged = match &original {
        None => Merged {
            text: outcome.toml.clone(),
            added: outcome.imported.iter().map(|s| s.name.clone()).collect(),
            replaced: Vec::new(),
            existing: Vec::new(),
        },
        Some(text) => merge_text(text, outcome, source, replace)?,
    };
    crate::config::parse_str(&target, &merged.text)
        .map_err(|e| WriteError::Invalid(format!("the merged config would be invalid: {e}")))?;

    let mut out = WriteOutcome {
        path: target.clone(),
        created: original.is_none(),
        backup: None,
        added: merged.added,
        replaced: merged.replaced,
        existing: merged.existing,
    };
    if original.as_deref() == Some(merged.text.as_str()) {
        return Ok(out);
    }
    let mode = atomic_file::existing_mode(&target)
        .map_err(io_err("inspect", &target))?
        .unwrap_or(0o600);
    match &original {
        Some(text) => {
            out.backup = Some(
                atomic_file::backup(config, text.as_bytes(), mode)
                    .map_err(io_err("back up", config))?,
            );
        }
        None => {
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                atomic_file::create_private_dir(dir).map_err(io_err("create", dir))?;
            }
        }
    }
    atomic_file::write(&target, merged.text.as_bytes(), mode).map_err(io_err("write", &target))?;
    Ok(out)
}

struct Merged {
    text: String,
    added: Vec<String>,
    replaced: Vec<String>,
    existing: Vec<String>,
}

/// The merge itself, on text.
fn merge_text(
    text: &str,
    outcome: &ImportOutcome,
    source: &str,
    replace: bool,
) -> Result<Merged, WriteError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| WriteError::Invalid(format!("the existing config is not valid TOML: {e}")))?;
    let mut next = toml_doc::next_position(&doc);
    // Comments after the last table belong where they are: new tables go
    // after them, so the existing text stays first, byte for byte.
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    let servers = toml_doc::table_of_tables(&mut doc, "servers").ok_or_else(|| {
        WriteError::Invalid(
            "the existing config's \"servers\" is not a table of [servers.NAME] tables".into(),
        )
    })?;

    let mut merged = Merged {
        text: String::new(),
        added: Vec::new(),
        replaced: Vec::new(),
        existing: Vec::new(),
    };
    for s in &outcome.imported {
        let mut table = s.table.clone();
        match servers.get_mut(&s.name) {
            Some(old) if replace => {
                toml_doc::replace_in_place(old, table);
                merged.replaced.push(s.name.clone());
            }
            Some(_) => merged.existing.push(s.name.clone()),
            None => {
                if merged.added.is_empty() {
                    let mut prefix = trailing.clone();
                    if !prefix.is_empty() && !prefix.ends_with('\n') {
                        prefix.push('\n');
                    }
                    prefix.push('\n');
                    comment(
                        &mut prefix,
                        &format!("Imported from {source} by `stdioproxy import --write`."),
                    );
                    let own = table
                        .decor()
                        .prefix()
                        .and_then(|p| p.as_str())
                        .unwrap_or("");
                    prefix.push_str(own.strip_prefix('\n').unwrap_or(own));
                    table.decor_mut().set_prefix(prefix);
                }
                toml_doc::append(servers, &s.name, table, &mut next);
                merged.added.push(s.name.clone());
            }
        }
    }
    if !merged.added.is_empty() {
        doc.set_trailing("");
    }
    merged.text = doc.to_string();
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const JSON: &str = r#"{"mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_TOKEN": "ghp_x"}},
        "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]},
        "remote": {"type": "http", "url": "https://example.com/mcp"}
    }}"#;

    fn outcome() -> ImportOutcome {
        super::super::import_mcp_servers(JSON).expect("import")
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    fn servers(text: &str) -> Vec<String> {
        let c = crate::config::parse_str(Path::new("c.toml"), text).expect("valid config");
        c.servers.keys().map(|n| n.as_str().to_string()).collect()
    }

    #[test]
    fn creates_the_directory_and_file_privately_on_a_fresh_home() {
        let home = tempfile::tempdir().expect("tempdir");
        let config = home.path().join(".config/stdioproxy/config.toml");
        let out = write_config(&config, &outcome(), "x.json", false).expect("write");
        assert!(out.created && out.changed());
        assert_eq!(out.added, vec!["github", "memory"]);
        assert_eq!(out.backup, None);
        assert_eq!(mode_of(&config), 0o600);
        assert_eq!(mode_of(config.parent().expect("dir")), 0o700);
        let text = fs::read_to_string(&config).expect("read");
        assert_eq!(text, outcome().toml);
        assert_eq!(servers(&text), vec!["github", "memory"]);
    }

    const EXISTING: &str = "# my stdioproxy config\n\
        [daemon]\n\
        page_size = 500 # keep small\n\
        \n\
        # the one I use most\n\
        [servers.memory]\n\
        command = \"/opt/memory-server\"  # pinned build\n\
        \n\
        [servers.memory.env]\n\
        A = \"1\"\n\
        \n\
        # trailing remark\n";

    #[test]
    fn merges_keeping_comments_and_skips_existing_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        fs::write(&config, EXISTING).expect("write");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).expect("chmod");

        let out = write_config(&config, &outcome(), "claude.json", false).expect("write");
        assert_eq!(out.added, vec!["github"]);
        assert_eq!(out.existing, vec!["memory"]);
        assert!(out.replaced.is_empty());
        let text = fs::read_to_string(&config).expect("read");
        // Everything that was there is still there, byte for byte, first.
        assert!(text.starts_with(EXISTING), "{text}");
        assert!(text.contains("# Imported from claude.json by `stdioproxy import --write`."));
        let c = crate::config::parse_str(&config, &text).expect("valid");
        let memory = &c.servers[&crate::config::ServerName::new("memory").expect("name")];
        assert_eq!(memory.command.0, "/opt/memory-server");
        assert_eq!(servers(&text), vec!["github", "memory"]);
        assert!(text.find("[servers.memory]") < text.find("[servers.github]"));
        assert_eq!(mode_of(&config), 0o640);
        let backup = out.backup.expect("backup");
        assert_eq!(fs::read_to_string(backup).expect("backup"), EXISTING);

        // Again: nothing new, nothing written, no second backup.
        let again = write_config(&config, &outcome(), "claude.json", false).expect("write");
        assert!(!again.changed());
        assert_eq!(again.existing, vec!["github", "memory"]);
        assert_eq!(again.backup, None);
        assert_eq!(fs::read_to_string(&config).expect("read"), text);
    }

    #[test]
    fn replace_swaps_the_table_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        fs::write(&config, EXISTING).expect("write");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");
        let out = write_config(&config, &outcome(), "claude.json", true).expect("write");
        assert_eq!(out.replaced, vec!["memory"]);
        assert_eq!(out.added, vec!["github"]);
        let text = fs::read_to_string(&config).expect("read");
        assert!(
            text.contains("# the one I use most\n[servers.memory]\ncommand = \"npx\""),
            "{text}"
        );
        assert!(!text.contains("/opt/memory-server"), "{text}");
        assert!(
            text.starts_with("# my stdioproxy config\n[daemon]\npage_size = 500 # keep small\n")
        );
        assert_eq!(servers(&text), vec!["github", "memory"]);
        assert!(text.find("[servers.memory]") < text.find("[servers.github]"));
        println!("{text}");
    }

    #[test]
    fn invalid_configs_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        for bad in [
            "[servers\n",
            "servers = 3\n",
            "[servers.x]\ncomand = \"y\"\n",
        ] {
            fs::write(&config, bad).expect("write");
            let e = write_config(&config, &outcome(), "x.json", false).expect_err(bad);
            assert!(e.to_string().ends_with("nothing was written"), "{e}");
            assert_eq!(fs::read_to_string(&config).expect("read"), bad);
            assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1);
        }
    }
}
