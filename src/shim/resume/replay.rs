//! The replay half of [`super::Resume`]: what the client's session is made
//! of (remembered from the daemon's answers), and how it is played again on
//! a new connection: `initialize` with the shim's own id, then
//! `notifications/initialized`, the log level and the subscriptions, and
//! the `list_changed` notices for the client.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FromDaemon, Own, Pending, Phase, Resume};
use crate::shim::peek::error_message;

impl Resume {
    /// The daemon answered a client request: remember what it defines.
    pub(super) fn answered_by_daemon(
        &mut self,
        line: &[u8],
        pending: Pending,
        out: &mut FromDaemon,
    ) {
        // Most answers are to plain requests, which need nothing of the
        // line: only the others pay for a second parse (the error check).
        if matches!(pending, Pending::Plain) {
            return;
        }
        let ok = error_message(line).is_none();
        match pending {
            Pending::Plain => {}
            Pending::Initialize { params, .. } => {
                if ok {
                    let version = result_of(line).and_then(|r| r.protocol_version);
                    if self.memory.init_params.is_none() {
                        self.memory.version = version;
                    }
                    self.memory.client_name = params.as_deref().and_then(client_name);
                    self.memory.init_params = params;
                }
                if self.phase == Phase::Replaying {
                    self.phase = Phase::Flushing;
                    out.flush = true;
                }
            }
            Pending::SetLevel(params) if ok => self.memory.log_level = Some(params),
            Pending::Subscribe { uri, params } if ok => {
                self.memory.subscriptions.insert(uri, params);
            }
            Pending::SetLevel(_) | Pending::Subscribe { .. } => {}
        }
    }

    /// The answer to the replayed `initialize`: on success, the rest of the
    /// replay goes first in the queue and the client hears what may have
    /// changed; on refusal, everything pending fails.
    pub(super) fn replayed_initialize(&mut self, line: &[u8], out: &mut FromDaemon) -> Vec<u8> {
        let refusal = match (error_message(line), result_of(line)) {
            (Some(e), _) => Some(format!("the restarted daemon refused to resume the session: {e}")),
            (None, None) => Some("the restarted daemon sent an unreadable initialize result".into()),
            (None, Some(r)) => match (&self.memory.version, &r.protocol_version) {
                (Some(was), Some(now)) if was != now => Some(format!(
                    "the restarted daemon negotiated MCP protocol version {now}, but the client's session uses {was}; restart the client"
                )),
                _ => {
                    self.resumed();
                    out.flush = true;
                    return list_changed(&r);
                }
            },
        };
        let why = refusal.unwrap_or_default();
        let errors = self.fail(&format!("stdioproxy: {why}; this request was not sent"));
        out.fatal = Some(why);
        errors
    }

    /// Queues the rest of the replay ahead of the client's own lines.
    fn resumed(&mut self) {
        let mut front = String::new();
        if self.memory.initialized {
            front.push_str("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        }
        if let Some(level) = self.memory.log_level.clone() {
            let id = self.own_id(Own::SetLevel);
            front.push_str(&request(&id, "logging/setLevel", Some(&level)));
        }
        let subs = self.memory.subscriptions.clone();
        self.subscribe_lines(subs, &mut front);
        self.front = (!front.is_empty()).then(|| front.into_bytes());
        self.phase = Phase::Flushing;
        self.resumes += 1;
    }

    fn subscribe_lines(&mut self, subs: BTreeMap<String, String>, out: &mut String) {
        for (uri, params) in subs {
            let id = self.own_id(Own::Subscribe(uri));
            out.push_str(&request(&id, "resources/subscribe", Some(&params)));
        }
    }

    /// The daemon's resources changed: subscriptions that failed in the
    /// replay are sent again (once live, ahead of the client's next lines).
    pub(super) fn retry_subscriptions(&mut self, out: &mut FromDaemon) {
        let live = self.phase == Phase::Live;
        if self.retry.is_empty() || !(live || self.phase == Phase::Flushing) {
            return;
        }
        let subs = std::mem::take(&mut self.retry);
        let mut lines = String::new();
        self.subscribe_lines(subs, &mut lines);
        // While flushing, the running flush sends it first.
        self.front
            .get_or_insert_with(Vec::new)
            .extend_from_slice(lines.as_bytes());
        if live {
            self.phase = Phase::Flushing;
            out.flush = true;
        }
    }

    /// What the replay restored, for the user (stderr).
    pub(super) fn replay_summary(&self) -> String {
        let mut parts = vec!["initialize".to_string()];
        if self.memory.log_level.is_some() {
            parts.push("the log level".into());
        }
        match self.memory.subscriptions.len() {
            0 => {}
            1 => parts.push("1 resource subscription".into()),
            n => parts.push(format!("{n} resource subscriptions")),
        }
        format!("the session is resumed (replayed {})", parts.join(", "))
    }
}

pub(super) fn request(id: &str, method: &str, params: Option<&str>) -> String {
    match params {
        Some(p) => {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\",\"params\":{p}}}\n")
        }
        None => format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\"}}\n"),
    }
}

pub(super) fn cancelled(id: &str, reason: &str) -> String {
    let reason = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{id},\"reason\":{reason}}}}}\n")
}

/// A -32603 error response with this raw id, built without
/// `serde_json::Value` (which the shim does not otherwise link).
pub(super) fn internal_error(id: &str, message: &str) -> String {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into());
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{},\"message\":{message}}}}}\n",
        crate::jsonrpc::code::INTERNAL_ERROR
    )
}

#[derive(Deserialize, Default)]
struct Declared {
    #[serde(default, rename = "listChanged")]
    list_changed: bool,
}

#[derive(Deserialize, Default)]
struct Capabilities {
    #[serde(default)]
    tools: Option<Declared>,
    #[serde(default)]
    prompts: Option<Declared>,
    #[serde(default)]
    resources: Option<Declared>,
}

#[derive(Deserialize)]
struct InitResult {
    #[serde(default, rename = "protocolVersion")]
    protocol_version: Option<String>,
    #[serde(default)]
    capabilities: Capabilities,
}

#[derive(Deserialize)]
struct WithResult {
    result: InitResult,
}

fn result_of(line: &[u8]) -> Option<InitResult> {
    serde_json::from_slice::<WithResult>(line)
        .ok()
        .map(|w| w.result)
}

fn client_name(params: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Info {
        name: String,
    }
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "clientInfo")]
        client_info: Info,
    }
    serde_json::from_slice::<Params>(params.as_bytes())
        .ok()
        .map(|p| p.client_info.name)
}

/// `list_changed` for each list the new daemon declares it announces.
fn list_changed(r: &InitResult) -> Vec<u8> {
    let mut out = String::new();
    let caps = &r.capabilities;
    for (declared, list) in [
        (&caps.tools, "tools"),
        (&caps.prompts, "prompts"),
        (&caps.resources, "resources"),
    ] {
        if declared.as_ref().is_some_and(|d| d.list_changed) {
            out.push_str(&format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/{list}/list_changed\"}}\n"
            ));
        }
    }
    out.into_bytes()
}
