//! What one session sees of the catalog when its shim asked for names other
//! than the catalog's (`--server NAME`, `--name-max N`).
//!
//! The catalog renders every item once, for every session, with the
//! `<server>__<name>` names. A single-server session (`--server`) sees the
//! child's own names instead, as if its client ran the server directly; a
//! session with a name budget (`--name-max`) sees every tool and prompt
//! name shortened to fit (see [`names::fit_names`]). A [`View`] holds, for
//! one catalog generation, the names of the session's tools and prompts
//! both ways and the items re-rendered with them; the session builds it
//! when the catalog changes and routes every name through it.
//!
//! Held tools (pinning) take part in fitting without being listed, so a
//! tool keeps its fitted name while held, and a call to it gets the "held"
//! error rather than "unknown".
//!
//! [`names::fit_names`]: crate::names::fit_names

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::{Catalog, CursorError, Item, ListKind, Page};
use crate::jsonrpc::{self, RawObject};
use crate::names::{self, SEPARATOR};

/// The naming a session asked for in its hello.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Exactly this server, with the child's own names.
    pub server: Option<String>,
    /// Every tool and prompt name at most this long.
    pub name_max: Option<usize>,
}

impl Naming {
    /// True when the catalog's own names will do.
    pub fn is_plain(&self) -> bool {
        self.server.is_none() && self.name_max.is_none()
    }
}

/// Where a name a client used leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// This catalog key.
    Key(&'a str),
    /// A held tool of this server (its own name for it).
    Held { server: Arc<str>, tool: String },
    /// Nothing of that name.
    Unknown,
}

/// One kind's names in a view.
#[derive(Debug, Default)]
struct Names {
    /// Session name -> catalog key (or, for held tools, `None`).
    by_name: HashMap<String, Slot>,
    /// Catalog key -> session name.
    by_key: HashMap<String, String>,
}

#[derive(Debug)]
enum Slot {
    Key(String),
    Held(Arc<str>, String),
}

/// A session's names for one catalog generation.
#[derive(Debug)]
pub struct View {
    /// The catalog generation it was built from.
    pub generation: u64,
    names: [Names; 2],
    /// Per kind, the visible items' JSON with the session's names.
    rendered: [Vec<String>; 4],
}

fn name_kind(kind: ListKind) -> Option<usize> {
    match kind {
        ListKind::Tools => Some(0),
        ListKind::Prompts => Some(1),
        _ => None,
    }
}

impl View {
    /// The view of `catalog` for `naming`, among servers `visible` accepts.
    pub fn build(catalog: &Catalog, naming: &Naming, visible: impl Fn(&str) -> bool) -> Self {
        let mut view = View {
            generation: catalog.generation,
            names: Default::default(),
            rendered: Default::default(),
        };
        for kind in ListKind::ALL {
            let items: Vec<&Item> = catalog.items(kind).filter(|i| visible(&i.server)).collect();
            let Some(k) = name_kind(kind) else {
                view.rendered[kind.index()] = items
                    .iter()
                    .map(|i| match naming.server {
                        // The resource's own name, not `<server>__<name>`.
                        Some(_) => with_name(&i.json, &i.original),
                        None => i.json.clone(),
                    })
                    .collect();
                continue;
            };
            let held: Vec<(Arc<str>, String, String)> = if kind == ListKind::Tools {
                catalog
                    .held_tools()
                    .filter(|(server, _)| visible(server))
                    .map(|(server, tool)| {
                        (
                            server.clone(),
                            tool.to_string(),
                            names::exposed_name(server, tool),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
            // The names before fitting: the child's own, or the catalog's.
            let base = |key: &str, original: &str| -> String {
                match naming.server {
                    Some(_) => original.to_string(),
                    None => key.to_string(),
                }
            };
            let mut wanted: Vec<String> = items.iter().map(|i| base(&i.key, &i.original)).collect();
            wanted.extend(held.iter().map(|(_, t, key)| base(key, t)));
            let fitted = match naming.name_max {
                Some(max) => {
                    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
                    names::fit_names(&refs, max)
                }
                None => wanted,
            };
            let names = &mut view.names[k];
            for (item, name) in items.iter().zip(&fitted) {
                names.by_key.insert(item.key.clone(), name.clone());
                names
                    .by_name
                    .insert(name.clone(), Slot::Key(item.key.clone()));
                view.rendered[kind.index()].push(with_name(&item.json, name));
            }
            for ((server, tool, _), name) in held.into_iter().zip(&fitted[items.len()..]) {
                names
                    .by_name
                    .entry(name.clone())
                    .or_insert(Slot::Held(server, tool));
            }
        }
        view
    }

    /// Where a name the client used leads.
    pub fn resolve(&self, kind: ListKind, name: &str) -> Resolved<'_> {
        let Some(k) = name_kind(kind) else {
            return Resolved::Unknown;
        };
        match self.names[k].by_name.get(name) {
            Some(Slot::Key(key)) => Resolved::Key(key),
            Some(Slot::Held(server, tool)) => Resolved::Held {
                server: server.clone(),
                tool: tool.clone(),
            },
            None => Resolved::Unknown,
        }
    }

    /// The session's name for a catalog key.
    pub fn name_of(&self, kind: ListKind, key: &str) -> Option<&str> {
        self.names[name_kind(kind)?]
            .by_key
            .get(key)
            .map(String::as_str)
    }

    /// Every name the session sees of one kind (for "did you mean").
    pub fn names(&self, kind: ListKind) -> impl Iterator<Item = &str> {
        name_kind(kind)
            .into_iter()
            .flat_map(move |k| self.names[k].by_key.values().map(String::as_str))
    }

    /// One page of `kind`, with cursors like the catalog's.
    pub fn page(
        &self,
        kind: ListKind,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<Page, CursorError> {
        let offset = match cursor {
            None => 0,
            Some(c) => crate::catalog::decode_cursor(self.generation, kind, c)?,
        };
        let items = &self.rendered[kind.index()];
        let end = (offset + page_size.max(1)).min(items.len());
        let mut text = String::from("[");
        for (i, json) in items.iter().enumerate().take(end).skip(offset) {
            if i > offset {
                text.push(',');
            }
            text.push_str(json);
        }
        text.push(']');
        Ok(Page {
            items: text,
            next_cursor: (end < items.len())
                .then(|| crate::catalog::encode_cursor(self.generation, kind, end)),
        })
    }
}

/// An item's JSON with its `name` member set to `name`.
fn with_name(json: &str, name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    jsonrpc::push_json_str(&mut quoted, name);
    match RawObject::parse_str(json) {
        Some(obj) => obj.to_string_with(&[("name", &quoted)]),
        None => json.to_string(),
    }
}

/// The server part of a catalog name (`alpha` of `alpha__echo`).
pub fn server_of(key: &str) -> Option<&str> {
    key.split_once(SEPARATOR).map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Lists, RawItem, Rendered};
    use crate::config::ToolFilter;
    use serde_json::{json, Value};

    fn catalog(held: &[&str]) -> Catalog {
        let raw = |v: Vec<Value>| v.iter().map(RawItem::from_value).collect::<Vec<_>>();
        let a = Lists {
            tools: raw(vec![
                json!({"name":"echo","inputSchema":{}}),
                json!({"name":"a_very_long_tool_name_indeed","inputSchema":{}}),
                json!({"name":"changed","inputSchema":{}}),
            ]),
            prompts: raw(vec![json!({"name":"greet"})]),
            resources: raw(vec![json!({"uri":"a://x","name":"x"})]),
            ..Lists::default()
        };
        let b = Lists {
            tools: raw(vec![json!({"name":"echo","inputSchema":{}})]),
            ..Lists::default()
        };
        let held = held.iter().map(|s| s.to_string()).collect();
        let open = ToolFilter::default();
        Catalog::build(
            3,
            [
                Arc::new(Rendered::with_held("alpha".into(), &a, &open, &held)),
                Arc::new(Rendered::new("beta".into(), &b, &open)),
            ],
        )
    }

    fn listed(view: &View, kind: ListKind) -> Vec<Value> {
        serde_json::from_str(&view.page(kind, None, 100).unwrap().items).unwrap()
    }

    #[test]
    fn a_single_server_sees_its_own_names() {
        let c = catalog(&[]);
        let naming = Naming {
            server: Some("alpha".into()),
            name_max: None,
        };
        let v = View::build(&c, &naming, |s| s == "alpha");
        let tools: Vec<Value> = listed(&v, ListKind::Tools);
        assert_eq!(tools[0]["name"], "echo");
        assert_eq!(tools.len(), 3);
        assert_eq!(
            v.resolve(ListKind::Tools, "echo"),
            Resolved::Key("alpha__echo")
        );
        assert_eq!(v.resolve(ListKind::Tools, "beta__echo"), Resolved::Unknown);
        assert_eq!(
            v.resolve(ListKind::Prompts, "greet"),
            Resolved::Key("alpha__greet")
        );
        assert_eq!(listed(&v, ListKind::Resources)[0]["name"], "x");
        assert_eq!(v.name_of(ListKind::Tools, "alpha__echo"), Some("echo"));
    }

    #[test]
    fn budgets_fit_every_name_and_held_tools_keep_theirs() {
        let c = catalog(&["changed"]);
        let naming = Naming {
            server: None,
            name_max: Some(16),
        };
        let v = View::build(&c, &naming, |_| true);
        let tools = listed(&v, ListKind::Tools);
        assert_eq!(tools.len(), 3, "held tool not listed: {tools:?}");
        for t in &tools {
            let n = t["name"].as_str().unwrap();
            assert!(n.len() <= 16, "{n}");
            assert!(matches!(v.resolve(ListKind::Tools, n), Resolved::Key(_)));
        }
        assert_eq!(tools[0]["name"], "alpha__echo");
        let held = names::fit_names(
            &[
                "alpha__echo",
                "alpha__a_very_long_tool_name_indeed",
                "beta__echo",
                "alpha__changed",
            ],
            16,
        );
        assert_eq!(
            v.resolve(ListKind::Tools, &held[3]),
            Resolved::Held {
                server: "alpha".into(),
                tool: "changed".into()
            }
        );
        // Resources keep their catalog names in an aggregated view.
        assert_eq!(listed(&v, ListKind::Resources)[0]["name"], "alpha__x");
    }

    #[test]
    fn pages_carry_cursors_of_the_generation() {
        let c = catalog(&[]);
        let v = View::build(
            &c,
            &Naming {
                server: None,
                name_max: Some(64),
            },
            |_| true,
        );
        let p = v.page(ListKind::Tools, None, 2).unwrap();
        let cursor = p.next_cursor.unwrap();
        let rest = v.page(ListKind::Tools, Some(&cursor), 2).unwrap();
        let items: Vec<Value> = serde_json::from_str(&rest.items).unwrap();
        assert_eq!(items.len(), 2);
        assert!(rest.next_cursor.is_none());
        assert_eq!(
            v.page(ListKind::Tools, Some("g1k0o2"), 2).err(),
            Some(CursorError::Stale)
        );
        assert_eq!(
            v.page(ListKind::Prompts, Some(&cursor), 2).err(),
            Some(CursorError::Invalid)
        );
    }
}
