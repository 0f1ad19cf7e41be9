//! The two tools of a `--tools search` session: `search_tools` and
//! `call_tool`.
//!
//! Aggregating many servers gives a model hundreds of tool definitions on
//! every turn. A search-mode session lists only these two; the model finds
//! what it needs with `search_tools` (BM25, see [`crate::tool_search`]) and
//! runs it with `call_tool`, which the session turns into an ordinary
//! `tools/call` of the named tool (same id, same `_meta` with its progress
//! token, same task request), so progress, cancellation, requests to the
//! client and errors behave exactly as for a direct call, and the result
//! comes back unchanged.
//!
//! The descriptions carry the number of tools and the servers' names, so
//! they change (and the client is told the list changed) when the catalog
//! does. This module builds the definitions and the search results; the
//! session routes.

use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::jsonrpc::RawObject;
use crate::tool_search::closest;

/// The search tool's name.
pub const SEARCH: &str = "search_tools";
/// The call tool's name.
pub const CALL: &str = "call_tool";
/// Results when the query gives no limit.
pub const DEFAULT_LIMIT: usize = 10;
/// Most results one search returns.
pub const MAX_LIMIT: usize = 50;

/// What the session knows about its tools, for the descriptions.
pub struct Summary<'a> {
    /// Tools the session can call.
    pub tools: usize,
    /// Servers the session sees.
    pub servers: &'a [String],
}

/// The `tools` array of a search-mode session's `tools/list`, with the
/// meta-tools named `names` (`[search, call]`, fitted to the session's
/// budget).
pub fn definitions(names: &[String; 2], summary: &Summary<'_>) -> Value {
    let servers = if summary.servers.is_empty() {
        "no servers yet".to_string()
    } else {
        summary.servers.join(", ")
    };
    let (search, call) = (&names[0], &names[1]);
    json!([
        {
            "name": search,
            "title": "Search tools",
            "description": format!(
                "Finds tools among the {} tools of the MCP servers {servers}. This client lists only \
                 {search} and {call}: search first, then run what you found with {call}. Give \
                 `query` as a few words for what you want to do (for example \"create github \
                 issue\" or \"read file\"); `limit` caps the results (default {DEFAULT_LIMIT}, at \
                 most {MAX_LIMIT}). Returns the best matches first, each with its exact `name`, \
                 `description` and `inputSchema`.",
                summary.tools
            ),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Words describing the task or the tool"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                              "description": "Most results to return"},
                },
                "required": ["query"],
            },
            "outputSchema": {
                "type": "object",
                "properties": {"tools": {"type": "array", "items": {"type": "object"}}},
                "required": ["tools"],
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        },
        {
            "name": call,
            "title": "Call a tool",
            "description": format!(
                "Runs one of the {} tools of {servers}, found with {search}. `name` is the tool's \
                 name exactly as {search} returned it; `arguments` is an object that matches that \
                 tool's inputSchema. Returns the tool's own result unchanged.",
                summary.tools
            ),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The tool's name, from search_tools"},
                    "arguments": {"type": "object", "description": "The tool's arguments"},
                },
                "required": ["name"],
            },
        },
    ])
}

/// A tool result: `text` as content, `structured` as structuredContent.
pub fn tool_result(text: &str, structured: Option<Value>, is_error: bool) -> String {
    let mut r = json!({ "content": [{ "type": "text", "text": text }] });
    if let Some(s) = structured {
        r["structuredContent"] = s;
    }
    if is_error {
        r["isError"] = Value::Bool(true);
    }
    r.to_string()
}

/// `search_tools`' arguments: (query, limit), or the error text for the
/// model.
pub fn search_args(arguments: Option<&RawObject<'_>>) -> Result<(String, usize), String> {
    let query = arguments.and_then(|a| a.get_str("query"));
    let Some(query) = query.filter(|q| !q.trim().is_empty()) else {
        return Err(format!(
            "{SEARCH} needs `query`: a few words describing the tool you need"
        ));
    };
    let limit = match arguments.and_then(|a| a.get("limit")) {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.get().parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => return Err(format!("`limit` must be an integer from 1 to {MAX_LIMIT}")),
        },
    };
    Ok((query, limit))
}

/// The result of a search: `hits` are (session name, catalog position).
pub fn search_result(catalog: &Catalog, hits: &[(String, usize)]) -> String {
    let tools: Vec<Value> = hits
        .iter()
        .filter_map(|(name, pos)| {
            let item = catalog.tool_at(*pos)?;
            let def: Value = serde_json::from_str(&item.json).ok()?;
            Some(json!({
                "name": name,
                "description": def.get("description").cloned().unwrap_or(Value::String(String::new())),
                "inputSchema": def.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
            }))
        })
        .collect();
    let structured = json!({ "tools": tools });
    let text = if tools.is_empty() {
        "No tool matches; try other words (a tool's purpose, an object it works on, or its server's name).".to_string()
    } else {
        structured.to_string()
    };
    tool_result(&text, Some(structured), false)
}

/// `call_tool`'s arguments: (name, raw arguments object text).
pub fn call_args(arguments: Option<&RawObject<'_>>) -> Result<(String, String), String> {
    let Some(name) = arguments.and_then(|a| a.get_str("name")) else {
        return Err(format!(
            "{CALL} needs `name`: a tool name returned by {SEARCH}"
        ));
    };
    let args = match arguments.and_then(|a| a.get("arguments")) {
        None => "{}".to_string(),
        Some(raw) if raw.get().trim_start().starts_with('{') => raw.get().to_string(),
        Some(_) => return Err("`arguments` must be an object".into()),
    };
    Ok((name, args))
}

/// The tool error for a `call_tool` of a name the session does not have,
/// naming the closest ones.
pub fn unknown_tool<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let near = closest(name, candidates, 5);
    let text = if near.is_empty() {
        format!("No tool is named {name:?}. Use {SEARCH} to find tools.")
    } else {
        format!(
            "No tool is named {name:?}. The closest names: {}. Use {SEARCH} to find tools.",
            near.join(", ")
        )
    };
    tool_result(&text, None, true)
}

/// The text of the refusal of a held tool (pinning), for `tools/call`
/// errors and `call_tool` results alike.
pub fn held_message(server: &str, tool: &str) -> String {
    format!(
        "tool {tool:?} of server {server:?} is held: its definition changed since it was pinned (or it is new); review it with `stdioproxy tools pending` and trust it with `stdioproxy tools approve {server}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> RawObject<'_> {
        RawObject::parse_str(text).unwrap()
    }

    #[test]
    fn descriptions_count_tools_and_name_servers() {
        let servers = vec!["alpha".to_string(), "beta".to_string()];
        let names = [SEARCH.to_string(), CALL.to_string()];
        let d = definitions(
            &names,
            &Summary {
                tools: 42,
                servers: &servers,
            },
        );
        let search = d[0]["description"].as_str().unwrap();
        assert!(
            search.contains("42") && search.contains("alpha, beta"),
            "{search}"
        );
        assert!(d[1]["description"]
            .as_str()
            .unwrap()
            .contains("search_tools"));
        assert_eq!(d[0]["inputSchema"]["required"], json!(["query"]));
    }

    #[test]
    fn arguments_are_checked() {
        assert!(search_args(None).is_err());
        assert!(search_args(Some(&obj(r#"{"query":"  "}"#))).is_err());
        assert_eq!(
            search_args(Some(&obj(r#"{"query":"echo"}"#))).unwrap(),
            ("echo".into(), DEFAULT_LIMIT)
        );
        assert_eq!(
            search_args(Some(&obj(r#"{"query":"e","limit":500}"#)))
                .unwrap()
                .1,
            MAX_LIMIT
        );
        assert!(search_args(Some(&obj(r#"{"query":"e","limit":0}"#))).is_err());
        assert!(search_args(Some(&obj(r#"{"query":"e","limit":"x"}"#))).is_err());
        assert_eq!(
            call_args(Some(&obj(r#"{"name":"a__b","arguments":{"x":1e999}}"#))).unwrap(),
            ("a__b".into(), r#"{"x":1e999}"#.into()),
            "arguments pass byte for byte"
        );
        assert_eq!(call_args(Some(&obj(r#"{"name":"a"}"#))).unwrap().1, "{}");
        assert!(call_args(Some(&obj(r#"{"name":"a","arguments":[1]}"#))).is_err());
        assert!(call_args(Some(&obj("{}"))).is_err());
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let r: Value =
            serde_json::from_str(&unknown_tool("alpha__ehco", ["alpha__echo", "beta__add"]))
                .unwrap();
        assert_eq!(r["isError"], true);
        assert!(r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("alpha__echo"));
    }
}
