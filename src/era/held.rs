//! Children's requests held for a modern client (the legacy-child half of
//! the MRTR bridge).
//!
//! A legacy child asks "the client" for input (sampling, elicitation,
//! roots) by sending a request while serving a call. A modern client
//! cannot receive requests: the daemon holds the child's request here,
//! answers the client's call with `input_required` embedding it, and waits
//! for the client's retry. Each entry belongs to one session and expires;
//! the retry names the entry through a verified `requestState`
//! ([`super::state`]), and only the owning session can take it. Whatever
//! is never taken (expired, or its session gone) is handed back to the
//! caller, which answers the child with an error.
//!
//! The table is generic over what is held, so its rules are tested here
//! without children.

use std::collections::HashMap;
use std::sync::Mutex;

/// One held entry.
struct Entry<T> {
    session: u64,
    expires_ms: u64,
    value: T,
}

/// Held requests by daemon-minted id.
pub struct HeldTable<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    next: u64,
    entries: HashMap<u64, Entry<T>>,
}

/// Why a retry could not take an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeError {
    /// No such entry: answered already, expired and swept, or never held.
    Gone,
    /// The entry belongs to another session (left in place).
    Foreign,
}

impl<T> Default for HeldTable<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                next: 1,
                entries: HashMap::new(),
            }),
        }
    }
}

impl<T> HeldTable<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `value` for `session` until `expires_ms`; returns its id.
    pub fn hold(&self, session: u64, expires_ms: u64, value: T) -> u64 {
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.entries.insert(
            id,
            Entry {
                session,
                expires_ms,
                value,
            },
        );
        id
    }

    /// Takes entry `id` for `session`; another session's entry stays held.
    pub fn take(&self, id: u64, session: u64) -> Result<T, TakeError> {
        let mut inner = self.lock();
        match inner.entries.get(&id) {
            None => Err(TakeError::Gone),
            Some(e) if e.session != session => Err(TakeError::Foreign),
            Some(_) => inner
                .entries
                .remove(&id)
                .map(|e| e.value)
                .ok_or(TakeError::Gone),
        }
    }

    /// Applies `f` to entry `id` of `session` in place (e.g. to record a
    /// late result), if it is held.
    pub fn with<R>(&self, id: u64, session: u64, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut inner = self.lock();
        inner
            .entries
            .get_mut(&id)
            .filter(|e| e.session == session)
            .map(|e| f(&mut e.value))
    }

    /// Ids of `session`'s entries whose value matches `pred`.
    pub fn find(&self, session: u64, pred: impl Fn(&T) -> bool) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.session == session && pred(&e.value))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Removes and returns every entry expired at `now_ms`.
    pub fn expire(&self, now_ms: u64) -> Vec<(u64, T)> {
        self.remove_where(|e| e.expires_ms <= now_ms)
    }

    /// Removes and returns every entry of `session` (it ended).
    pub fn drain_session(&self, session: u64) -> Vec<(u64, T)> {
        self.remove_where(|e| e.session == session)
    }

    /// Removes and returns the entries of `session` whose value matches
    /// `pred`.
    pub fn drain_session_where(&self, session: u64, pred: impl Fn(&T) -> bool) -> Vec<(u64, T)> {
        self.remove_where(|e| e.session == session && pred(&e.value))
    }

    /// Removes and returns every entry whose value matches `pred` (e.g. all
    /// of a child that stopped).
    pub fn drain_where(&self, pred: impl Fn(&T) -> bool) -> Vec<(u64, T)> {
        self.remove_where(|e| pred(&e.value))
    }

    fn remove_where(&self, pred: impl Fn(&Entry<T>) -> bool) -> Vec<(u64, T)> {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner
            .entries
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(id, _)| *id)
            .collect();
        let mut out: Vec<(u64, T)> = ids
            .into_iter()
            .filter_map(|id| inner.entries.remove(&id).map(|e| (id, e.value)))
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// Number of held entries.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_takes_an_entry_once() {
        let t = HeldTable::default();
        let a = t.hold(1, 100, "a");
        let b = t.hold(2, 100, "b");
        assert_ne!(a, b);
        assert_eq!(t.take(a, 2), Err(TakeError::Foreign));
        assert_eq!(t.take(a, 1), Ok("a"));
        assert_eq!(t.take(a, 1), Err(TakeError::Gone));
        assert_eq!(t.with(b, 1, |v| *v), None, "not the owner");
        assert_eq!(t.with(b, 2, |v| *v), Some("b"));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expiry_and_session_end_hand_entries_back() {
        let t = HeldTable::default();
        let a = t.hold(1, 10, 'a');
        let b = t.hold(1, 20, 'b');
        let c = t.hold(2, 5, 'c');
        assert_eq!(t.expire(9), vec![(c, 'c')]);
        assert_eq!(t.find(1, |_| true), vec![a, b]);
        assert_eq!(t.drain_session(1), vec![(a, 'a'), (b, 'b')]);
        assert!(t.is_empty());
        let e = t.hold(4, 50, 'e');
        assert!(
            t.drain_session_where(3, |v| *v == 'e').is_empty(),
            "not session 3's"
        );
        assert_eq!(t.drain_session_where(4, |v| *v == 'e'), vec![(e, 'e')]);
        let d = t.hold(3, 50, 'd');
        assert_eq!(t.drain_where(|v| *v == 'd'), vec![(d, 'd')]);
    }
}
