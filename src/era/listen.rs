//! `subscriptions/listen`: a modern client's standing request for change
//! notifications, which replaces `resources/subscribe` and the legacy
//! era's unsolicited `list_changed`.
//!
//! A session may hold several listens at once; each is the listen request's
//! id and the filter the daemon honours (the kinds it can deliver, the URIs
//! it was asked for). The listen is acknowledged with
//! `notifications/subscriptions/acknowledged`; every notification it then
//! gets carries `_meta["io.modelcontextprotocol/subscriptionId"]` = that
//! id. A `notifications/cancelled` naming it ends it, and the listen
//! request is answered then.

use std::sync::Mutex;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::key;
use crate::catalog::ListKind;
use crate::jsonrpc::{self, RawObject};

/// What a listen asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `toolsListChanged`
    pub tools: bool,
    /// `promptsListChanged`
    pub prompts: bool,
    /// `resourcesListChanged` (templates included)
    pub resources: bool,
    /// `resourceSubscriptions`: URIs whose updates are wanted.
    pub uris: Vec<String>,
}

impl Filter {
    /// Reads `params.notifications`; `None` when it is missing or malformed.
    pub fn parse(params: Option<&RawValue>) -> Option<Filter> {
        let n = params
            .and_then(RawObject::parse)
            .and_then(|p| p.get("notifications"))
            .and_then(|n| serde_json::from_str::<Value>(n.get()).ok())
            .filter(Value::is_object)?;
        let flag = |k: &str| n.get(k) == Some(&Value::Bool(true));
        let uris = match n.get("resourceSubscriptions") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|u| u.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()?,
            Some(_) => return None,
        };
        Some(Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        })
    }

    /// What the daemon honours: every list kind (it announces changes of
    /// all of them), URIs only when some server supports subscriptions.
    pub fn honoured(mut self, can_subscribe: bool) -> Filter {
        if !can_subscribe {
            self.uris.clear();
        }
        self
    }

    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        !self.tools && !self.prompts && !self.resources && self.uris.is_empty()
    }

    /// True when a change of `kind` is wanted.
    pub fn wants(&self, kind: ListKind) -> bool {
        match kind {
            ListKind::Tools => self.tools,
            ListKind::Prompts => self.prompts,
            ListKind::Resources | ListKind::Templates => self.resources,
        }
    }

    /// The filter as the acknowledgement states it.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        for (k, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                o.insert(k.into(), Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            o.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(o)
    }
}

/// One open listen.
struct Listen {
    /// The listen request's id, raw.
    id: Box<RawValue>,
    filter: Filter,
}

/// A session's open listens.
#[derive(Default)]
pub struct Listens {
    open: Mutex<Vec<Listen>>,
}

impl Listens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listen>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a listen; returns its acknowledgement line. False (and no
    /// line) when a listen with that id is open already.
    pub fn open(&self, id: &RawValue, filter: Filter) -> Option<String> {
        let mut open = self.lock();
        if open.iter().any(|l| l.id.get() == id.get()) {
            return None;
        }
        let params = json!({ "notifications": filter.to_json() });
        let line = tagged(
            "notifications/subscriptions/acknowledged",
            &params.to_string(),
            id,
        );
        open.push(Listen {
            id: id.to_owned(),
            filter,
        });
        Some(line)
    }

    /// Closes the listen with raw id `id`; returns the line answering its
    /// request, if it was open.
    pub fn close(&self, id: &str) -> Option<String> {
        let mut open = self.lock();
        let at = open.iter().position(|l| l.id.get() == id)?;
        let l = open.remove(at);
        Some(closed_response(&l.id))
    }

    /// Lines announcing a change of `kind`, one per listen that wants it.
    pub fn list_changed(&self, kind: ListKind) -> Vec<String> {
        let method = kind.changed_notification();
        self.lock()
            .iter()
            .filter(|l| l.filter.wants(kind))
            .map(|l| tagged(method, "{}", &l.id))
            .collect()
    }

    /// Lines carrying `notifications/resources/updated` (raw params) for
    /// `uri`, one per listen that asked for it.
    pub fn resource_updated(&self, uri: &str, params: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|l| l.filter.uris.iter().any(|u| u == uri))
            .map(|l| tagged("notifications/resources/updated", params, &l.id))
            .collect()
    }

    /// Every URI some open listen asked for (with repeats removed).
    pub fn uris(&self) -> Vec<String> {
        let mut uris: Vec<String> = self
            .lock()
            .iter()
            .flat_map(|l| l.filter.uris.iter().cloned())
            .collect();
        uris.sort();
        uris.dedup();
        uris
    }

    /// True when some listen wants changes of `kind`.
    pub fn wants(&self, kind: ListKind) -> bool {
        self.lock().iter().any(|l| l.filter.wants(kind))
    }

    /// Number of open listens.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A notification with `params` (raw object) tagged with the listen `id`.
fn tagged(method: &str, params: &str, id: &RawValue) -> String {
    let obj = RawObject::parse_str(params);
    let mut meta: serde_json::Map<String, Value> = obj
        .as_ref()
        .and_then(|o| o.get("_meta"))
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    let id_value: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    meta.insert(key::SUBSCRIPTION_ID.into(), id_value);
    let meta = Value::Object(meta).to_string();
    let params = match obj {
        Some(o) => o.to_string_with(&[("_meta", &meta)]),
        None => format!("{{\"_meta\":{meta}}}"),
    };
    jsonrpc::notification(method, Some(&params))
}

/// The answer to a listen request that ended.
fn closed_response(id: &RawValue) -> String {
    let id_value: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    let result = json!({
        "resultType": "complete",
        "_meta": {
            key::SUBSCRIPTION_ID: id_value,
            key::SERVER_INFO: super::decorate::server_info(),
        },
    });
    jsonrpc::response(id.get(), &result.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    fn v(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn reads_filters() {
        let f = Filter::parse(Some(&raw(
            r#"{"notifications":{"toolsListChanged":true,"promptsListChanged":false,"resourceSubscriptions":["a://b"]},"_meta":{}}"#,
        )))
        .unwrap();
        assert!(f.tools && !f.prompts && !f.resources);
        assert_eq!(f.uris, vec!["a://b"]);
        assert_eq!(f.clone().honoured(false).uris, Vec::<String>::new());
        assert_eq!(
            f.to_json(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["a://b"]})
        );
        assert!(Filter::parse(Some(&raw("{}"))).is_none());
        assert!(Filter::parse(Some(&raw(
            r#"{"notifications":{"resourceSubscriptions":[1]}}"#
        )))
        .is_none());
        assert!(Filter::parse(Some(&raw(r#"{"notifications":{}}"#)))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn several_listens_each_get_their_own_tag() {
        let ls = Listens::default();
        let tools = Filter {
            tools: true,
            ..Filter::default()
        };
        let all = Filter {
            tools: true,
            prompts: true,
            resources: true,
            uris: vec!["u://1".into()],
        };
        let ack = v(&ls.open(&raw("7"), tools.clone()).unwrap());
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(ack["params"]["_meta"][key::SUBSCRIPTION_ID], 7);
        assert_eq!(
            ack["params"]["notifications"],
            json!({"toolsListChanged": true})
        );
        assert!(ls.open(&raw("7"), tools).is_none(), "one listen per id");
        ls.open(&raw("\"b\""), all).unwrap();
        let lines: Vec<Value> = ls
            .list_changed(ListKind::Tools)
            .iter()
            .map(|l| v(l))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["method"], "notifications/tools/list_changed");
        assert_eq!(lines[0]["params"]["_meta"][key::SUBSCRIPTION_ID], 7);
        assert_eq!(lines[1]["params"]["_meta"][key::SUBSCRIPTION_ID], "b");
        assert_eq!(ls.list_changed(ListKind::Prompts).len(), 1);
        let up = ls.resource_updated("u://1", r#"{"uri":"u://1"}"#);
        assert_eq!(up.len(), 1);
        assert_eq!(v(&up[0])["params"]["uri"], "u://1");
        assert!(ls
            .resource_updated("u://2", r#"{"uri":"u://2"}"#)
            .is_empty());
        assert_eq!(ls.uris(), vec!["u://1"]);
        let done = v(&ls.close("7").unwrap());
        assert_eq!(done["id"], 7);
        assert_eq!(done["result"]["resultType"], "complete");
        assert!(ls.close("7").is_none());
        assert_eq!(ls.list_changed(ListKind::Tools).len(), 1);
    }
}
