//! The CLI side of the server verbs: what `stdioproxy restart`, `logs` and
//! `tools pending|approve` send and print. Each returns the text for stdout
//! (or prints as lines arrive, for `logs --follow`), or the sentence the
//! binary prints before exiting 1.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{request, request_with, stream};
use crate::pins::{render_pending, Held};

/// `restart SERVER`: waits up to `startup_timeout` plus the stop grace.
pub fn restart(socket: &Path, server: &str) -> Result<String, String> {
    let v = request_with(
        socket,
        "restart",
        json!({ "server": server }),
        Duration::from_secs(600),
    )?;
    Ok(v["message"].as_str().unwrap_or("restarted").to_string())
}

/// `logs SERVER [-n N] [--follow]`: prints to `out` as lines arrive.
pub fn logs(
    socket: &Path,
    server: &str,
    lines: usize,
    follow: bool,
    out: &mut impl Write,
) -> Result<(), String> {
    let params = json!({ "server": server, "lines": lines, "follow": follow });
    stream(socket, "logs", params, |v| {
        if let Some(missed) = v["missed"].as_u64().filter(|m| *m > 0) {
            let _ = writeln!(
                out,
                "... {missed} line(s) dropped from the buffer before they could be shown"
            );
        }
        for line in v["lines"].as_array().into_iter().flatten() {
            if writeln!(out, "{}", line.as_str().unwrap_or_default()).is_err() {
                return false;
            }
        }
        out.flush().is_ok()
    })
}

/// `tools pending [--json]`.
pub fn pending(socket: &Path, as_json: bool) -> Result<String, String> {
    let v = request(socket, "tools-pending", Duration::from_secs(10))?;
    if as_json {
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
    }
    let mut text = String::new();
    if let Some(e) = v["store_error"].as_str() {
        text.push_str(&format!(
            "the pin store {} is refused: {e}\n",
            v["store"].as_str().unwrap_or("?")
        ));
    }
    let held: Vec<Held> = serde_json::from_value(v["held"].clone()).unwrap_or_default();
    text.push_str(&render_pending(&held));
    Ok(text)
}

/// `tools approve SERVER [TOOL]`.
pub fn approve(socket: &Path, server: &str, tool: Option<&str>) -> Result<String, String> {
    let params = json!({ "server": server, "tool": tool });
    let v = request_with(socket, "tools-approve", params, Duration::from_secs(10))
        .map_err(|e| format!("nothing approved: {e}"))?;
    let names: Vec<&str> = v["approved"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .collect();
    Ok(if names.is_empty() {
        format!("no tools of {server} are held\n")
    } else {
        format!(
            "approved {} tool(s) of {server}: {}; clients are told the tool list changed\n",
            names.len(),
            names.join(", ")
        )
    })
}
