//! The catalog: an immutable, versioned snapshot of everything clients see.
//!
//! Tools and prompts are exposed as `<server>__<name>` (see [`names`]);
//! resources and resource templates keep their URIs and get their `name`
//! prefixed the same way. Every other field of an item passes through
//! verbatim. Each item's JSON is rendered once, when the catalog is built, so
//! serving a list is a concatenation of pre-rendered strings. A new catalog is
//! built whenever a server's lists change and swapped in whole (via a `watch`
//! channel), so a client never sees half an update.
//!
//! The catalog also routes: an exposed tool or prompt name maps back to its
//! server and original name, and a resource URI to the server that listed it
//! (exact match first, then the first server whose template matches).
//!
//! [`names`]: crate::names

mod items;
mod uri_template;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

pub use items::{Item, ListKind, Lists, RawItem, Rendered};
pub use uri_template::UriTemplate;

use crate::names::fnv1a64;

/// Where an item is: (server index, item index).
type Slot = (u32, u32);

/// A snapshot of everything exposed.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Increases with every rebuild; part of pagination cursors.
    pub generation: u64,
    servers: Vec<Arc<Rendered>>,
    /// Per kind, the items clients see, in order (first server wins a key).
    order: [Vec<Slot>; 4],
    index: [HashMap<String, Slot>; 4],
    /// BM25 over the tools, for search-mode sessions (built on first use).
    search: std::sync::OnceLock<crate::tool_search::SearchIndex>,
}

/// A page of a list.
pub struct Page {
    /// The JSON array text of the items.
    pub items: String,
    /// Cursor for the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// Why a cursor was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CursorError {
    /// Not a cursor this daemon minted for this list.
    Invalid,
    /// Minted for an older catalog; the list changed since.
    Stale,
}

impl Catalog {
    /// Merges servers' renderings, in the order given. A key (exposed name,
    /// URI, template) two servers share is exposed once, for the first
    /// server, and the other one is logged.
    pub fn build(generation: u64, servers: impl IntoIterator<Item = Arc<Rendered>>) -> Self {
        let mut cat = Catalog {
            generation,
            servers: servers.into_iter().collect(),
            ..Default::default()
        };
        for (si, r) in cat.servers.iter().enumerate() {
            for kind in ListKind::ALL {
                let k = kind.index();
                for (ii, item) in r.items[k].iter().enumerate() {
                    let slot = (si as u32, ii as u32);
                    match cat.index[k].entry(item.key.clone()) {
                        std::collections::hash_map::Entry::Occupied(taken) => {
                            let owner = &cat.servers[taken.get().0 as usize].server;
                            tracing::warn!(server = %r.server, list = kind.method(), key = %item.key,
                                owner = %owner, "skipping an item whose exposed key another server has");
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(slot);
                            cat.order[k].push(slot);
                        }
                    }
                }
            }
        }
        cat
    }

    fn at(&self, kind: ListKind, (s, i): Slot) -> &Item {
        &self.servers[s as usize].items[kind.index()][i as usize]
    }

    /// Looks up an item by its key.
    pub fn get(&self, kind: ListKind, key: &str) -> Option<&Item> {
        self.index[kind.index()]
            .get(key)
            .map(|&slot| self.at(kind, slot))
    }

    /// Looks up an exposed tool name.
    pub fn tool(&self, exposed: &str) -> Option<&Item> {
        self.get(ListKind::Tools, exposed)
    }

    /// All items of one kind clients see, in catalog order.
    pub fn items(&self, kind: ListKind) -> impl Iterator<Item = &Item> {
        self.order[kind.index()]
            .iter()
            .map(move |&slot| self.at(kind, slot))
    }

    /// The exposed names of `server`'s items of `kind` that are not simply
    /// `<server>__<name>`, with that original (for `status`).
    pub fn shortened(&self, kind: ListKind, server: &str) -> Vec<(String, String)> {
        self.items(kind)
            .filter(|i| &*i.server == server && i.is_shortened())
            .map(|i| {
                (
                    i.key.clone(),
                    format!("{server}{}{}", crate::names::SEPARATOR, i.original),
                )
            })
            .collect()
    }

    /// Number of servers merged (the daemon's own tools count as one).
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.order[ListKind::Tools.index()].len()
    }

    /// True when there are no tools.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of items of one kind a server contributes.
    pub fn count(&self, kind: ListKind, server: &str) -> usize {
        self.items(kind).filter(|t| &*t.server == server).count()
    }

    /// Number of tools of one server.
    pub fn tool_count(&self, server: &str) -> usize {
        self.count(ListKind::Tools, server)
    }

    /// The server that owns `uri`, among servers `visible` accepts: the one
    /// that listed it, else the first whose template matches it.
    pub fn resource_owner(&self, uri: &str, visible: impl Fn(&str) -> bool) -> Option<Arc<str>> {
        if let Some(item) = self.get(ListKind::Resources, uri) {
            if visible(&item.server) {
                return Some(item.server.clone());
            }
        }
        self.order[ListKind::Templates.index()]
            .iter()
            .map(|&(s, i)| (&self.servers[s as usize], i as usize))
            .find(|(r, i)| {
                visible(&r.server) && r.matchers[*i].as_ref().is_some_and(|m| m.matches(uri))
            })
            .map(|(r, _)| r.server.clone())
    }

    /// The server that owns a template (by its exact text), else the owner
    /// of a URI it matches, among visible servers (resource completions).
    pub fn template_owner(
        &self,
        template: &str,
        visible: impl Fn(&str) -> bool,
    ) -> Option<Arc<str>> {
        match self.get(ListKind::Templates, template) {
            Some(item) if visible(&item.server) => Some(item.server.clone()),
            _ => self.resource_owner(template, visible),
        }
    }

    /// A fingerprint of the items of `kinds` visible through `visible`; two
    /// catalogs give the same value when a session's view did not change.
    pub fn view_fingerprint(&self, kinds: &[ListKind], visible: impl Fn(&str) -> bool) -> u64 {
        // A server with no items of these kinds is not part of this view:
        // adding or removing it changes nothing a client would list.
        let mut servers: Vec<&Rendered> = self
            .servers
            .iter()
            .map(|r| &**r)
            .filter(|r| visible(&r.server))
            .filter(|r| kinds.iter().any(|k| !r.items[k.index()].is_empty()))
            .collect();
        servers.sort_by(|a, b| a.server.cmp(&b.server));
        let mut text = String::new();
        for r in servers {
            let _ = write!(text, "{}=", r.server);
            for k in kinds {
                let _ = write!(text, "{:x},", r.fingerprints[k.index()]);
            }
            text.push(';');
        }
        fnv1a64(text.as_bytes())
    }

    /// One page of the items of `kind` visible through `visible`, starting
    /// at `cursor`.
    pub fn page(
        &self,
        kind: ListKind,
        cursor: Option<&str>,
        page_size: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Page, CursorError> {
        let offset = match cursor {
            None => 0,
            Some(c) => self.decode_cursor(kind, c)?,
        };
        let page_size = page_size.max(1);
        let mut items = String::from("[");
        let mut taken = 0;
        let mut more = false;
        for t in self.items(kind).filter(|t| visible(&t.server)).skip(offset) {
            if taken == page_size {
                more = true;
                break;
            }
            if taken > 0 {
                items.push(',');
            }
            items.push_str(&t.json);
            taken += 1;
        }
        items.push(']');
        Ok(Page {
            items,
            next_cursor: more.then(|| encode_cursor(self.generation, kind, offset + taken)),
        })
    }

    /// One page of tools (see [`Catalog::page`]).
    pub fn tools_page(
        &self,
        cursor: Option<&str>,
        page_size: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Page, CursorError> {
        self.page(ListKind::Tools, cursor, page_size, visible)
    }

    fn decode_cursor(&self, kind: ListKind, cursor: &str) -> Result<usize, CursorError> {
        decode_cursor(self.generation, kind, cursor)
    }

    /// Every held tool of every server (pinning): (server, its own name).
    pub fn held_tools(&self) -> impl Iterator<Item = (&Arc<str>, &str)> {
        self.servers
            .iter()
            .flat_map(|r| r.held.iter().map(move |t| (&r.server, t.as_str())))
    }

    /// The held tool clients would call `exposed`, if any: (server, its own
    /// name).
    pub fn held_tool(&self, exposed: &str) -> Option<(&Arc<str>, &str)> {
        self.held_tools()
            .find(|(s, t)| crate::names::exposed_name(s, t) == exposed)
    }

    /// The search index over every tool, in catalog order (built on first
    /// use, once per catalog).
    pub fn search_index(&self) -> &crate::tool_search::SearchIndex {
        self.search.get_or_init(|| {
            crate::tool_search::SearchIndex::build(self.items(ListKind::Tools).map(|item| {
                let def: serde_json::Value =
                    serde_json::from_str(&item.json).unwrap_or(serde_json::Value::Null);
                crate::tool_search::ToolDoc::from_definition(&item.server, &item.original, &def)
            }))
        })
    }

    /// The tool at `position` in catalog order.
    pub fn tool_at(&self, position: usize) -> Option<&Item> {
        let slot = *self.order[ListKind::Tools.index()].get(position)?;
        Some(self.at(ListKind::Tools, slot))
    }
}

/// A page cursor: the catalog generation, the list and the offset.
pub fn encode_cursor(generation: u64, kind: ListKind, offset: usize) -> String {
    format!("g{generation}k{}o{offset}", kind.index())
}

/// The offset of a cursor minted by [`encode_cursor`] for `kind` in
/// catalog `generation`.
pub fn decode_cursor(current: u64, kind: ListKind, cursor: &str) -> Result<usize, CursorError> {
    let rest = cursor.strip_prefix('g').ok_or(CursorError::Invalid)?;
    let (g, rest) = rest.split_once('k').ok_or(CursorError::Invalid)?;
    let (k, o) = rest.split_once('o').ok_or(CursorError::Invalid)?;
    let generation: u64 = g.parse().map_err(|_| CursorError::Invalid)?;
    let cursor_kind = k
        .parse()
        .ok()
        .and_then(ListKind::from_index)
        .ok_or(CursorError::Invalid)?;
    let offset: usize = o.parse().map_err(|_| CursorError::Invalid)?;
    if cursor_kind != kind {
        return Err(CursorError::Invalid);
    }
    if generation != current {
        return Err(CursorError::Stale);
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Glob, ToolFilter};
    use serde_json::json;
    use serde_json::Value;

    fn raw(items: Vec<Value>) -> Vec<RawItem> {
        items.iter().map(RawItem::from_value).collect()
    }

    fn lists_a() -> Lists {
        Lists {
            tools: raw(vec![
                json!({"name":"echo","inputSchema":{"type":"object"},"x-extra":{"kept":true}}),
                json!({"name":"add","inputSchema":{"type":"object"}}),
            ]),
            prompts: raw(vec![json!({"name":"greet","arguments":[{"name":"who"}]})]),
            resources: raw(vec![
                json!({"uri":"file:///a.txt","name":"a","mimeType":"text/plain"}),
            ]),
            resource_templates: raw(vec![json!({"uriTemplate":"mem://{key}","name":"memory"})]),
        }
    }

    fn lists_b() -> Lists {
        Lists {
            tools: raw(vec![
                json!({"name":"echo","inputSchema":{}}),
                json!({"noname":1}),
            ]),
            resources: raw(vec![
                json!({"uri":"file:///a.txt","name":"dup"}),
                json!({"uri":"file:///b.txt","name":"b"}),
            ]),
            resource_templates: raw(vec![json!({"uriTemplate":"{+any}","name":"all"})]),
            ..Lists::default()
        }
    }

    fn cat(generation: u64) -> Catalog {
        let (a, b) = (lists_a(), lists_b());
        let open = ToolFilter::default();
        Catalog::build(
            generation,
            [
                Arc::new(Rendered::new("a".into(), &a, &open)),
                Arc::new(Rendered::new("b".into(), &b, &open)),
            ],
        )
    }

    #[test]
    fn prefixes_and_maps_back() {
        let c = cat(1);
        assert_eq!(c.len(), 3);
        let t = c.tool("b__echo").unwrap();
        assert_eq!((&*t.server, t.original.as_str()), ("b", "echo"));
        let v: Value = serde_json::from_str(&c.tool("a__echo").unwrap().json).unwrap();
        assert_eq!(v["x-extra"], json!({"kept": true}));
        assert!(c.tool("echo").is_none());
        assert_eq!(c.tool_count("a"), 2);
        let p = c.get(ListKind::Prompts, "a__greet").unwrap();
        assert_eq!(p.original, "greet");
        let r: Value =
            serde_json::from_str(&c.get(ListKind::Resources, "file:///a.txt").unwrap().json)
                .unwrap();
        assert_eq!(
            r,
            json!({"uri":"file:///a.txt","name":"a__a","mimeType":"text/plain"})
        );
        assert_eq!(
            c.count(ListKind::Resources, "b"),
            1,
            "duplicate URI skipped"
        );
    }

    #[test]
    fn routes_resources_by_uri_then_template() {
        let c = cat(1);
        let all = |_: &str| true;
        assert_eq!(c.resource_owner("file:///a.txt", all).as_deref(), Some("a"));
        assert_eq!(c.resource_owner("file:///b.txt", all).as_deref(), Some("b"));
        assert_eq!(c.resource_owner("mem://k1", all).as_deref(), Some("a"));
        assert_eq!(c.resource_owner("other://x", all).as_deref(), Some("b"));
        assert_eq!(
            c.resource_owner("mem://k1", |s| s == "b").as_deref(),
            Some("b")
        );
        assert_eq!(c.resource_owner("mem://k1", |_| false), None);
        assert_eq!(c.template_owner("mem://{key}", all).as_deref(), Some("a"));
    }

    #[test]
    fn tool_filters_hide_tools() {
        let a = lists_a();
        let filter = ToolFilter {
            allow: vec![],
            deny: vec![Glob::new("ad*")],
        };
        let c = Catalog::build(1, [Arc::new(Rendered::new("a".into(), &a, &filter))]);
        assert!(c.tool("a__add").is_none());
        assert!(c.tool("a__echo").is_some());
    }

    #[test]
    fn paginates_with_opaque_cursors() {
        let c = cat(4);
        let p1 = c.tools_page(None, 2, |_| true).unwrap();
        let items: Vec<Value> = serde_json::from_str(&p1.items).unwrap();
        assert_eq!(items.len(), 2);
        let cur = p1.next_cursor.unwrap();
        let p2 = c.tools_page(Some(&cur), 2, |_| true).unwrap();
        let items: Vec<Value> = serde_json::from_str(&p2.items).unwrap();
        assert_eq!(items.len(), 1);
        assert!(p2.next_cursor.is_none());
        assert_eq!(
            cat(5).tools_page(Some(&cur), 2, |_| true).err(),
            Some(CursorError::Stale)
        );
        assert_eq!(
            c.tools_page(Some("zz"), 2, |_| true).err(),
            Some(CursorError::Invalid)
        );
        assert_eq!(
            c.page(ListKind::Prompts, Some(&cur), 2, |_| true).err(),
            Some(CursorError::Invalid),
            "a tools cursor is not a prompts cursor"
        );
    }

    #[test]
    fn views_filter_and_fingerprint() {
        let c = cat(1);
        let p = c.tools_page(None, 100, |s| s == "b").unwrap();
        let items: Vec<Value> = serde_json::from_str(&p.items).unwrap();
        assert_eq!(items.len(), 1);
        let tools = [ListKind::Tools];
        assert_eq!(
            c.view_fingerprint(&tools, |_| true),
            cat(2).view_fingerprint(&tools, |_| true)
        );
        let empty = Lists::default();
        let open = ToolFilter::default();
        let other = Catalog::build(3, [Arc::new(Rendered::new("a".into(), &empty, &open))]);
        assert_ne!(
            c.view_fingerprint(&tools, |s| s == "a"),
            other.view_fingerprint(&tools, |s| s == "a")
        );
        let mut fewer = lists_a();
        fewer.prompts.clear();
        let changed = Catalog::build(3, [Arc::new(Rendered::new("a".into(), &fewer, &open))]);
        let only_a = Catalog::build(3, [Arc::new(Rendered::new("a".into(), &lists_a(), &open))]);
        assert_eq!(
            changed.view_fingerprint(&tools, |_| true),
            only_a.view_fingerprint(&tools, |_| true),
            "a prompts change leaves the tools view alone"
        );
        assert_ne!(
            changed.view_fingerprint(&[ListKind::Prompts], |_| true),
            only_a.view_fingerprint(&[ListKind::Prompts], |_| true)
        );
        // A server with no prompts joining changes the tools view only.
        let mut tools_only = lists_a();
        tools_only.prompts.clear();
        tools_only.resources.clear();
        tools_only.resource_templates.clear();
        let with_b = Catalog::build(
            4,
            [
                Arc::new(Rendered::new("a".into(), &lists_a(), &open)),
                Arc::new(Rendered::new("b".into(), &tools_only, &open)),
            ],
        );
        for kinds in [
            &[ListKind::Prompts][..],
            &[ListKind::Resources, ListKind::Templates],
        ] {
            assert_eq!(
                with_b.view_fingerprint(kinds, |_| true),
                only_a.view_fingerprint(kinds, |_| true),
                "{kinds:?}"
            );
        }
        assert_ne!(
            with_b.view_fingerprint(&tools, |_| true),
            only_a.view_fingerprint(&tools, |_| true)
        );
    }
}
