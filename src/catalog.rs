//! The catalog: an immutable, versioned snapshot of everything clients see.
//!
//! Each tool a child lists is exposed as `<server>__<tool>` (see [`names`]),
//! with every other field of the tool passed through verbatim. The tool's JSON
//! is rendered once, when the catalog is built, so serving `tools/list` is a
//! concatenation of pre-rendered strings. A new catalog is built whenever a
//! server's list changes and swapped in whole (via a `watch` channel), so a
//! client never sees half an update.
//!
//! [`names`]: crate::names

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use crate::names::{exposed_name, fnv1a64};

/// One exposed tool.
#[derive(Debug)]
pub struct CatalogTool {
    /// Name clients see.
    pub exposed: String,
    /// Server that owns it.
    pub server: Arc<str>,
    /// Name the server knows it by.
    pub original: String,
    /// The tool object with `name` replaced, as compact JSON.
    pub json: String,
}

/// A snapshot of all exposed tools.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Increases with every rebuild; part of pagination cursors.
    pub generation: u64,
    tools: Vec<CatalogTool>,
    index: HashMap<String, usize>,
    /// Fingerprint of each server's exposed tools, to tell a session whether
    /// its visible set changed.
    fingerprints: HashMap<Arc<str>, u64>,
}

/// A server's contribution to a catalog build.
pub struct ServerTools<'a> {
    /// Server name.
    pub server: Arc<str>,
    /// The tools as the child listed them.
    pub tools: &'a [Value],
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
    /// Not a cursor this daemon minted.
    Invalid,
    /// Minted for an older catalog; the list changed since.
    Stale,
}

impl Catalog {
    /// Builds a catalog. Tools without a string `name`, and exposed-name
    /// duplicates, are skipped with a warning (the first one wins, by server
    /// name order, then the child's order).
    pub fn build<'a>(generation: u64, servers: impl IntoIterator<Item = ServerTools<'a>>) -> Self {
        let mut cat = Catalog {
            generation,
            ..Default::default()
        };
        for st in servers {
            let mut fp_text = String::new();
            for tool in st.tools {
                let Some(original) = tool.get("name").and_then(Value::as_str) else {
                    tracing::warn!(server = %st.server, "skipping a tool without a string name");
                    continue;
                };
                let exposed = exposed_name(&st.server, original);
                if cat.index.contains_key(&exposed) {
                    tracing::warn!(server = %st.server, tool = original, exposed = %exposed,
                        "skipping a tool whose exposed name is already taken");
                    continue;
                }
                let mut renamed = tool.clone();
                renamed["name"] = Value::String(exposed.clone());
                let json = renamed.to_string();
                fp_text.push_str(&json);
                fp_text.push('\n');
                cat.index.insert(exposed.clone(), cat.tools.len());
                cat.tools.push(CatalogTool {
                    exposed,
                    server: st.server.clone(),
                    original: original.to_string(),
                    json,
                });
            }
            cat.fingerprints
                .insert(st.server.clone(), fnv1a64(fp_text.as_bytes()));
        }
        cat
    }

    /// Looks up an exposed tool name.
    pub fn tool(&self, exposed: &str) -> Option<&CatalogTool> {
        self.index.get(exposed).map(|&i| &self.tools[i])
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// True when there are no tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// All tools, in catalog order.
    pub fn tools(&self) -> &[CatalogTool] {
        &self.tools
    }

    /// Number of tools of one server.
    pub fn tool_count(&self, server: &str) -> usize {
        self.tools.iter().filter(|t| &*t.server == server).count()
    }

    /// A fingerprint of the tools visible through `visible`; two catalogs give
    /// the same value when a session's view did not change.
    pub fn view_fingerprint(&self, visible: impl Fn(&str) -> bool) -> u64 {
        let mut text = String::new();
        let mut servers: Vec<_> = self
            .fingerprints
            .iter()
            .filter(|(s, _)| visible(s))
            .collect();
        servers.sort();
        for (s, fp) in servers {
            let _ = write!(text, "{s}={fp};");
        }
        fnv1a64(text.as_bytes())
    }

    /// One page of the tools visible through `visible`, starting at `cursor`.
    pub fn tools_page(
        &self,
        cursor: Option<&str>,
        page_size: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Page, CursorError> {
        let offset = match cursor {
            None => 0,
            Some(c) => self.decode_cursor(c)?,
        };
        let page_size = page_size.max(1);
        let mut items = String::from("[");
        let mut taken = 0;
        let mut more = false;
        for t in self
            .tools
            .iter()
            .filter(|t| visible(&t.server))
            .skip(offset)
        {
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
            next_cursor: more.then(|| format!("g{}o{}", self.generation, offset + taken)),
        })
    }

    fn decode_cursor(&self, cursor: &str) -> Result<usize, CursorError> {
        let rest = cursor.strip_prefix('g').ok_or(CursorError::Invalid)?;
        let (g, o) = rest.split_once('o').ok_or(CursorError::Invalid)?;
        let generation: u64 = g.parse().map_err(|_| CursorError::Invalid)?;
        let offset: usize = o.parse().map_err(|_| CursorError::Invalid)?;
        if generation != self.generation {
            return Err(CursorError::Stale);
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cat(generation: u64) -> Catalog {
        let a = vec![
            json!({"name":"echo","inputSchema":{"type":"object"},"x-extra":{"kept":true}}),
            json!({"name":"add","inputSchema":{"type":"object"}}),
        ];
        let b = vec![json!({"name":"echo","inputSchema":{}}), json!({"noname":1})];
        Catalog::build(
            generation,
            [
                ServerTools {
                    server: "a".into(),
                    tools: &a,
                },
                ServerTools {
                    server: "b".into(),
                    tools: &b,
                },
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
    }

    #[test]
    fn views_filter_and_fingerprint() {
        let c = cat(1);
        let p = c.tools_page(None, 100, |s| s == "b").unwrap();
        let items: Vec<Value> = serde_json::from_str(&p.items).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(
            c.view_fingerprint(|_| true),
            cat(2).view_fingerprint(|_| true)
        );
        let other = Catalog::build(
            3,
            [ServerTools {
                server: "a".into(),
                tools: &[],
            }],
        );
        assert_ne!(
            c.view_fingerprint(|s| s == "a"),
            other.view_fingerprint(|s| s == "a")
        );
    }
}
