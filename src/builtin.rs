//! The daemon's own tools, listed under the reserved server name
//! `stdioproxy` like a configured server's: today one, `stdioproxy__reload`,
//! which makes the daemon re-read its config (only when
//! `[daemon] reload_tool = true`: a model should not restart servers unless
//! the user decided it may).
//!
//! Everything about it is here: the name, the listing (title, description,
//! schema, annotations), and how a call's outcome is rendered as a
//! `tools/call` result. The session routes the call here, and the reload
//! itself is the [`crate::reload::Reloader`]'s, passed in as a future so this
//! module depends on neither.

use std::future::Future;

use serde_json::{json, Value};

use crate::config::{ConfigDiff, DaemonSettings};

/// The prefix of the daemon's own tools. Configured servers cannot take it
/// (see [`crate::config::RESERVED_SERVER_NAMES`]).
pub const SERVER: &str = "stdioproxy";

/// The reload tool's name (clients see `stdioproxy__reload`).
pub const RELOAD: &str = "reload";

/// The daemon's own tools, as a server named [`SERVER`] would list them.
pub fn tools(settings: &DaemonSettings) -> Vec<Value> {
    if !settings.reload_tool {
        return Vec::new();
    }
    vec![json!({
        "name": RELOAD,
        "title": "Reload stdioproxy's config",
        "description": "Re-read the stdioproxy config file now and apply what changed: servers are added, removed or restarted, unchanged ones keep running. Returns what changed, or why the config was refused.",
        "inputSchema": { "type": "object", "properties": {} },
        "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false },
    })]
}

/// True when `name` (the name under [`SERVER`]) is one of the daemon's tools.
pub fn is_tool(name: &str) -> bool {
    name == RELOAD
}

/// Runs the reload tool: awaits `reload` (the reloader's reload, triggered
/// by the tool) and renders its outcome as a `tools/call` result: what
/// changed, or why nothing was applied (`isError`).
pub async fn call_reload<F>(reload: F) -> String
where
    F: Future<Output = Result<ConfigDiff, String>>,
{
    let (text, is_error) = match reload.await {
        Ok(diff) => (format!("Config reloaded: {}", diff.summary()), false),
        Err(e) => (format!("The config was not applied: {e}"), true),
    };
    json!({
        "content": [{ "type": "text", "text": text }],
        "isError": is_error,
    })
    .to_string()
}
