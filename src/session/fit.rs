//! A session fitted to its client (issue 16): the child's own names for a
//! single-server shim (`--server`), names within a budget (`--name-max`),
//! search mode (`--tools search`), and the refusal of held tools (pinning).
//!
//! Everything here sits between the client's names and the catalog's: the
//! session looks a name up through [`Session::lookup`] (the catalog itself
//! when the session asked for nothing, else its [`View`], rebuilt when the
//! catalog changes), lists through [`Session::page`], and gives the two
//! meta-tools of search mode their answers. A `call_tool` becomes an
//! ordinary `tools/call` of the named tool under the same request id, so
//! what follows (progress, cancellation, requests to the client, the
//! result) is exactly a direct call's.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;

use super::{Hub, Session, SessionOptions};
use crate::catalog::{Catalog, CursorError, ListKind, Page};
use crate::jsonrpc::{self, code, RawObject};
use crate::meta_tools::{self, Summary};
use crate::names;
use crate::view::{Naming, Resolved, View};
use crate::wire::SessionLink;

/// Per-session state of the fitting.
pub(super) struct Fit {
    /// The names the session asked for.
    pub(super) naming: Naming,
    /// Search mode.
    pub(super) search: bool,
    /// The meta-tools' names (fitted to the budget): search, call.
    meta: [String; 2],
    /// The view of the last catalog it was needed for.
    view: RefCell<Option<Arc<View>>>,
}

impl Fit {
    pub(super) fn new(options: &SessionOptions) -> Self {
        let meta = match options.naming.name_max {
            Some(max) => {
                let fitted = names::fit_names(&[meta_tools::SEARCH, meta_tools::CALL], max);
                [fitted[0].clone(), fitted[1].clone()]
            }
            None => [meta_tools::SEARCH.to_string(), meta_tools::CALL.to_string()],
        };
        Self {
            naming: options.naming.clone(),
            search: options.search,
            meta,
            view: RefCell::new(None),
        }
    }
}

/// Where a name the client used leads.
pub(super) enum Lookup {
    /// The catalog item with this key.
    Key(String),
    /// A held tool (pinning).
    Held { server: Arc<str>, tool: String },
    /// Nothing (yet).
    Missing,
}

/// The session options a shim's hello asks for (`servers`, `server`,
/// `name_max`, `tools`, `resume`), or the refusal.
pub fn options_from_hello(hello: crate::proto::Hello) -> Result<SessionOptions, String> {
    let (servers, server) = (hello.servers, hello.server);
    if server.is_some() && servers.is_some() {
        return Err("use either --server or --servers, not both".into());
    }
    let name_max = match hello.name_max {
        None => None,
        Some(n) if (names::MIN_BUDGET as u64..=names::MAX_BUDGET as u64).contains(&n) => {
            Some(n as usize)
        }
        Some(n) => {
            return Err(format!(
                "name_max {n} is outside {}..={}",
                names::MIN_BUDGET,
                names::MAX_BUDGET
            ))
        }
    };
    let search = match hello.tools.as_deref() {
        None | Some("all") => false,
        Some("search") => true,
        Some(other) => return Err(format!("unknown tools mode {other:?} (use \"search\")")),
    };
    let visible: Option<HashSet<String>> = match &server {
        Some(s) => Some(HashSet::from([s.clone()])),
        None => servers.map(|v| v.into_iter().collect()),
    };
    Ok(SessionOptions {
        servers: visible,
        naming: Naming { server, name_max },
        search,
        resumed: hello.resume,
        ..SessionOptions::default()
    })
}

/// Refuses a single-server session for a server that is not running,
/// naming the servers that are (and the disabled one, if that is it).
pub fn check_options(hub: &Hub, options: &SessionOptions) -> Result<(), String> {
    let Some(name) = &options.naming.server else {
        return Ok(());
    };
    if hub.supervisor.upstream(name).is_some() {
        return Ok(());
    }
    let running: Vec<String> = hub
        .supervisor
        .upstreams()
        .iter()
        .map(|u| u.name.to_string())
        .collect();
    let list = if running.is_empty() {
        "none".to_string()
    } else {
        running.join(", ")
    };
    if hub.supervisor.disabled().iter().any(|d| d == name) {
        return Err(format!(
            "server {name:?} is disabled in the config (enabled = false); servers: {list}"
        ));
    }
    Err(format!(
        "no server named {name:?} is configured; servers: {list}"
    ))
}

/// The catalog key a client's name maps to in `catalog` for a session with
/// `naming` (for calls that waited for their server, after which the
/// catalog is a new one).
pub(super) fn key_in(
    catalog: &Catalog,
    naming: &Naming,
    link: &SessionLink,
    kind: ListKind,
    name: &str,
) -> Option<String> {
    if naming.is_plain() {
        return Some(name.to_string());
    }
    match View::build(catalog, naming, |s| link.visible(s)).resolve(kind, name) {
        Resolved::Key(key) => Some(key.to_string()),
        _ => None,
    }
}

impl Session {
    /// The session's view of `catalog`, when its names are not the
    /// catalog's; built once per catalog.
    fn view(&self, catalog: &Catalog) -> Option<Arc<View>> {
        if self.fit.naming.is_plain() {
            return None;
        }
        let mut cached = self.fit.view.borrow_mut();
        if let Some(v) = cached
            .as_ref()
            .filter(|v| v.generation == catalog.generation)
        {
            return Some(v.clone());
        }
        let v = Arc::new(View::build(catalog, &self.fit.naming, |s| self.visible(s)));
        *cached = Some(v.clone());
        Some(v)
    }

    /// Where `name` leads for this session.
    pub(super) fn lookup(&self, catalog: &Catalog, kind: ListKind, name: &str) -> Lookup {
        if let Some(view) = self.view(catalog) {
            return match view.resolve(kind, name) {
                Resolved::Key(key) => Lookup::Key(key.to_string()),
                Resolved::Held { server, tool } => Lookup::Held { server, tool },
                Resolved::Unknown => Lookup::Missing,
            };
        }
        if catalog.get(kind, name).is_some() {
            return Lookup::Key(name.to_string());
        }
        match catalog.held_tool(name).filter(|(s, _)| self.visible(s)) {
            Some((server, tool)) if kind == ListKind::Tools => Lookup::Held {
                server: server.clone(),
                tool: tool.to_string(),
            },
            _ => Lookup::Missing,
        }
    }

    /// One page of a list as this session sees it.
    pub(super) fn page(
        &self,
        catalog: &Catalog,
        kind: ListKind,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<Page, CursorError> {
        if kind == ListKind::Tools && self.fit.search {
            if cursor.is_some() {
                return Err(CursorError::Invalid);
            }
            let servers = self.visible_servers();
            let summary = Summary {
                tools: self.callable(catalog).len(),
                servers: &servers,
            };
            return Ok(Page {
                items: meta_tools::definitions(&self.fit.meta, &summary).to_string(),
                next_cursor: None,
            });
        }
        match self.view(catalog) {
            Some(view) => view.page(kind, cursor, page_size),
            None => catalog.page(kind, cursor, page_size, |s| self.visible(s)),
        }
    }

    /// The configured servers this session sees.
    fn visible_servers(&self) -> Vec<String> {
        self.hub
            .supervisor
            .upstreams()
            .iter()
            .filter(|u| self.visible(&u.name))
            .map(|u| u.name.to_string())
            .collect()
    }

    /// The tools this session may call: (its name for it, catalog position).
    fn callable(&self, catalog: &Catalog) -> Vec<(String, usize)> {
        let view = self.view(catalog);
        catalog
            .items(ListKind::Tools)
            .enumerate()
            .filter(|(_, item)| self.visible(&item.server))
            .filter_map(|(pos, item)| match &view {
                Some(v) => v
                    .name_of(ListKind::Tools, &item.key)
                    .map(|n| (n.to_string(), pos)),
                None => Some((item.key.clone(), pos)),
            })
            .collect()
    }

    /// A call to a held tool: refused, saying why and what to run.
    pub(super) fn refuse_held(&self, id: &RawValue, server: &str, tool: &str) {
        tracing::info!(
            session = self.link.id,
            server,
            tool,
            "refused a call to a held tool"
        );
        self.error(
            Some(id),
            code::INVALID_PARAMS,
            &meta_tools::held_message(server, tool),
            Some(serde_json::json!({ "server": server, "tool": tool, "held": true })),
        );
    }

    /// `serverInfo` and `instructions` of the child, for a single-server
    /// session (`None` for any other session).
    pub(super) fn single_server_info(&self) -> Option<(Value, Option<String>)> {
        let name = self.fit.naming.server.as_ref()?;
        let up = self.hub.supervisor.upstream(name)?;
        let init = up.init_info().unwrap_or_default();
        let info = match init.server_info {
            Value::Object(_) => init.server_info,
            _ => serde_json::json!({ "name": name, "version": "unknown" }),
        };
        Some((info, init.instructions))
    }

    /// `search_tools` and `call_tool` in search mode; false for any other
    /// name (then it is an ordinary tool call).
    pub(super) fn meta_call(&self, id: &RawValue, name: &str, obj: &RawObject<'_>) -> bool {
        if !self.fit.search {
            return false;
        }
        let arguments = obj.get("arguments").and_then(RawObject::parse);
        if name == self.fit.meta[0] {
            self.search_tools(id, arguments.as_ref());
            true
        } else if name == self.fit.meta[1] {
            self.call_tool(id, obj, arguments.as_ref());
            true
        } else {
            false
        }
    }

    fn tool_result(&self, id: &RawValue, result: &str) {
        self.send(jsonrpc::response(id.get(), result));
    }

    fn search_tools(&self, id: &RawValue, arguments: Option<&RawObject<'_>>) {
        let (query, limit) = match meta_tools::search_args(arguments) {
            Ok(q) => q,
            Err(e) => return self.tool_result(id, &meta_tools::tool_result(&e, None, true)),
        };
        let catalog = self.hub.supervisor.catalog();
        let callable = self.callable(&catalog);
        let names: std::collections::HashMap<usize, &str> =
            callable.iter().map(|(n, p)| (*p, n.as_str())).collect();
        let hits: Vec<(String, usize)> = catalog
            .search_index()
            .search(&query, limit, |pos| names.contains_key(&pos))
            .into_iter()
            .filter_map(|(pos, _)| Some((names.get(&pos)?.to_string(), pos)))
            .collect();
        tracing::debug!(
            session = self.link.id,
            query,
            hits = hits.len(),
            "search_tools"
        );
        self.tool_result(id, &meta_tools::search_result(&catalog, &hits));
    }

    /// `call_tool {name, arguments}`: the named tool is called as if the
    /// client had sent `tools/call` for it with this request's id, `_meta`
    /// (progress token) and task request.
    fn call_tool(&self, id: &RawValue, outer: &RawObject<'_>, arguments: Option<&RawObject<'_>>) {
        let (name, args) = match meta_tools::call_args(arguments) {
            Ok(c) => c,
            Err(e) => return self.tool_result(id, &meta_tools::tool_result(&e, None, true)),
        };
        let catalog = self.hub.supervisor.catalog();
        let found = match self.lookup(&catalog, ListKind::Tools, &name) {
            Lookup::Key(key) => catalog.get(ListKind::Tools, &key),
            Lookup::Held { server, tool } => {
                let text = meta_tools::held_message(&server, &tool);
                return self.tool_result(id, &meta_tools::tool_result(&text, None, true));
            }
            Lookup::Missing => None,
        };
        let Some(item) = found.filter(|t| self.visible(&t.server)) else {
            let callable = self.callable(&catalog);
            let result = meta_tools::unknown_tool(&name, callable.iter().map(|(n, _)| n.as_str()));
            return self.tool_result(id, &result);
        };
        if &*item.server == crate::builtin::SERVER {
            return self.builtin_tool(id, &item.original);
        }
        let mut quoted = String::new();
        jsonrpc::push_json_str(&mut quoted, &name);
        let mut members: Vec<(&str, String)> = vec![("name", quoted), ("arguments", args)];
        for key in ["_meta", "task"] {
            if let Some(v) = outer.get(key) {
                members.push((key, v.get().to_string()));
            }
        }
        let mut params = String::from("{");
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                params.push(',');
            }
            jsonrpc::push_json_str(&mut params, k);
            params.push(':');
            params.push_str(v);
        }
        params.push('}');
        let Some(inner) = RawObject::parse_str(&params) else {
            return self.tool_result(
                id,
                &meta_tools::tool_result("the call could not be built", None, true),
            );
        };
        let target = super::route::named_target(ListKind::Tools, item, &inner);
        self.dispatch("tools/call", id, target);
    }
}
