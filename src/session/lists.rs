//! The four lists (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) served from the catalog snapshot, paginated
//! with opaque cursors, and the `list_changed` notifications that tell a
//! client its view changed.
//!
//! A list is a concatenation of pre-rendered items: nothing is parsed or
//! serialised per request. A cursor names the catalog generation it was
//! minted for; after a change it is refused with -32602, and the client
//! (which got a `list_changed` anyway) lists again from the start.

use serde_json::value::RawValue;

use super::{Session, ANNOUNCED};
use crate::catalog::{Catalog, CursorError, ListKind};
use crate::jsonrpc::{self, code, RawObject};

impl Session {
    pub(super) fn list(&mut self, kind: ListKind, id: &RawValue, params: Option<&RawValue>) {
        let cursor = params
            .and_then(RawObject::parse)
            .and_then(|p| p.get_str("cursor"));
        let catalog = self.hub.supervisor.catalog();
        let page_size = self.hub.settings.get().page_size;
        match self.page(&catalog, kind, cursor.as_deref(), page_size) {
            Ok(page) => {
                let key = kind.result_key();
                let mut result = String::with_capacity(page.items.len() + 64);
                result.push_str("{\"");
                result.push_str(key);
                result.push_str("\":");
                result.push_str(&page.items);
                if let Some(next) = page.next_cursor {
                    result.push_str(",\"nextCursor\":");
                    jsonrpc::push_json_str(&mut result, &next);
                }
                result.push('}');
                if cursor.is_none() {
                    // The client now knows this view: no list_changed for it.
                    if let Some(i) = ANNOUNCED.iter().position(|g| g.contains(&kind)) {
                        self.announced[i] =
                            Some(catalog.view_fingerprint(ANNOUNCED[i], |s| self.visible(s)));
                    }
                }
                self.send(
                    self.link
                        .era
                        .cacheable_line(id.get(), &result, self.list_hint(kind)),
                );
            }
            Err(CursorError::Stale) => self.error(
                Some(id),
                code::INVALID_PARAMS,
                "Invalid cursor: the list changed since it was issued; list again from the start",
                None,
            ),
            Err(CursorError::Invalid) => {
                self.error(Some(id), code::INVALID_PARAMS, "Invalid cursor", None)
            }
        }
    }

    /// Sends one `list_changed` per group whose visible items changed since
    /// the client last listed (or was told).
    pub(super) fn maybe_announce(&mut self, catalog: &Catalog) {
        let modern = self.link.era.is_modern();
        if !self.link.is_initialized() && !modern {
            return;
        }
        for (i, kinds) in ANNOUNCED.iter().enumerate() {
            if self.held.is_some() && kinds.contains(&ListKind::Tools) {
                // The held first tools/list will show the current view.
                continue;
            }
            let fp = catalog.view_fingerprint(kinds, |s| self.visible(s));
            if self.announced[i] != Some(fp) {
                self.announced[i] = Some(fp);
                let method = kinds[0].changed_notification();
                tracing::debug!(session = self.link.id, method, "announcing a list change");
                if modern {
                    // Only to the listens that asked, each tagged.
                    for line in self.link.era.listens.list_changed(kinds[0]) {
                        self.send(line);
                    }
                } else {
                    self.send(jsonrpc::notification(method, None));
                }
            }
        }
    }
}
