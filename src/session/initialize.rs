//! The `initialize` handshake with a client: version negotiation, the
//! aggregated capabilities, the children's instructions, and what the client
//! declared that routing depends on (sampling, elicitation modes).

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::Session;
use crate::jsonrpc::{self, RawObject};
use crate::wire::{ClientCaps, SUPPORTED_VERSIONS};

impl Session {
    pub(super) fn initialize(&mut self, id: &RawValue, params: Option<&RawValue>) {
        let params = params.and_then(RawObject::parse);
        let requested = params.as_ref().and_then(|p| p.get_str("protocolVersion"));
        let version = match requested.as_deref() {
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
            _ => SUPPORTED_VERSIONS[0],
        };
        let caps: Value = params
            .as_ref()
            .and_then(|p| p.get("capabilities"))
            .and_then(|c| serde_json::from_str(c.get()).ok())
            .unwrap_or(Value::Null);
        self.link.set_caps(client_caps(&caps));
        if let Some(name) = params
            .as_ref()
            .and_then(|p| p.get("clientInfo"))
            .and_then(RawObject::parse)
            .and_then(|i| i.get_str("name"))
        {
            self.link.set_client_name(&name);
        }
        let mut capabilities = json!({
            "tools": { "listChanged": true },
            "prompts": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "logging": {},
            "completions": {},
        });
        if version == SUPPORTED_VERSIONS[0] {
            if let Some(tasks) = self.tasks_capability() {
                capabilities["tasks"] = tasks;
            }
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": { "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") },
        });
        if let Some(instructions) = self.instructions() {
            result["instructions"] = Value::String(instructions);
        }
        // A single-server session introduces itself as that server.
        if let Some((info, instructions)) = self.single_server_info() {
            result["serverInfo"] = info;
            match instructions {
                Some(text) => result["instructions"] = Value::String(text),
                None => {
                    if let Some(m) = result.as_object_mut() {
                        m.remove("instructions");
                    }
                }
            }
        }
        tracing::debug!(session = self.link.id, requested = ?requested, version, "initialize");
        self.send(jsonrpc::response(id.get(), &result.to_string()));
    }

    /// `tasks` when a visible child supports tasks: the daemon lists and
    /// cancels tasks itself (through the owning child), and offers
    /// task-augmented tool calls when a child does.
    fn tasks_capability(&self) -> Option<Value> {
        let tasks: Vec<Value> = self
            .hub
            .supervisor
            .upstreams()
            .iter()
            .filter(|u| self.visible(&u.name))
            .filter_map(|u| u.capabilities().get("tasks").cloned())
            .collect();
        if tasks.is_empty() {
            return None;
        }
        let mut cap = json!({ "list": {}, "cancel": {} });
        if tasks
            .iter()
            .any(|t| t.pointer("/requests/tools/call").is_some())
        {
            cap["requests"] = json!({ "tools": { "call": {} } });
        }
        Some(cap)
    }

    /// Each visible child's instructions, labelled with its server name.
    pub(super) fn instructions(&self) -> Option<String> {
        let parts: Vec<String> = self
            .hub
            .supervisor
            .upstreams()
            .iter()
            .filter(|u| self.visible(&u.name))
            .filter_map(|u| {
                let text = u.init_info()?.instructions?;
                Some(format!(
                    "## Server \"{}\" (tools prefixed {}__)\n{}",
                    u.name,
                    u.name,
                    text.trim()
                ))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}

/// What the client declared that the daemon routes on. A bare
/// `elicitation: {}` means form mode (the 2025-06-18 shape).
fn client_caps(caps: &Value) -> ClientCaps {
    let elicitation = caps.get("elicitation");
    let form = elicitation
        .is_some_and(|e| e.get("form").is_some() || (e.get("url").is_none() && e.is_object()));
    ClientCaps {
        sampling: caps.get("sampling").is_some_and(Value::is_object),
        elicitation_form: form,
        elicitation_url: elicitation.is_some_and(|e| e.get("url").is_some()),
        roots: caps.get("roots").is_some_and(Value::is_object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_capabilities() {
        let c = client_caps(&json!({"sampling": {}, "elicitation": {}}));
        assert!(c.sampling && c.elicitation_form && !c.elicitation_url);
        let c = client_caps(&json!({"elicitation": {"url": {}}}));
        assert!(!c.sampling && !c.elicitation_form && c.elicitation_url);
        let c = client_caps(&json!({"elicitation": {"form": {}, "url": {}}}));
        assert!(c.elicitation_form && c.elicitation_url);
        assert_eq!(client_caps(&Value::Null), ClientCaps::default());
        assert!(client_caps(&json!({"roots": {"listChanged": true}})).roots);
    }
}
