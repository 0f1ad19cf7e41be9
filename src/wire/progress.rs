//! Progress tokens across a shared child.
//!
//! Two clients may use the same progress token, so a client's token never
//! reaches the child: a request that carries `params._meta.progressToken` is
//! forwarded with a token unique on its connection (`sp-<upstream id>`), and
//! each `notifications/progress` the child sends goes to the one session
//! that asked, with that session's own token restored, pushing the request's
//! deadline back. Progress for a request that is finished, cancelled or
//! timed out is dropped, unless it belongs to a task still running.

use std::time::Instant;

use serde_json::value::RawValue;

use super::connection::{Connection, Pending};
use crate::jsonrpc::{self, RawObject};

impl Connection {
    /// Routes progress to the one client that asked for it, with its own
    /// token, and pushes that request's deadline back.
    pub(super) fn on_progress(&self, params: &RawObject<'_>) {
        let Some(id) = params
            .get_str("progressToken")
            .and_then(|t| t.strip_prefix("sp-").and_then(|n| n.parse::<u64>().ok()))
        else {
            tracing::debug!(server = %self.server(), "dropping progress with a token stdioproxy did not issue");
            return;
        };
        let delivery = {
            let mut pending = self.lock();
            match pending.get_mut(&id) {
                Some(Pending::Client(req)) => req.progress_token.as_ref().map(|token| {
                    req.deadline = Instant::now() + self.request_timeout();
                    (req.link.clone(), token.get().to_string())
                }),
                // Late progress for a finished, cancelled or timed-out
                // request, unless it belongs to a task still running.
                _ => None,
            }
        };
        let Some((link, token)) = delivery.or_else(|| self.routes().task_progress(id)) else {
            return;
        };
        let rewritten = params.to_string_with(&[("progressToken", &token)]);
        link.outbox.send(jsonrpc::notification(
            "notifications/progress",
            Some(&rewritten),
        ));
    }
}

/// The token a child sees for the progress of upstream request `id`.
pub(super) fn progress_token_for(id: u64) -> String {
    format!("sp-{id}")
}

/// Replaces `params._meta.progressToken` with `token`; returns the new params
/// and the client's original token (raw), or the params unchanged.
pub(super) fn rewrite_progress_token(params: &str, token: &str) -> (String, Option<Box<RawValue>>) {
    let unchanged = || (params.to_string(), None);
    let Ok(raw) = serde_json::from_str::<&RawValue>(params) else {
        return unchanged();
    };
    let Some(obj) = RawObject::parse(raw) else {
        return unchanged();
    };
    let Some(meta) = obj.get("_meta").and_then(RawObject::parse) else {
        return unchanged();
    };
    let Some(original) = meta.get("progressToken") else {
        return unchanged();
    };
    let mut quoted = String::new();
    jsonrpc::push_json_str(&mut quoted, token);
    let new_meta = meta.to_string_with(&[("progressToken", &quoted)]);
    (
        obj.to_string_with(&[("_meta", &new_meta)]),
        Some(original.to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_tokens_are_replaced_and_remembered() {
        let p = r#"{"name":"x","_meta":{"progressToken":1,"other":true},"arguments":{}}"#;
        let (out, tok) = rewrite_progress_token(p, "sp-9");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["_meta"]["progressToken"], "sp-9");
        assert_eq!(v["_meta"]["other"], true);
        assert_eq!(tok.unwrap().get(), "1");
        let (out, tok) = rewrite_progress_token(r#"{"progressToken":1}"#, "sp-1");
        assert_eq!(out, r#"{"progressToken":1}"#);
        assert!(tok.is_none());
    }
}
