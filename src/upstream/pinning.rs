//! A server's side of tool pinning (`pin_tools`, see [`crate::pins`]):
//! which of its tools are held each time its lists are rendered, the
//! warning when a tool becomes held, and approving held tools.
//!
//! Held tools are left out of the server's rendering, so they are gone from
//! every session's `tools/list` and from search at once; the catalog keeps
//! their names so a call to one is refused with the reason, and approving
//! re-renders, which changes the tools' fingerprint and tells clients
//! `list_changed`.

use std::collections::HashSet;

use crate::catalog::Lists;
use crate::pins::{Definition, Held};

use super::Upstream;

impl Upstream {
    /// The tools of `lists` this server offers that the filter shows, as
    /// (name, definition).
    fn pinnable(&self, lists: &Lists) -> Vec<(String, Definition)> {
        let filter = self.spec().tools.clone();
        lists
            .tools
            .iter()
            .filter_map(|raw| {
                let name = raw.member_str("name")?;
                filter
                    .allows(&name)
                    .then(|| (name, Definition::of_text(raw.0.get())))
            })
            .collect()
    }

    /// Checks `lists` against the pin store when pinning is on; returns the
    /// names of the held tools (and remembers them for `tools pending`).
    pub(super) fn pin_check(&self, lists: &Lists) -> HashSet<String> {
        if !self.timeouts().pin_tools || !self.lock().listed {
            self.lock().held.clear();
            return HashSet::new();
        }
        let tools = self.pinnable(lists);
        let held = self.shared.pins.lock().check(&self.name, &tools);
        let mut inner = self.lock();
        for h in &held {
            let before = inner.held.iter().find(|o| o.tool == h.tool);
            if before.is_some_and(|b| b.new == h.new) {
                continue;
            }
            tracing::warn!(server = %self.name, tool = %h.tool, diff = %h.diff,
                "tool held: its definition is not the pinned one; review with `stdioproxy tools pending`, trust with `stdioproxy tools approve {}`",
                self.name);
        }
        let names = held.iter().map(|h| h.tool.clone()).collect();
        inner.held = held;
        names
    }

    /// The tools held now.
    pub fn held(&self) -> Vec<Held> {
        self.lock().held.clone()
    }

    /// Trusts what the server offers now for its held tools (only `tool`,
    /// when given) and renders it again; the caller rebuilds the catalog.
    pub fn approve(&self, tool: Option<&str>) -> Result<Vec<String>, String> {
        let held: HashSet<String> = self.held().into_iter().map(|h| h.tool).collect();
        if let Some(t) = tool {
            if !held.contains(t) {
                return Err(format!(
                    "tool {t:?} of server {:?} is not held",
                    &*self.name
                ));
            }
        }
        let offered: Vec<(String, Definition)> = self
            .pinnable(&self.lists())
            .into_iter()
            .filter(|(name, _)| held.contains(name))
            .collect();
        let approved = self
            .shared
            .pins
            .lock()
            .approve(&self.name, &offered, tool)?;
        if !approved.is_empty() {
            tracing::info!(server = %self.name, tools = ?approved, "approved held tool definitions");
            self.render(&self.lists());
        }
        Ok(approved)
    }
}
