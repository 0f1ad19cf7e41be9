//! Tests of `setup-client` through files, each read back in its client's
//! own format.

use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

const SHIM: &str = "/home/alice/.nix-profile/bin/stdioproxy-shim";

fn shim() -> &'static Path {
    Path::new(SHIM)
}

fn json_entry(text: &str, key: &str) -> Value {
    let v: Value = serde_json::from_str(text).expect("valid JSON");
    v["mcpServers"][key].clone()
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn client_names_and_paths() {
    for c in Client::ALL {
        assert_eq!(c.to_string().parse::<Client>().expect("parse"), c);
    }
    assert_eq!(
        "Claude-Code".parse::<Client>().expect("parse"),
        Client::ClaudeCode
    );
    let e = "vscode".parse::<Client>().expect_err("unknown");
    assert!(e.to_string().contains("cursor, codex, gemini"), "{e}");
    let home = Path::new("/home/alice");
    let paths: Vec<PathBuf> = Client::ALL.iter().map(|c| config_path(*c, home)).collect();
    assert_eq!(
        paths,
        [
            "/home/alice/.config/Claude/claude_desktop_config.json",
            "/home/alice/.claude.json",
            "/home/alice/.cursor/mcp.json",
            "/home/alice/.codex/config.toml",
            "/home/alice/.gemini/settings.json",
        ]
        .map(PathBuf::from)
    );
}

#[test]
fn name_budgets() {
    // 64 - len("mcp__stdioproxy__") = 47.
    assert_eq!(name_max("stdioproxy"), 47);
    assert_eq!(name_max("github"), 51);
    // Never outside what the shim accepts.
    assert_eq!(name_max(&"x".repeat(60)), 8);
    assert_eq!(name_max(""), 57);
}

#[test]
fn snippets() {
    let s = snippet(Client::ClaudeDesktop, shim(), &Layout::Aggregate, None).expect("snippet");
    assert_eq!(
        s,
        format!(
            "{{\n  \"mcpServers\": {{\n    \"stdioproxy\": {{\n      \"command\": \"{SHIM}\",\n      \"args\": []\n    }}\n  }}\n}}\n"
        )
    );
    assert_eq!(
        snippet(Client::Cursor, shim(), &Layout::Aggregate, None).expect("snippet"),
        s
    );

    let cc = snippet(
        Client::ClaudeCode,
        Path::new("/opt/my tools/shim"),
        &Layout::Aggregate,
        None,
    )
    .expect("snippet");
    assert!(
        cc.starts_with(
            "claude mcp add --scope user stdioproxy -- '/opt/my tools/shim' --name-max 47\n"
        ),
        "{cc}"
    );
    let json = &cc[cc.find('{').expect("json")..];
    assert_eq!(
        json_entry(json, "stdioproxy")["args"],
        serde_json::json!(["--name-max", "47"])
    );

    let codex = snippet(Client::Codex, shim(), &Layout::Aggregate, None).expect("snippet");
    let got = codex::servers(&codex).expect("toml");
    assert_eq!(got["stdioproxy"]["command"], SHIM);
    assert_eq!(
        got["stdioproxy"]["args"],
        serde_json::json!(["--name-max", "47"])
    );

    let gemini = snippet(
        Client::Gemini,
        shim(),
        &Layout::PerServer(vec!["github".into()]),
        None,
    )
    .expect("snippet");
    assert_eq!(
        json_entry(&gemini, "github"),
        serde_json::json!({"command": SHIM, "args": ["--server", "github", "--name-max", "63"]})
    );
}

#[test]
fn merge_creates_a_missing_file_privately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_path(Client::ClaudeDesktop, dir.path());
    let out = merge(Client::ClaudeDesktop, &file, shim(), &Layout::Aggregate).expect("merge");
    assert!(out.created && out.changed);
    assert_eq!(out.backup, None);
    assert!(!out.has_other_servers());
    assert_eq!(out.path, file);
    let text = fs::read_to_string(&file).expect("read");
    assert_eq!(
        text,
        snippet(Client::ClaudeDesktop, shim(), &Layout::Aggregate, None).expect("snippet")
    );
    assert_eq!(mode_of(&file), 0o600);
    assert_eq!(mode_of(file.parent().expect("dir")), 0o700);
    let names: Vec<_> = fs::read_dir(file.parent().expect("dir"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec!["claude_desktop_config.json"]);
}

const CLAUDE_JSON: &str = r#"{
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

#[test]
fn merge_backs_up_keeps_mode_and_reports_other_servers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(".claude.json");
    fs::write(&file, CLAUDE_JSON).expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");

    let out = merge(Client::ClaudeCode, &file, shim(), &Layout::Aggregate).expect("merge");
    assert!(out.changed && !out.created);
    assert_eq!(out.added, vec!["stdioproxy"]);
    assert_eq!(out.other_servers, vec!["playwright"]);
    assert_eq!(
        out.project_servers,
        vec![("/home/alice/src/app".to_string(), "postgres".to_string())]
    );
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
    assert_eq!(fs::read_to_string(&backup).expect("backup"), CLAUDE_JSON);
    assert_eq!(mode_of(&backup), 0o640);
    assert_eq!(mode_of(&file), 0o640);

    let text = fs::read_to_string(&file).expect("read");
    assert_eq!(
        json_entry(&text, "stdioproxy"),
        serde_json::json!({"command": SHIM, "args": ["--name-max", "47"]})
    );
    let before: Value = serde_json::from_str(CLAUDE_JSON).expect("json");
    let after: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(after["projects"], before["projects"]);
    assert_eq!(after["numStartups"], 3);

    // A second merge changes nothing and makes no backup.
    let again = merge(Client::ClaudeCode, &file, shim(), &Layout::Aggregate).expect("merge");
    assert!(!again.changed);
    assert_eq!(again.backup, None);
    assert_eq!(fs::read_to_string(&file).expect("read"), text);

    // Two different shims within a second make two backups.
    let b1 = merge(
        Client::ClaudeCode,
        &file,
        Path::new("/a/stdioproxy-shim"),
        &Layout::Aggregate,
    )
    .expect("merge");
    let b2 = merge(
        Client::ClaudeCode,
        &file,
        Path::new("/b/stdioproxy-shim"),
        &Layout::Aggregate,
    )
    .expect("merge");
    assert_eq!(b1.replaced, vec!["stdioproxy"]);
    assert_ne!(b1.backup, b2.backup);
}

#[test]
fn per_server_replaces_the_direct_entries_under_their_own_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(".claude.json");
    let original = r#"{
  "mcpServers": {
    "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"], "env": {"T": "x"}},
    "Brave Search": {"command": "npx", "args": ["-y", "brave"]},
    "context7": {"type": "http", "url": "https://mcp.context7.com/mcp"},
    "stdioproxy": {"command": "/old/stdioproxy-shim", "args": []}
  }
}
"#;
    fs::write(&file, original).expect("write");
    // What `stdioproxy import` of this file named them.
    let layout = Layout::PerServer(vec![
        "github".into(),
        "Brave-Search".into(),
        "memory".into(),
    ]);
    let out = merge(Client::ClaudeCode, &file, shim(), &layout).expect("merge");
    assert_eq!(out.replaced, vec!["github", "Brave Search"]);
    assert_eq!(out.added, vec!["memory"]);
    assert_eq!(out.removed, vec!["stdioproxy"]);
    assert_eq!(out.other_servers, vec!["context7"]);

    let text = fs::read_to_string(&file).expect("read");
    let servers = json::servers(&text).expect("json");
    assert_eq!(
        servers.keys().collect::<Vec<_>>(),
        vec!["github", "Brave Search", "context7", "memory"]
    );
    assert_eq!(
        servers["github"],
        serde_json::json!({"command": SHIM, "args": ["--server", "github", "--name-max", "51"]})
    );
    // The budget follows the entry's name: 64 - len("mcp__Brave Search__").
    assert_eq!(
        servers["Brave Search"],
        serde_json::json!({"command": SHIM, "args": ["--server", "Brave-Search", "--name-max", "45"]})
    );
    // Running it again finds its own entries and changes nothing.
    let again = merge(Client::ClaudeCode, &file, shim(), &layout).expect("merge");
    assert!(!again.changed, "{again:?}");
}

#[test]
fn codex_and_gemini_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let codex_file = config_path(Client::Codex, dir.path());
    fs::create_dir_all(codex_file.parent().expect("dir")).expect("mkdir");
    fs::write(
        &codex_file,
        "# mine\nmodel = \"o3\"\n\n[mcp_servers.memory]\ncommand = \"npx\"\n",
    )
    .expect("write");
    let layout = Layout::PerServer(vec!["memory".into()]);
    let out = merge(Client::Codex, &codex_file, shim(), &layout).expect("merge");
    assert_eq!(out.replaced, vec!["memory"]);
    let text = fs::read_to_string(&codex_file).expect("read");
    assert!(text.starts_with("# mine\nmodel = \"o3\"\n"), "{text}");
    let doc: toml::Table = toml::from_str(&text).expect("toml");
    assert_eq!(
        doc["mcp_servers"]["memory"]["args"],
        toml::Value::Array(
            ["--server", "memory", "--name-max", "51"]
                .map(|s| toml::Value::String(s.into()))
                .to_vec()
        )
    );

    let gemini_file = config_path(Client::Gemini, dir.path());
    let out = merge(Client::Gemini, &gemini_file, shim(), &Layout::Aggregate).expect("merge");
    assert!(out.created);
    let v: Value =
        serde_json::from_str(&fs::read_to_string(&gemini_file).expect("read")).expect("json");
    // What `gemini mcp list` reads: mcpServers.<name>.{command,args}; names
    // within the 63 characters Gemini CLI keeps.
    assert_eq!(
        v["mcpServers"]["stdioproxy"],
        serde_json::json!({"command": SHIM, "args": ["--name-max", "63"]})
    );
}

#[test]
fn merge_writes_through_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("dotfiles-mcp.json");
    fs::write(&real, "{\"mcpServers\": {}}").expect("write");
    let link = dir.path().join("mcp.json");
    symlink(&real, &link).expect("symlink");
    let out = merge(Client::Cursor, &link, shim(), &Layout::Aggregate).expect("merge");
    assert!(fs::symlink_metadata(&link)
        .expect("meta")
        .file_type()
        .is_symlink());
    assert_eq!(out.path, fs::canonicalize(&real).expect("canonical"));
    assert_eq!(
        json_entry(&fs::read_to_string(&real).expect("read"), "stdioproxy")["command"],
        SHIM
    );
    let backup = out.backup.expect("backup");
    assert!(backup.to_string_lossy().contains("mcp.json.bak."));
}

#[test]
fn merge_leaves_invalid_files_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mcp.json");
    fs::write(&file, "{ \"mcpServers\": { ").expect("write");
    let e = merge(Client::Cursor, &file, shim(), &Layout::Aggregate).expect_err("invalid");
    assert!(matches!(e, MergeError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("mcp.json: not valid JSON"), "{e}");
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        "{ \"mcpServers\": { "
    );
    assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1);

    // An empty file counts as {} (and is backed up).
    fs::write(&file, "").expect("write");
    let out = merge(Client::Cursor, &file, shim(), &Layout::Aggregate).expect("merge");
    assert!(out.backup.is_some() && !out.created);
}

#[test]
fn shell_quoting() {
    assert_eq!(sh_quote("/usr/bin/x"), "/usr/bin/x");
    assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    assert_eq!(sh_quote(""), "''");
}
