//! `stdioproxy status` for a terminal: the daemon's status document
//! rendered for a person.
//!
//! The document ([`crate::control::Control::status`]) carries times as unix seconds,
//! which is what scripts want (`status --json`). A person wants "when" and
//! "how long ago": every time here is shown as local wall-clock time (the
//! date only when it is not today) with its age, e.g. `14:02:11 (12 s ago)`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};
use serde_json::Value;

/// Renders the `status` document; `now` is the time ages are counted from.
pub fn render(v: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let d = &v["daemon"];
    out.push_str(&format!(
        "stdioproxy {} (pid {}), up {}, socket {}\n",
        d["version"].as_str().unwrap_or("?"),
        d["pid"],
        d["uptime_secs"]
            .as_u64()
            .map_or("?".into(), |s| span(Duration::from_secs(s))),
        d["socket"].as_str().unwrap_or("?")
    ));
    out.push_str(&format!(
        "config: {}",
        v["config"]["path"].as_str().unwrap_or("?")
    ));
    match v["config"]["error"].as_str() {
        Some(e) => out.push_str(&format!("\n  ERROR (running the previous config): {e}\n")),
        None => out.push_str(" (ok)\n"),
    }
    if let Some(r) = v["config"]["last_reload"].as_object() {
        let at = r
            .get("at_unix")
            .and_then(Value::as_u64)
            .map_or("?".into(), |t| when(t, now));
        out.push_str(&format!(
            "last reload: {} ({}, {at}): {}\n",
            r.get("result").and_then(Value::as_str).unwrap_or("?"),
            r.get("trigger").and_then(Value::as_str).unwrap_or("?"),
            r.get("detail").and_then(Value::as_str).unwrap_or("")
        ));
    }
    if let Some(e) = v["pins"]["error"].as_str() {
        out.push_str(&format!(
            "PIN STORE REFUSED ({}): {e}; the tools of servers with pin_tools are held\n",
            v["pins"]["store"].as_str().unwrap_or("?")
        ));
    }
    out.push_str(&format!(
        "sessions: {}, tools: {}\n",
        v["sessions"], v["tools"]
    ));
    let servers = v["servers"].as_array().cloned().unwrap_or_default();
    if servers.is_empty() {
        out.push_str("no servers configured\n");
    }
    for s in servers {
        server(&mut out, &s, now);
    }
    out
}

fn server(out: &mut String, s: &Value, now: SystemTime) {
    let pid = s["pid"].as_u64().map_or("-".to_string(), |p| p.to_string());
    // Only a modern child is marked: legacy is what most MCP servers speak.
    let era = if s["era"] == "modern" {
        "  (MCP 2026-07-28)"
    } else {
        ""
    };
    out.push_str(&format!(
        "  {:<20} {:<9} pid {:<8} tools {:<4} restarts {}{era}\n",
        s["name"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        pid,
        s["tools"],
        s["restarts"]
    ));
    if let Some(t) = s["started_at_unix"].as_u64() {
        out.push_str(&format!("      started: {}\n", when(t, now)));
    }
    if let Some(t) = s["next_attempt_unix"].as_u64() {
        out.push_str(&format!("      next attempt: {}\n", when(t, now)));
    }
    if let Some(e) = s["last_error"].as_str() {
        match s["last_error_at_unix"].as_u64() {
            Some(t) => out.push_str(&format!("      last error ({}): {e}\n", when(t, now))),
            None => out.push_str(&format!("      last error: {e}\n")),
        }
    }
    let held: Vec<&str> = s["held_tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !held.is_empty() {
        out.push_str(&format!(
            "      held tools (see `stdioproxy tools pending`): {}\n",
            held.join(", ")
        ));
    }
    for r in s["shortened_tools"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "      tool {} is {}\n",
            r["name"].as_str().unwrap_or("?"),
            r["original"].as_str().unwrap_or("?")
        ));
    }
    instances(out, s, now);
}

/// The instances of a per-client or per-workspace server, one line each.
/// Keys come escaped from the daemon: a workspace path cannot break a line.
fn instances(out: &mut String, s: &Value, now: SystemTime) {
    let share = s["share"].as_str().unwrap_or("shared");
    if share == "shared" {
        return;
    }
    let list = s["instances"].as_array().cloned().unwrap_or_default();
    let max = s["max_instances"]
        .as_u64()
        .map_or(String::new(), |m| format!(" (max {m})"));
    out.push_str(&format!(
        "      {share}: {} instance{}{max}\n",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    ));
    for i in list {
        let client = i["owner"]["client"]
            .as_str()
            .map_or(String::new(), |c| format!(" ({})", c.escape_debug()));
        let used = i["last_used_unix"]
            .as_u64()
            .map_or("?".into(), |t| when(t, now));
        out.push_str(&format!(
            "        {}{client} {} pid {} restarts {} last used {used}\n",
            i["key"].as_str().unwrap_or("?"),
            i["state"].as_str().unwrap_or("?"),
            i["pid"].as_u64().map_or("-".to_string(), |p| p.to_string()),
            i["restarts"],
        ));
    }
}

/// `14:02:11 (12 s ago)`: local time (with the date when it is not today)
/// and the distance from `now`.
pub fn when(unix_secs: u64, now: SystemTime) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix_secs);
    let local: DateTime<Local> = at.into();
    let today: DateTime<Local> = now.into();
    let clock = if local.date_naive() == today.date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M:%S").to_string()
    };
    let relative = match now.duration_since(at) {
        Ok(ago) => format!("{} ago", span(ago)),
        Err(e) => format!("in {}", span(e.duration())),
    };
    format!("{clock} ({relative})")
}

/// A duration in its largest sensible unit: `12 s`, `4 min`, `3 h 5 min`,
/// `2 days`.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=172_799 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn spans_and_ages() {
        assert_eq!(span(Duration::from_secs(0)), "0 s");
        assert_eq!(span(Duration::from_secs(12)), "12 s");
        assert_eq!(span(Duration::from_secs(150)), "2 min");
        assert_eq!(span(Duration::from_secs(7200)), "2 h");
        assert_eq!(span(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(span(Duration::from_secs(3 * 86_400 + 5)), "3 days");
        let now = at(1_796_353_147);
        let w = when(1_796_353_135, now);
        assert!(w.ends_with(" (12 s ago)"), "{w}");
        let clock = DateTime::<Local>::from(at(1_796_353_135))
            .format("%H:%M:%S")
            .to_string();
        assert!(w.starts_with(&clock), "{w} vs {clock}");
        assert!(when(1_796_353_150, now).ends_with("(in 3 s)"));
        // Another day shows the date.
        let old = when(1_796_353_147 - 3 * 86_400, now);
        assert!(old.contains('-') && old.ends_with("(3 days ago)"), "{old}");
    }

    #[test]
    fn status_shows_local_times_and_ages_never_epoch_seconds() {
        let now = at(1_796_353_147);
        let doc = json!({
            "daemon": {"version": "0.1.0", "pid": 7, "uptime_secs": 3725, "socket": "/run/s.sock"},
            "config": {"path": "/c.toml", "error": null,
                       "last_reload": {"result": "applied", "trigger": "inotify", "at_unix": 1_796_353_135u64, "detail": "added x"}},
            "sessions": 2, "tools": 3,
            "servers": [{
                "name": "x", "state": "ready", "pid": 9, "tools": 3, "restarts": 1,
                "started_at_unix": 1_796_353_087u64,
                "last_error": "exited with 1", "last_error_at_unix": 1_796_353_080u64,
                "shortened_tools": [{"name": "x__long_7f3a", "original": "x__long_tool_name"}]
            }]
        });
        let text = render(&doc, now);
        assert!(text.contains("up 1 h 2 min"), "{text}");
        assert!(text.contains("last reload: applied (inotify, "), "{text}");
        assert!(text.contains("(12 s ago)): added x"), "{text}");
        assert!(
            text.contains("started: ") && text.contains("(60 s ago)"),
            "{text}"
        );
        assert!(
            text.contains("last error (") && text.contains("(67 s ago)): exited with 1"),
            "{text}"
        );
        assert!(
            text.contains("tool x__long_7f3a is x__long_tool_name"),
            "{text}"
        );
        assert!(!text.contains("1796353"), "no raw epoch seconds: {text}");
        assert!(!text.contains("since epoch"), "{text}");
    }
}
