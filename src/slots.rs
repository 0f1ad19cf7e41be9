//! Counted reservations under a limit: the listener's connections waiting for
//! their first line, and the open client sessions (the daemon's one session
//! counter, which `status` and systemd's STATUS= line read too).
//!
//! A reservation is taken before the work starts and released when its
//! [`Slot`] is dropped (also when the task holding it panics), so two
//! connections racing for the last slot cannot both win. The limit is read at
//! each reservation: it can change on reload, and a lower one only affects
//! new reservations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A counter of reserved slots.
#[derive(Debug, Default)]
pub struct Slots {
    taken: AtomicUsize,
}

/// One reserved slot, released when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    /// Reserves a slot if fewer than `limit` are taken.
    pub fn try_take(self: &Arc<Self>, limit: usize) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_released_on_drop_and_bounded() {
        let slots = Arc::new(Slots::default());
        let a = slots.try_take(2).expect("first");
        let _b = slots.try_take(2).expect("second");
        assert!(slots.try_take(2).is_none(), "over the limit");
        drop(a);
        assert_eq!(slots.taken(), 1);
        assert!(slots.try_take(2).is_some());
    }
}
