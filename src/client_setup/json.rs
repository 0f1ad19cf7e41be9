//! The `mcpServers` JSON of Claude Desktop, Claude Code, Cursor and Gemini
//! CLI.
//!
//! What an edit keeps, exactly: the intended document is computed on the
//! parsed file (serde_json with `preserve_order`, so keys keep their
//! places), and then the change is spliced into the original text
//! (`splice`): an entry we replace is rewritten where it was, one we
//! remove goes with its comma, a new one is appended after the last entry
//! in the file's own indentation (or on the same line in a one-line file).
//! Every other byte stays as it was: other entries, other keys, whitespace,
//! the spelling of numbers. The spliced text is parsed again and must equal
//! the intended document; when it does not, or when there is nothing to
//! learn the layout from (`{}`), the whole file is rendered instead: pretty
//! with two-space indentation, or compact when it was on one line.

use serde_json::{Map, Value};

use super::{splice, Edited, Entry};

/// The top-level `mcpServers` of `text` (empty when the file is empty or
/// has none).
pub(super) fn servers(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let root = doc
        .as_object()
        .ok_or_else(|| "the top level is not a JSON object".to_string())?;
    match root.get("mcpServers") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err("\"mcpServers\" is not a JSON object".into()),
    }
}

/// Claude Code project-scope entries: (project path, name).
pub(super) fn project_servers(text: &str) -> Vec<(String, String)> {
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let Some(projects) = doc.get("projects").and_then(Value::as_object) else {
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

/// `{"mcpServers": {...}}` holding `entries`, pretty, with a final newline.
pub(super) fn snippet(entries: &[Entry]) -> String {
    let servers: Map<String, Value> = entries
        .iter()
        .map(|e| (e.key.clone(), e.to_json()))
        .collect();
    pretty(&serde_json::json!({ "mcpServers": servers })) + "\n"
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Sets every entry and removes `remove` in `mcpServers`, keeping every
/// other key. Entries already as wanted leave `text` unchanged.
pub(super) fn apply(text: &str, entries: &[Entry], remove: &[String]) -> Result<Edited, String> {
    let blank = text.trim().is_empty();
    let mut doc: Value = if blank {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?
    };
    let root = doc
        .as_object_mut()
        .ok_or_else(|| "the top level is not a JSON object".to_string())?;
    let servers = root
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()));
    if servers.is_null() {
        *servers = Value::Object(Map::new());
    }
    let servers = servers
        .as_object_mut()
        .ok_or_else(|| "\"mcpServers\" is not a JSON object".to_string())?;

    let mut edited = Edited::default();
    for e in entries {
        let wanted = e.to_json();
        match servers.get_mut(&e.key) {
            Some(v) if *v == wanted => {}
            Some(v) => {
                *v = wanted;
                edited.replaced.push(e.key.clone());
            }
            None => {
                servers.insert(e.key.clone(), wanted);
                edited.added.push(e.key.clone());
            }
        }
    }
    for k in remove {
        if servers.shift_remove(k).is_some() {
            edited.removed.push(k.clone());
        }
    }
    if !blank && edited.added.is_empty() && edited.replaced.is_empty() && edited.removed.is_empty()
    {
        edited.text = text.to_string();
        return Ok(edited);
    }
    // In place when possible: every byte we do not change stays.
    let changed: Vec<(String, Value)> = edited
        .added
        .iter()
        .chain(&edited.replaced)
        .filter_map(|k| servers.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    if !blank {
        if let Some(spliced) = splice::edit(text, &changed, &edited.removed) {
            if serde_json::from_str::<Value>(&spliced).ok().as_ref() == Some(&doc) {
                edited.text = spliced;
                return Ok(edited);
            }
            tracing::debug!("an in-place JSON edit did not give the intended document; rendering the whole file");
        }
    }
    let compact = !blank && !text.trim().contains('\n');
    edited.text = if compact {
        serde_json::to_string(&doc).map_err(|e| e.to_string())?
    } else {
        pretty(&doc)
    };
    if !compact || text.ends_with('\n') {
        edited.text.push('\n');
    }
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIM: &str = "/home/alice/.nix-profile/bin/stdioproxy-shim";

    fn entry(key: &str, args: &[&str]) -> Entry {
        Entry {
            key: key.into(),
            command: SHIM.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn merged(text: &str) -> String {
        apply(text, &[entry("stdioproxy", &[])], &[])
            .expect("merge")
            .text
    }

    fn entry_of(text: &str) -> Value {
        let v: Value = serde_json::from_str(text).expect("valid JSON");
        v["mcpServers"]["stdioproxy"].clone()
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
        let out = apply(original, &[entry("stdioproxy", &[])], &[]).expect("merge");
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
        assert_eq!(after["mcpServers"]["stdioproxy"], entry("x", &[]).to_json());
        assert!(
            out.text.starts_with("{\n  \"globalShortcut\""),
            "{}",
            out.text
        );
        assert!(out.text.ends_with("}\n"));
        assert_eq!(out.added, vec!["stdioproxy"]);
    }

    #[test]
    fn adds_mcp_servers_when_missing_or_null_or_empty() {
        for original in [
            "{\n    \"a\": 1,\n    \"b\": {\"c\": true}\n}",
            "{\n\t\"mcpServers\": null\n}\n",
            "{\n  \"mcpServers\": {}\n}\n",
            "{}\n",
            "",
        ] {
            let out = merged(original);
            assert_eq!(entry_of(&out)["command"], SHIM, "{original:?} -> {out}");
            if !original.is_empty() {
                let before: Value = serde_json::from_str(original).expect("json");
                let after: Value = serde_json::from_str(&out).expect("json");
                for k in keys(&before).iter().filter(|k| *k != "mcpServers") {
                    assert_eq!(after[k], before[k]);
                }
            }
        }
    }

    #[test]
    fn compact_files_stay_compact() {
        let out = merged(r#"{"theme":"dark","mcpServers":{"x":{"command":"y"}}}"#);
        assert_eq!(
            out,
            format!(
                r#"{{"theme":"dark","mcpServers":{{"x":{{"command":"y"}},"stdioproxy":{{"command":"{SHIM}","args":[]}}}}}}"#
            )
        );
    }

    #[test]
    fn replaces_in_place_removes_and_leaves_an_identical_entry() {
        let original = "{\n  \"mcpServers\": {\n    \"stdioproxy\": {\"command\": \"/usr/bin/stdioproxy-shim\", \"args\": []},\n    \"github\": {\"command\": \"npx\", \"env\": {\"T\": \"x\"}},\n    \"other\": {\"command\": \"x\"}\n  }\n}\n";
        let wanted = [entry("github", &["--server", "github"])];
        let out = apply(original, &wanted, &["stdioproxy".into()]).expect("merge");
        assert_eq!(out.replaced, vec!["github"]);
        assert_eq!(out.removed, vec!["stdioproxy"]);
        let after: Value = serde_json::from_str(&out.text).expect("json");
        assert_eq!(keys(&after["mcpServers"]), vec!["github", "other"]);
        assert_eq!(after["mcpServers"]["github"], wanted[0].to_json());
        let again = apply(&out.text, &wanted, &["stdioproxy".into()]).expect("merge");
        assert_eq!(again.text, out.text);
        assert!(again.replaced.is_empty() && again.added.is_empty());
    }

    #[test]
    fn a_hand_formatted_file_keeps_every_byte_around_the_new_entry() {
        let original = "{\n\t\"mcpServers\": {\n\t\t\"m\": {\"command\": \"npx\", \"args\": [\"-y\", \"m\"]}\n\t},\n\t\"n\": 1.50\n}\n";
        let out = merged(original);
        assert_eq!(
            out,
            format!("{{\n\t\"mcpServers\": {{\n\t\t\"m\": {{\"command\": \"npx\", \"args\": [\"-y\", \"m\"]}},\n\t\t\"stdioproxy\": {{\n\t\t\t\"command\": \"{SHIM}\",\n\t\t\t\"args\": []\n\t\t}}\n\t}},\n\t\"n\": 1.50\n}}\n")
        );
    }

    #[test]
    fn bad_documents_are_refused() {
        for bad in ["{", "[]", r#"{"mcpServers": []}"#] {
            assert!(
                apply(bad, &[entry("stdioproxy", &[])], &[]).is_err(),
                "{bad}"
            );
            assert!(servers(bad).is_err(), "{bad}");
        }
    }
}
