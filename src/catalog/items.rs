//! What one server contributes to the catalog: its lists as it gave them
//! ([`Lists`] of [`RawItem`]s, raw JSON), and the same items rendered as
//! clients see them ([`Rendered`]: tools and prompts renamed
//! `<server>__<name>`, resources and templates keeping their URIs with a
//! prefixed `name`, tools the server's filter hides left out).
//!
//! Rendering happens once per change of a server's lists or tool filter;
//! a catalog rebuild only merges renderings.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::UriTemplate;
use crate::config::ToolFilter;
use crate::jsonrpc::RawObject;
use crate::names::{exposed_name, fnv1a64, SEPARATOR};

/// The lists a server can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListKind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    Templates,
}

impl ListKind {
    /// Every kind, in catalog order.
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The array member of the list result.
    pub fn result_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The server capability that announces this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    /// The notification that tells clients this list changed (templates
    /// share resources' notification).
    pub fn changed_notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
        }
    }

    /// Position in [`ListKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub(super) fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }
}

/// One item as a server listed it, kept as raw JSON: every byte of it that
/// the daemon does not rewrite reaches clients as the server wrote it (even
/// numbers no `f64` holds, such as `1e999`, which are valid JSON).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawItem(pub Box<RawValue>);

impl RawItem {
    /// A string member of the item, if it is an object that has one.
    pub fn member_str(&self, key: &str) -> Option<String> {
        RawObject::parse(&self.0)?.get_str(key)
    }

    /// An item from a JSON value (tests, the daemon's own tools).
    pub fn from_value(v: &Value) -> Self {
        Self(RawValue::from_string(v.to_string()).unwrap_or_else(|_| {
            RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!())
        }))
    }
}

impl PartialEq for RawItem {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl std::fmt::Debug for RawItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.get())
    }
}

/// What a server lists, as it listed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lists {
    /// `tools`.
    pub tools: Vec<RawItem>,
    /// `prompts`.
    pub prompts: Vec<RawItem>,
    /// `resources`.
    pub resources: Vec<RawItem>,
    /// `resourceTemplates`.
    pub resource_templates: Vec<RawItem>,
}

impl Lists {
    /// One kind's items.
    pub fn get(&self, kind: ListKind) -> &[RawItem] {
        match kind {
            ListKind::Tools => &self.tools,
            ListKind::Prompts => &self.prompts,
            ListKind::Resources => &self.resources,
            ListKind::Templates => &self.resource_templates,
        }
    }

    /// One kind's items, to replace.
    pub fn get_mut(&mut self, kind: ListKind) -> &mut Vec<RawItem> {
        match kind {
            ListKind::Tools => &mut self.tools,
            ListKind::Prompts => &mut self.prompts,
            ListKind::Resources => &mut self.resources,
            ListKind::Templates => &mut self.resource_templates,
        }
    }
}

/// One exposed item.
#[derive(Debug)]
pub struct Item {
    /// The key clients use: the exposed name (tools, prompts), the URI
    /// (resources) or the URI template (templates).
    pub key: String,
    /// Server that owns it.
    pub server: Arc<str>,
    /// The item's name as the server knows it.
    pub original: String,
    /// The item as clients see it, compact JSON.
    pub json: String,
}

/// One server's items as clients see them, rendered once per change of the
/// server's lists (or of its tool filter), so that a catalog rebuild only
/// merges servers and never re-renders an item.
#[derive(Debug)]
pub struct Rendered {
    /// The server.
    pub server: Arc<str>,
    pub(super) items: [Vec<Item>; 4],
    /// Parsed templates, parallel to the templates' items.
    pub(super) matchers: Vec<Option<UriTemplate>>,
    pub(super) fingerprints: [u64; 4],
    /// Tools left out because their definition is held (pinning), by the
    /// server's own name.
    pub(super) held: Vec<String>,
}

impl Rendered {
    /// Renders `lists` of `server`. Items without the member that identifies
    /// them (`name`, `uri`, `uriTemplate`), tools the filter hides, and
    /// duplicates of a key are left out (duplicates with a warning).
    pub fn new(server: Arc<str>, lists: &Lists, tool_filter: &ToolFilter) -> Self {
        Self::with_held(server, lists, tool_filter, &Default::default())
    }

    /// [`Rendered::new`] leaving out the tools named in `held` too (their
    /// definition changed since it was pinned); they count in the tools'
    /// fingerprint, so holding or releasing one announces a change.
    pub fn with_held(
        server: Arc<str>,
        lists: &Lists,
        tool_filter: &ToolFilter,
        held: &std::collections::HashSet<String>,
    ) -> Self {
        let mut r = Rendered {
            server,
            items: Default::default(),
            matchers: Vec::new(),
            fingerprints: [0; 4],
            held: Vec::new(),
        };
        for kind in ListKind::ALL {
            let mut seen = std::collections::HashSet::new();
            let mut fp_text = String::new();
            for raw in lists.get(kind) {
                if kind == ListKind::Tools && !tool_filter.is_open() {
                    let name = raw.member_str("name");
                    if name.is_some_and(|n| !tool_filter.allows(&n)) {
                        continue;
                    }
                }
                let Some(item) = render(kind, &r.server, raw) else {
                    continue;
                };
                if kind == ListKind::Tools && held.contains(&item.original) {
                    fp_text.push_str("held:");
                    fp_text.push_str(&item.key);
                    fp_text.push('\n');
                    r.held.push(item.original);
                    continue;
                }
                if !seen.insert(item.key.clone()) {
                    tracing::warn!(server = %r.server, list = kind.method(), key = %item.key,
                        "skipping an item the server listed twice");
                    continue;
                }
                fp_text.push_str(&item.json);
                fp_text.push('\n');
                if kind == ListKind::Templates {
                    r.matchers.push(UriTemplate::parse(&item.key));
                }
                r.items[kind.index()].push(item);
            }
            r.fingerprints[kind.index()] = fnv1a64(fp_text.as_bytes());
        }
        r
    }

    /// An empty rendering (a server that lists nothing yet).
    pub fn empty(server: Arc<str>) -> Self {
        Self::new(server, &Lists::default(), &ToolFilter::default())
    }

    /// Number of items of one kind.
    pub fn len(&self, kind: ListKind) -> usize {
        self.items[kind.index()].len()
    }

    /// Tools held back (pinning), by the server's own name.
    pub fn held(&self) -> &[String] {
        &self.held
    }
}

/// One item as clients see it: `name` rewritten in place, every other
/// member copied byte for byte.
fn render(kind: ListKind, server: &Arc<str>, raw: &RawItem) -> Option<Item> {
    let id_member = match kind {
        ListKind::Tools | ListKind::Prompts => "name",
        ListKind::Resources => "uri",
        ListKind::Templates => "uriTemplate",
    };
    let obj = RawObject::parse(&raw.0);
    let Some((obj, id)) = obj.and_then(|o| o.get_str(id_member).map(|id| (o, id))) else {
        tracing::warn!(server = %server, list = kind.method(),
            "skipping an item that is not an object with a string {id_member}");
        return None;
    };
    let (key, original) = match kind {
        ListKind::Tools | ListKind::Prompts => (exposed_name(server, &id), id),
        _ => (id, obj.get_str("name").unwrap_or_default()),
    };
    let mut name = String::new();
    crate::jsonrpc::push_json_str(
        &mut name,
        &match kind {
            ListKind::Tools | ListKind::Prompts => key.clone(),
            _ => format!("{server}{SEPARATOR}{original}"),
        },
    );
    let json = match kind {
        ListKind::Tools | ListKind::Prompts if key != plain_name(server, &original) => {
            with_original_name(&obj, &name, &plain_name(server, &original))
        }
        _ => obj.to_string_with(&[("name", &name)]),
    };
    Some(Item {
        key,
        server: server.clone(),
        original,
        json,
    })
}

/// The key this item keeps the original name under in `_meta`.
pub const ORIGINAL_NAME_META: &str = "stdioproxy/originalName";

/// `<server>__<name>` as written, before any shortening.
fn plain_name(server: &str, original: &str) -> String {
    format!("{server}{SEPARATOR}{original}")
}

/// A tool or prompt whose exposed name had to be shortened (or sanitised)
/// keeps its original `<server>__<name>`: always in
/// `_meta["stdioproxy/originalName"]` (added to the server's `_meta`, or a
/// new one), and as its `title` when the server gave none, so a person
/// picking tools still sees what it is.
fn with_original_name(obj: &RawObject<'_>, name: &str, plain: &str) -> String {
    let mut original = String::new();
    crate::jsonrpc::push_json_str(&mut original, plain);
    let meta = match obj.get("_meta") {
        None => Some(format!("{{{}:{original}}}", json_key(ORIGINAL_NAME_META))),
        Some(raw) => {
            RawObject::parse(raw).map(|m| m.to_string_with(&[(ORIGINAL_NAME_META, &original)]))
        }
    };
    let mut replace: Vec<(&str, &str)> = vec![("name", name)];
    if obj.get("title").is_none() {
        replace.push(("title", &original));
    }
    if let Some(meta) = &meta {
        replace.push(("_meta", meta));
    }
    obj.to_string_with(&replace)
}

fn json_key(k: &str) -> String {
    let mut out = String::new();
    crate::jsonrpc::push_json_str(&mut out, k);
    out
}

impl Item {
    /// True when the exposed name is not simply `<server>__<original>`.
    pub fn is_shortened(&self) -> bool {
        self.key != plain_name(&self.server, &self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(server: &str, tools: Vec<Value>) -> Vec<Value> {
        let lists = Lists {
            tools: tools.iter().map(RawItem::from_value).collect(),
            ..Lists::default()
        };
        let r = Rendered::new(server.into(), &lists, &ToolFilter::default());
        r.items[ListKind::Tools.index()]
            .iter()
            .map(|i| serde_json::from_str(&i.json).expect("json"))
            .collect()
    }

    #[test]
    fn shortened_names_keep_the_original_in_title_and_meta() {
        let server = "twenty_char_server_x";
        let long = "tool_name_of_forty_seven_characters_long_enough";
        let original = format!("{server}__{long}");
        let tools = rendered(
            server,
            vec![
                json!({"name": long, "inputSchema": {}}),
                json!({"name": format!("{long}2"), "title": "Own title", "_meta": {"x": 1}, "inputSchema": {}}),
                json!({"name": "short", "inputSchema": {}}),
                json!({"name": "has space", "inputSchema": {}}),
            ],
        );
        let [a, b, plain, spaced] = &tools[..] else {
            panic!("{tools:?}")
        };
        assert!(a["name"]
            .as_str()
            .is_some_and(|n| n.len() <= 64 && n != original));
        assert_eq!(a["title"], original.as_str());
        assert_eq!(a["_meta"][ORIGINAL_NAME_META], original.as_str());
        // The server's own title and _meta members stay.
        assert_eq!(b["title"], "Own title");
        assert_eq!(b["_meta"]["x"], 1);
        assert_eq!(b["_meta"][ORIGINAL_NAME_META], format!("{original}2"));
        // A name that fits is not touched.
        assert_eq!(
            plain,
            &json!({"name": format!("{server}__short"), "inputSchema": {}})
        );
        // Sanitised names count as shortened too.
        assert_eq!(
            spaced["_meta"][ORIGINAL_NAME_META],
            format!("{server}__has space")
        );
    }
}
