//! Tests of `stdioproxy import` on real client configs.

use super::*;
use crate::config::{parse_str, Config, ServerName};
use std::collections::BTreeMap;
use std::path::Path;

fn import(json: &str) -> ImportOutcome {
    let out = import_mcp_servers(json).expect("import");
    // Every output must be a valid stdioproxy config.
    parse(&out.toml);
    out
}

fn parse(toml: &str) -> Config {
    match parse_str(Path::new("imported.toml"), toml) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n---\n{toml}"),
    }
}

fn server<'a>(c: &'a Config, name: &str) -> &'a crate::config::ServerConfig {
    let key = ServerName::new(name).expect("valid name");
    c.servers
        .get(&key)
        .unwrap_or_else(|| panic!("no server {name}: {:?}", c.servers.keys()))
}

fn names(out: &ImportOutcome) -> Vec<&str> {
    out.imported.iter().map(|s| s.name.as_str()).collect()
}

/// [`import`], checking the detected format and the imported names (in order).
#[track_caller]
fn import_as(json: &str, format: SourceFormat, want: &[&str]) -> ImportOutcome {
    let out = import(json);
    assert_eq!(out.format, format);
    assert_eq!(names(&out), want);
    out
}

const CLAUDE_DESKTOP: &str = r#"{
  "globalShortcut": "Ctrl+Alt+Space",
  "mcpServers": {
"filesystem": {
  "command": "npx",
  "args": [
    "-y",
    "@modelcontextprotocol/server-filesystem",
    "/home/alice/Desktop",
    "/home/alice/Downloads"
  ]
},
"github": {
  "command": "npx",
  "args": ["-y", "@modelcontextprotocol/server-github"],
  "env": {
    "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexample"
  }
},
"Brave Search": {
  "command": "npx",
  "args": ["-y", "@modelcontextprotocol/server-brave-search"],
  "env": { "BRAVE_API_KEY": "BSAexample", "LOG_LEVEL": "info" }
},
"sqlite": {
  "command": "uvx",
  "args": ["mcp-server-sqlite", "--db-path", "/home/alice/test.db"],
  "disabled": true
},
"linear": {
  "command": "npx",
  "args": ["-y", "mcp-remote", "https://mcp.linear.app/sse"]
}
  }
}"#;

#[test]
fn claude_desktop_config() {
    let out = import_as(
        CLAUDE_DESKTOP,
        SourceFormat::McpServers,
        // The file's own order.
        &["filesystem", "github", "Brave-Search", "sqlite", "linear"],
    );
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    let c = parse(&out.toml);

    let fs = server(&c, "filesystem");
    assert_eq!(fs.command.0, "npx");
    assert_eq!(
        fs.args,
        vec![
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/home/alice/Desktop",
            "/home/alice/Downloads"
        ]
    );
    assert!(fs.env.is_empty());
    assert!(fs.enabled);
    assert_eq!(fs.cwd, None);

    let gh = server(&c, "github");
    assert_eq!(
        gh.env
            .get("GITHUB_PERSONAL_ACCESS_TOKEN")
            .map(String::as_str),
        Some("ghp_exampleexampleexample")
    );

    let brave = server(&c, "Brave-Search");
    assert_eq!(brave.env.len(), 2);
    assert!(
        out.toml.contains("# imported from \"Brave Search\""),
        "{}",
        out.toml
    );
    let renamed: Vec<_> = out.imported.iter().filter(|s| s.renamed()).collect();
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0].original, "Brave Search");

    assert!(!server(&c, "sqlite").enabled);
    assert!(
        !out.imported
            .iter()
            .find(|s| s.name == "sqlite")
            .expect("sqlite")
            .enabled
    );
    // mcp-remote is a local stdio process even though it talks to a URL.
    assert_eq!(server(&c, "linear").args[2], "https://mcp.linear.app/sse");

    assert_eq!(
        out.secret_env,
        vec![
            SecretEnv {
                server: "github".into(),
                key: "GITHUB_PERSONAL_ACCESS_TOKEN".into()
            },
            SecretEnv {
                server: "Brave-Search".into(),
                key: "BRAVE_API_KEY".into()
            },
        ]
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

const CLAUDE_CODE: &str = r#"{
  "numStartups": 57,
  "installMethod": "native",
  "autoUpdates": true,
  "theme": "dark",
  "tipsHistory": { "new-user-warmup": 1, "memory-command": 12 },
  "userID": "0f3c5e4d2a1b",
  "mcpServers": {
"context7": {
  "type": "http",
  "url": "https://mcp.context7.com/mcp?api_key=secret",
  "headers": { "CONTEXT7_API_KEY": "ctx7-secret" }
},
"sequential-thinking": {
  "type": "stdio",
  "command": "npx",
  "args": ["-y", "@modelcontextprotocol/server-sequential-thinking"],
  "env": {}
},
"playwright": {
  "type": "stdio",
  "command": "npx",
  "args": ["@playwright/mcp@latest"],
  "env": {}
}
  },
  "projects": {
"/home/alice/src/webapp": {
  "allowedTools": [],
  "history": [{ "display": "fix the login bug", "pastedContents": {} }],
  "mcpContextUris": [],
  "mcpServers": {
    "postgres": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-postgres", "postgresql://localhost/webapp"],
      "env": {}
    },
    "playwright": {
      "type": "stdio",
      "command": "npx",
      "args": ["@playwright/mcp@latest"],
      "env": {}
    }
  },
  "enabledMcpjsonServers": [],
  "disabledMcpjsonServers": [],
  "hasTrustDialogAccepted": true
},
"/home/alice/src/api": {
  "allowedTools": ["Bash(npm test:*)"],
  "mcpServers": {
    "postgres": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-postgres", "postgresql://localhost/api"],
      "env": { "PGPASSWORD": "hunter2" }
    },
    "sentry": { "type": "sse", "url": "https://mcp.sentry.dev/sse" }
  }
},
"/home/alice": { "allowedTools": [], "mcpServers": {} }
  }
}"#;

#[test]
fn claude_code_user_and_project_servers() {
    // User scope first (in file order), then projects in file order.
    let out = import_as(
        CLAUDE_CODE,
        SourceFormat::ClaudeCode,
        &[
            "sequential-thinking",
            "playwright",
            "postgres",
            "postgres-2",
        ],
    );
    let pg: Vec<_> = out
        .imported
        .iter()
        .filter(|s| s.original == "postgres")
        .collect();
    // Projects in the file's order: webapp comes first there.
    assert_eq!(pg[0].project.as_deref(), Some("/home/alice/src/webapp"));
    assert_eq!(pg[1].project.as_deref(), Some("/home/alice/src/api"));

    let c = parse(&out.toml);
    assert_eq!(
        server(&c, "postgres").args[2],
        "postgresql://localhost/webapp"
    );
    assert_eq!(
        server(&c, "postgres-2").args[2],
        "postgresql://localhost/api"
    );
    assert!(out
        .toml
        .contains("from Claude Code project \"/home/alice/src/api\""));
    assert!(out
        .toml
        .contains("# imported from \"postgres\" (another server already has that name)"));

    // Remote servers and the project copy of playwright are skipped.
    let skipped: Vec<(&str, Option<&str>)> = out
        .skipped
        .iter()
        .map(|s| (s.original.as_str(), s.project.as_deref()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("context7", None),
            ("playwright", Some("/home/alice/src/webapp")),
            ("sentry", Some("/home/alice/src/api")),
        ]
    );
    let ctx = &out.skipped[0].reason;
    assert!(
        ctx.contains("remote server (http, https://mcp.context7.com)"),
        "{ctx}"
    );
    // No query string, no header values in the output.
    assert!(!out.toml.contains("ctx7-secret"), "{}", out.toml);
    assert!(!out.toml.contains("api_key"), "{}", out.toml);
    assert!(out.skipped[2].reason.contains("sse"));
    assert!(
        out.skipped[1].reason.contains("same command"),
        "{}",
        out.skipped[1].reason
    );
    assert!(out.toml.contains("# Not imported:"));
    assert!(
        out.toml.contains("# - \"context7\": remote server"),
        "{}",
        out.toml
    );

    assert_eq!(
        out.secret_env,
        vec![SecretEnv {
            // The api project's postgres, second in the file.
            server: "postgres-2".into(),
            key: "PGPASSWORD".into()
        }]
    );
}

const CURSOR: &str = r#"{
  "mcpServers": {
"Figma Dev Mode MCP": { "url": "http://127.0.0.1:3845/sse" },
"supabase": {
  "command": "npx",
  "args": ["-y", "@supabase/mcp-server-supabase@latest", "--read-only", "--project-ref=abcdefgh"],
  "env": { "SUPABASE_ACCESS_TOKEN": "sbp_0123456789" }
},
"my__tool": { "command": "/home/alice/bin/my-tool", "args": ["--stdio"] },
"a.b": { "command": "a" },
"a-b": { "command": "b" },
"a b": { "command": "c" },
"an extremely long server name that exceeds the limit": {
  "command": "node",
  "args": ["/home/alice/mcp/server.js"],
  "cwd": "/home/alice/mcp",
  "envFile": "${workspaceFolder}/.env",
  "env": { "API_TOKEN": "${env:API_TOKEN}", "PORT": 8080 }
},
"local-db": {
  "command": "python -m mcp_db",
  "env": { "DB_PASSWORD": "${DB_PASSWORD}" },
  "autoApprove": ["query"]
}
  }
}"#;

#[test]
fn cursor_config_with_awkward_names() {
    let out = import(CURSOR);
    assert_eq!(out.format, SourceFormat::McpServers);
    let pairs: BTreeMap<&str, &str> = out
        .imported
        .iter()
        .map(|s| (s.original.as_str(), s.name.as_str()))
        .collect();
    // The valid "a-b" keeps its name; "a.b" and "a b" get numbered in
    // the file's order.
    assert_eq!(pairs["a-b"], "a-b");
    assert_eq!(pairs["a.b"], "a-b-2");
    assert_eq!(pairs["a b"], "a-b-3");
    assert_eq!(pairs["my__tool"], "my_tool");
    let long = pairs["an extremely long server name that exceeds the limit"];
    assert_eq!(long, "an-extremely-long-server-name-th");
    assert_eq!(long.len(), 32);
    for name in pairs.values() {
        ServerName::new(name).expect("valid");
    }

    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].original, "Figma Dev Mode MCP");
    assert!(out.skipped[0].reason.contains("http://127.0.0.1:3845"));

    let c = parse(&out.toml);
    let long = server(&c, long);
    assert_eq!(long.cwd.as_deref(), Some("/home/alice/mcp"));
    assert_eq!(long.env.get("PORT").map(String::as_str), Some("8080"));
    assert_eq!(
        long.env.get("API_TOKEN").map(String::as_str),
        Some("${env:API_TOKEN}")
    );
    let warnings = out.warnings.join("\n");
    assert!(warnings.contains("envFile"), "{warnings}");
    assert!(warnings.contains("env API_TOKEN"), "{warnings}");
    assert!(warnings.contains("contains spaces"), "{warnings}");
    assert!(!warnings.contains("autoApprove"), "{warnings}");
    // Warnings also appear as comments next to the server.
    assert!(out.toml.contains("# note: \"envFile\" is not supported"));

    // Values that are already references are not flagged as secrets.
    let secrets: Vec<&str> = out.secret_env.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(secrets, vec!["SUPABASE_ACCESS_TOKEN"]);
    assert!(out
        .toml
        .contains("# SUPABASE_ACCESS_TOKEN looks like a secret: consider SUPABASE_ACCESS_TOKEN = \"${SUPABASE_ACCESS_TOKEN}\""));
}

#[test]
fn bare_map_and_vscode_servers() {
    let bare = import(
        r#"{"echo": {"command": "mcp-echo", "args": ["--x"]}, "off": {"command": "y", "disabled": true}}"#,
    );
    assert_eq!(bare.format, SourceFormat::BareMap);
    assert_eq!(names(&bare), vec!["echo", "off"]);
    let c = parse(&bare.toml);
    assert_eq!(server(&c, "echo").args, vec!["--x"]);
    assert!(!server(&c, "off").enabled);

    let vscode = import(
        r#"{"inputs": [{"type": "promptString", "id": "token"}],
            "servers": {"gh": {"type": "stdio", "command": "docker", "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"]},
                        "remote": {"type": "http", "url": "https://api.githubcopilot.com/mcp/"}}}"#,
    );
    assert_eq!(vscode.format, SourceFormat::VsCode);
    assert_eq!(names(&vscode), vec!["gh"]);
    assert_eq!(vscode.skipped.len(), 1);

    // A bare map holding a server called "servers" is still a bare map.
    let odd = import(r#"{"servers": {"command": "x"}}"#);
    assert_eq!(odd.format, SourceFormat::BareMap);
    assert_eq!(names(&odd), vec!["servers"]);
}

#[test]
fn empty_inputs_give_a_valid_empty_config() {
    for json in ["{}", r#"{"mcpServers": {}}"#, r#"{"mcpServers": null}"#] {
        let out = import(json);
        assert!(out.imported.is_empty());
        assert!(parse(&out.toml).servers.is_empty());
        assert!(out.toml.contains("No local (stdio) MCP servers"));
    }
}

#[test]
fn bad_inputs_are_errors() {
    match import_mcp_servers("{\n  \"mcpServers\": {,}\n}") {
        Err(ImportError::Json { line, column, .. }) => assert_eq!((line, column), (2, 18)),
        other => panic!("{other:?}"),
    }
    for json in [
        "[]",
        "\"x\"",
        r#"{"mcpServers": []}"#,
        r#"{"globalShortcut": "Ctrl+Space"}"#,
    ] {
        let e = import_mcp_servers(json).expect_err(json);
        assert!(matches!(e, ImportError::Unrecognized(_)), "{json}: {e}");
        assert!(e.to_string().contains("mcpServers"), "{e}");
    }
}

#[test]
fn malformed_entries_are_skipped_with_a_reason() {
    let out = import(
        r#"{"mcpServers": {
            "a": "npx foo",
            "b": {"args": ["x"]},
            "c": {"command": ""},
            "d": {"command": "x", "args": [{"k": 1}]},
            "e": {"command": "x", "env": ["A=1"]},
            "f": {"command": "x", "type": "carrier-pigeon"},
            "g": {"command": 42},
            "ok": {"command": "x", "args": [1, true, "s"], "timeout": 30}
        }}"#,
    );
    assert_eq!(names(&out), vec!["ok"]);
    let reasons: BTreeMap<&str, &str> = out
        .skipped
        .iter()
        .map(|s| (s.original.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    assert!(reasons["a"].contains("not a JSON object"));
    assert!(reasons["b"].contains("no \"command\""));
    assert!(reasons["c"].contains("empty"));
    assert!(reasons["d"].contains("non-string"));
    assert!(reasons["e"].contains("\"env\" is not an object"));
    assert!(reasons["f"].contains("carrier-pigeon"));
    assert!(reasons["g"].contains("not a string"));
    let c = parse(&out.toml);
    assert_eq!(server(&c, "ok").args, vec!["1", "true", "s"]);
    assert_eq!(out.warnings, vec!["server ok: ignored field(s): timeout"]);
}

#[test]
fn strings_survive_toml_escaping() {
    let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} unicode é 😀 ${X} '";
    let json = serde_json::json!({
        "mcpServers": {
            "x": {
                "command": nasty,
                "args": [nasty, "C:\\Program Files\\node.exe", ""],
                "env": { "weird key.with dots": nasty, "": "empty key", "A": "" },
                "cwd": "/tmp/dir with spaces/\"q\""
            },
            "name\nwith newline]\n[servers.evil]\ncommand = \"rm\"": { "command": "safe" }
        }
    })
    .to_string();
    let out = import(&json);
    let c = parse(&out.toml);
    assert_eq!(c.servers.len(), 2, "{}", out.toml);
    let x = server(&c, "x");
    assert_eq!(x.command.0, nasty);
    assert_eq!(x.args, vec![nasty, "C:\\Program Files\\node.exe", ""]);
    assert_eq!(x.env["weird key.with dots"], nasty);
    assert_eq!(x.env[""], "empty key");
    assert_eq!(x.env["A"], "");
    assert_eq!(x.cwd.as_deref(), Some("/tmp/dir with spaces/\"q\""));
    // The newline in the original name cannot inject a table.
    assert!(!c
        .servers
        .contains_key(&ServerName::new("evil").expect("valid")));
    let renamed = out
        .imported
        .iter()
        .find(|s| s.original.starts_with("name"))
        .expect("imported");
    assert_eq!(renamed.name, "name-with-newline-servers-evil-c");
    assert_eq!(server(&c, &renamed.name).command.0, "safe");
}

#[test]
fn stdioproxy_itself_is_not_imported_and_its_name_is_not_taken() {
    let out = import_mcp_servers(
        r#"{"mcpServers": {
            "stdioproxy": {"command": "/home/u/.cargo/bin/stdioproxy-shim", "args": []},
            "stdioproxy ": {"command": "npx", "args": ["-y", "server-memory"]}
        }}"#,
    )
    .unwrap();
    assert_eq!(out.skipped.len(), 1, "{:?}", out.skipped);
    assert!(out.skipped[0].reason.contains("stdioproxy itself"));
    let c = crate::config::parse_str(Path::new("imported.toml"), &out.toml).unwrap();
    let names: Vec<&str> = c.servers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, vec!["stdioproxy-2"]);
}

#[test]
fn url_origins_drop_credentials_and_paths() {
    use super::entry::url_origin;
    assert_eq!(
        url_origin("https://user:pw@host.example:8443/p?q=1"),
        "https://host.example:8443"
    );
    assert_eq!(
        url_origin("http://127.0.0.1:3845/sse"),
        "http://127.0.0.1:3845"
    );
    assert_eq!(url_origin("host/path"), "host");
}

#[test]
fn codex_config_toml() {
    let out = import_as(
        "model = \"o3\"\n\n[mcp_servers.zeta]\ncommand = \"npx\"\nargs = [\"-y\", \"z\"]\nstartup_timeout_sec = 20\n\n[mcp_servers.zeta.env]\nZ_TOKEN = \"t\"\n\n[mcp_servers.alpha]\ncommand = \"uvx\"\n\n[mcp_servers.remote]\nurl = \"https://example.com/mcp\"\n",
        SourceFormat::Codex,
        // The file's order, not sorted.
        &["zeta", "alpha"],
    );
    let c = parse(&out.toml);
    assert_eq!(server(&c, "zeta").args, vec!["-y", "z"]);
    assert_eq!(server(&c, "zeta").env["Z_TOKEN"], "t");
    assert_eq!(out.skipped.len(), 1);
    assert!(out.warnings.join("\n").contains("startup_timeout_sec"));
    // Neither JSON nor a Codex config: the JSON error stands.
    assert!(matches!(
        import_mcp_servers("model = \"o3\"\n"),
        Err(ImportError::Json { .. })
    ));
}

#[test]
fn same_input_same_output() {
    assert_eq!(import(CURSOR).toml, import(CURSOR).toml);
}
