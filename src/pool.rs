//! The instances of one server, keyed by who shares them, with
//! `max_instances` (see docs/INSTANCES.md).
//!
//! Generic over the instance type so that the bookkeeping (one instance
//! per key, the limit counted and checked under the same lock as the
//! insertion, removal that cannot drop a newer instance of the same key) is
//! tested on its own, apart from processes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::workspace::Workspace;

/// Who an instance belongs to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceKey {
    /// Every client (`share = "shared"`).
    Shared,
    /// One client session (`share = "per-client"`), by session id.
    Session(u64),
    /// The sessions of one workspace (`share = "per-workspace"`).
    Workspace(Workspace),
}

impl InstanceKey {
    /// The key as `status` shows it: `shared`, `session:7`,
    /// `workspace:"/src/app"` (the path escaped).
    pub fn label(&self) -> String {
        self.to_string()
    }

    /// The value of `STDIOPROXY_INSTANCE` in the instance's environment
    /// (also usable as `${STDIOPROXY_INSTANCE}` in its configured env):
    /// `shared`, `session-7`, `workspace-<16 hex digits>`.
    pub fn env_id(&self) -> String {
        match self {
            InstanceKey::Shared => "shared".into(),
            InstanceKey::Session(id) => format!("session-{id}"),
            InstanceKey::Workspace(w) => format!("workspace-{}", w.id()),
        }
    }

    /// The workspace, for a per-workspace instance.
    pub fn workspace(&self) -> Option<&Workspace> {
        match self {
            InstanceKey::Workspace(w) => Some(w),
            _ => None,
        }
    }

    /// The owning session, for a per-client instance.
    pub fn session(&self) -> Option<u64> {
        match self {
            InstanceKey::Session(id) => Some(*id),
            _ => None,
        }
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceKey::Shared => f.write_str("shared"),
            InstanceKey::Session(id) => write!(f, "session:{id}"),
            InstanceKey::Workspace(w) => write!(f, "workspace:{w}"),
        }
    }
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A new instance would exceed `max_instances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReached {
    /// The limit.
    pub max: usize,
}

/// What [`Pool::get_or_insert`] found.
pub enum Entry<T> {
    /// The key's instance already existed.
    Existing(Arc<T>),
    /// A new instance was made for the key (the caller starts it).
    Created(Arc<T>),
}

impl<T> Entry<T> {
    /// The instance either way.
    pub fn instance(&self) -> &Arc<T> {
        match self {
            Entry::Existing(i) | Entry::Created(i) => i,
        }
    }
}

/// Instances by key.
pub struct Pool<T> {
    map: Mutex<BTreeMap<InstanceKey, Arc<T>>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<T> Pool<T> {
    /// The key's instance, or a new one from `make` when there is none and
    /// fewer than `max` exist (`None`: no limit).
    pub fn get_or_insert(
        &self,
        key: &InstanceKey,
        max: Option<usize>,
        make: impl FnOnce() -> Arc<T>,
    ) -> Result<Entry<T>, LimitReached> {
        let mut map = self.lock();
        if let Some(i) = map.get(key) {
            return Ok(Entry::Existing(i.clone()));
        }
        if let Some(max) = max {
            if map.len() >= max {
                return Err(LimitReached { max });
            }
        }
        let i = make();
        map.insert(key.clone(), i.clone());
        Ok(Entry::Created(i))
    }

    /// Inserts an instance made elsewhere (a reload's replacement),
    /// returning the one it replaces.
    pub fn insert(&self, key: InstanceKey, instance: Arc<T>) -> Option<Arc<T>> {
        self.lock().insert(key, instance)
    }

    /// The key's instance.
    pub fn get(&self, key: &InstanceKey) -> Option<Arc<T>> {
        self.lock().get(key).cloned()
    }

    /// Removes the key's instance.
    pub fn remove(&self, key: &InstanceKey) -> Option<Arc<T>> {
        self.lock().remove(key)
    }

    /// Removes the key's instance only if it is `instance` (not a newer one
    /// made for the same key meanwhile). True when removed.
    pub fn remove_exact(&self, key: &InstanceKey, instance: &Arc<T>) -> bool {
        let mut map = self.lock();
        if map.get(key).is_some_and(|i| Arc::ptr_eq(i, instance)) {
            map.remove(key);
            return true;
        }
        false
    }

    /// Removes and returns every instance.
    pub fn drain(&self) -> Vec<(InstanceKey, Arc<T>)> {
        std::mem::take(&mut *self.lock()).into_iter().collect()
    }

    /// Every instance, in key order.
    pub fn snapshot(&self) -> Vec<(InstanceKey, Arc<T>)> {
        self.lock()
            .iter()
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect()
    }

    /// How many instances exist.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<InstanceKey, Arc<T>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_per_key_within_the_limit() {
        let pool: Pool<u32> = Pool::default();
        let a = InstanceKey::Session(1);
        let b = InstanceKey::Session(2);
        let first = pool.get_or_insert(&a, Some(1), || Arc::new(10)).unwrap();
        assert!(matches!(first, Entry::Created(_)));
        let again = pool.get_or_insert(&a, Some(1), || Arc::new(11)).unwrap();
        assert!(matches!(again, Entry::Existing(ref i) if **i == 10));
        let refused = pool.get_or_insert(&b, Some(1), || Arc::new(20));
        assert_eq!(refused.err(), Some(LimitReached { max: 1 }));
        assert_eq!(pool.len(), 1);
        // No limit.
        assert!(pool.get_or_insert(&b, None, || Arc::new(20)).is_ok());
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn exact_removal_spares_a_newer_instance() {
        let pool: Pool<u32> = Pool::default();
        let k = InstanceKey::Shared;
        let old = pool
            .get_or_insert(&k, None, || Arc::new(1))
            .unwrap()
            .instance()
            .clone();
        pool.remove(&k);
        let new = pool
            .get_or_insert(&k, None, || Arc::new(2))
            .unwrap()
            .instance()
            .clone();
        assert!(!pool.remove_exact(&k, &old));
        assert_eq!(pool.get(&k).as_deref(), Some(&2));
        assert!(pool.remove_exact(&k, &new));
        assert!(pool.is_empty());
    }

    #[test]
    fn labels_and_env_ids() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workspace::resolve(dir.path()).unwrap();
        let k = InstanceKey::Workspace(w.clone());
        assert_eq!(k.label(), format!("workspace:{w}"));
        assert!(k.env_id().starts_with("workspace-") && k.env_id().len() == 26);
        assert_eq!(k.workspace(), Some(&w));
        assert_eq!(InstanceKey::Session(7).label(), "session:7");
        assert_eq!(InstanceKey::Session(7).env_id(), "session-7");
        assert_eq!(InstanceKey::Session(7).session(), Some(7));
        assert_eq!(InstanceKey::Shared.env_id(), "shared");
    }
}
