//! A session's outbound queue.
//!
//! Everything a client is sent (local answers, routed responses, notifications)
//! goes through its bounded outbox, drained by one writer task. Producers never
//! wait on a client: a child's reader task delivering a response must not be
//! blocked by a client that stopped reading, or every other session sharing
//! that child would stall. So [`Outbox::send`] never blocks; a full queue marks
//! the session overflowed, and the session closes with a logged reason.
//!
//! The queue is bounded twice: in lines ([`CAPACITY`]) and in bytes
//! ([`BYTE_BUDGET`]), because one line may be as large as `max_message_size`
//! (16 MiB by default) and 4096 of those would be 64 GiB. A line larger than
//! the whole budget is still accepted into an empty queue, so a single
//! response of any size the limits allow gets through to a client that reads.
//!
//! Shedding: a child may send progress or log notifications faster than a
//! client that *is* reading can take them (a burst of thousands). Dropping
//! that session would punish a healthy client, so once the queue is half full
//! (in lines or bytes) such notifications are dropped instead of queued
//! ([`Outbox::send_lossy`]; [`Outbox::send`] recognises them by the prefix
//! [`crate::jsonrpc::notification`] writes), until it drains below a quarter. Progress is advisory and the
//! call's result still arrives; responses and other notifications are never
//! shed, so only a client that stops reading overflows.
//!
//! Byte accounting without touching the receiver: the channel is FIFO and only
//! [`Outbox::send`] pushes, so the lengths of queued lines are kept in the
//! same order here, and each send first forgets the oldest lengths the writer
//! has taken since (the channel's free capacity says how many lines are still
//! queued). The count can only be too high (the writer may take a line while
//! a send looks), never too low, so the budget is never exceeded. The one line
//! the writer is busy writing is no longer counted: the bound is the budget
//! plus that line.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

/// Lines a session may have queued before it counts as stuck.
pub const CAPACITY: usize = 4096;

/// Bytes a session may have queued before it counts as stuck (32 MiB: two
/// messages of the default maximum size).
pub const BYTE_BUDGET: usize = 32 * 1024 * 1024;

/// The sending side of a session's outbound queue.
#[derive(Debug)]
pub struct Outbox {
    /// The session's id (for logs and routing).
    pub session: u64,
    tx: mpsc::Sender<String>,
    budget: usize,
    queued: Mutex<Queued>,
    overflowed: AtomicBool,
    overflow: Notify,
    /// Notifications dropped since the queue last drained below half.
    shed: AtomicU64,
}

/// Prefixes of the notifications that may be shed, as
/// [`crate::jsonrpc::notification`] writes them.
const SHEDDABLE: &[&str] = &[
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"",
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"",
];

/// Lengths of the lines still in the channel, oldest first, and their sum.
#[derive(Debug, Default)]
struct Queued {
    lengths: VecDeque<usize>,
    bytes: usize,
}

impl Outbox {
    /// A new outbox and the receiver its writer task drains.
    pub fn new(session: u64) -> (Self, mpsc::Receiver<String>) {
        Self::with_limits(session, CAPACITY, BYTE_BUDGET)
    }

    /// An outbox with other limits (tests).
    pub fn with_limits(session: u64, lines: usize, bytes: usize) -> (Self, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(lines.max(1));
        (
            Self {
                session,
                tx,
                budget: bytes,
                queued: Mutex::new(Queued::default()),
                overflowed: AtomicBool::new(false),
                overflow: Notify::new(),
                shed: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Queues one line (with its trailing newline). Returns false when the
    /// session is gone or stuck; the line is then dropped. Progress and log
    /// notifications go through [`Outbox::send_lossy`].
    pub fn send(&self, line: String) -> bool {
        if SHEDDABLE.iter().any(|p| line.starts_with(p)) {
            return self.send_lossy(line);
        }
        self.push(line, false)
    }

    /// Queues a line that may be dropped when the client is slow: once the
    /// queue is half full it is dropped (returning false) instead of counting
    /// towards an overflow.
    pub fn send_lossy(&self, line: String) -> bool {
        self.push(line, true)
    }

    fn push(&self, line: String, lossy: bool) -> bool {
        if self.overflowed.load(Ordering::SeqCst) {
            return false;
        }
        let len = line.len();
        // A poisoned lock only means a panic between two integer updates;
        // the counts stay usable (at worst too high, which is safe).
        let mut queued = self.queued.lock();
        let in_channel = self.tx.max_capacity() - self.tx.capacity();
        while queued.lengths.len() > in_channel {
            let taken = queued.lengths.pop_front().unwrap_or_default();
            queued.bytes -= taken;
        }
        // Shedding starts at half full and stops below a quarter, so a queue
        // hovering around the mark does not flip (and log) at every line.
        let cap = self.tx.max_capacity();
        let half_full = in_channel >= cap / 2 || queued.bytes.saturating_add(len) > self.budget / 2;
        let quarter = in_channel < cap / 4 && queued.bytes <= self.budget / 4;
        let mut shedding = self.shed.load(Ordering::Relaxed) > 0;
        if shedding && quarter {
            shedding = false;
            let shed = self.shed.swap(0, Ordering::Relaxed);
            tracing::info!(
                session = self.session,
                shed,
                "client caught up; dropped {shed} progress/log notifications meanwhile"
            );
        }
        if lossy && (half_full || shedding) {
            if self.shed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::info!(
                    session = self.session,
                    queued = in_channel,
                    "client reads slower than notifications arrive; dropping progress/log notifications until it catches up"
                );
            }
            return false;
        }
        if queued.bytes > 0 && queued.bytes.saturating_add(len) > self.budget {
            let bytes = queued.bytes;
            drop(queued);
            self.mark_overflowed(&format!(
                "{bytes} bytes queued, budget {} bytes",
                self.budget
            ));
            return false;
        }
        match self.tx.try_send(line) {
            Ok(()) => {
                queued.lengths.push_back(len);
                queued.bytes += len;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                drop(queued);
                self.mark_overflowed(&format!("{} messages queued", self.tx.max_capacity()));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn mark_overflowed(&self, what: &str) {
        if !self.overflowed.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                session = self.session,
                "client is not reading its socket ({what}); closing the session"
            );
            // notify_one keeps a permit if nobody waits yet, so a session
            // that calls `overflowed()` later still wakes.
            self.overflow.notify_one();
        }
    }

    /// True when the session can still receive.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed() && !self.overflowed.load(Ordering::SeqCst)
    }

    /// Bytes currently counted as queued (may lag behind the writer).
    pub fn queued_bytes(&self) -> usize {
        self.queued.lock().bytes
    }

    /// Completes once the queue overflowed.
    pub async fn overflowed(&self) {
        if self.overflowed.load(Ordering::SeqCst) {
            return;
        }
        self.overflow.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_byte_budget_overflows_before_the_line_count() {
        let (outbox, mut rx) = Outbox::with_limits(1, 100, 1000);
        assert!(outbox.send("x".repeat(600)));
        assert!(outbox.is_open());
        // 600 + 600 > 1000: the session counts as stuck.
        assert!(!outbox.send("y".repeat(600)));
        assert!(!outbox.is_open());
        outbox.overflowed().await;
        // Once overflowed, nothing more is queued, even small lines.
        assert!(!outbox.send("z".into()));
        assert_eq!(rx.recv().await.map(|l| l.len()), Some(600));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn lines_taken_by_the_writer_free_their_bytes() {
        let (outbox, mut rx) = Outbox::with_limits(1, 100, 1000);
        for i in 0..50 {
            assert!(outbox.send(format!("{:0>599}", i)), "line {i}");
            assert_eq!(rx.recv().await.map(|l| l.len()), Some(599));
        }
        assert!(outbox.is_open());
        assert!(outbox.send("a".repeat(599)));
        assert_eq!(outbox.queued_bytes(), 599);
    }

    #[tokio::test]
    async fn one_line_larger_than_the_budget_fits_an_empty_queue() {
        let (outbox, mut rx) = Outbox::with_limits(1, 100, 1000);
        assert!(outbox.send("x".repeat(5000)));
        assert_eq!(rx.recv().await.map(|l| l.len()), Some(5000));
        assert!(outbox.send("x".repeat(5000)));
        assert!(!outbox.send("x".into()), "but nothing beside it");
    }

    #[tokio::test]
    async fn the_line_count_still_applies() {
        let (outbox, _rx) = Outbox::with_limits(1, 3, 1 << 20);
        assert!(outbox.send("a".into()));
        assert!(outbox.send("b".into()));
        assert!(outbox.send("c".into()));
        assert!(!outbox.send("d".into()));
        outbox.overflowed().await;
    }

    #[tokio::test]
    async fn progress_is_shed_past_half_full_instead_of_overflowing() {
        let (outbox, mut rx) = Outbox::with_limits(1, 10, 1 << 20);
        let progress = || crate::jsonrpc::notification("notifications/progress", Some("{}"));
        let sent = (0..100).filter(|_| outbox.send(progress())).count();
        assert_eq!(sent, 5, "queued until half full, then shed");
        assert!(outbox.is_open(), "shedding is not an overflow");
        // Responses still fit in the other half.
        for i in 0..5 {
            assert!(outbox.send(crate::jsonrpc::response(&i.to_string(), "{}")));
        }
        // Still shedding between a quarter and half full...
        for _ in 0..7 {
            rx.try_recv().unwrap();
        }
        assert!(!outbox.send(progress()), "3 queued: above a quarter");
        // ... and flowing again once the writer caught up.
        while rx.try_recv().is_ok() {}
        assert!(outbox.send(progress()));
        assert_eq!(outbox.shed.load(Ordering::Relaxed), 0);
        // Other notifications are never shed.
        let (outbox, _rx) = Outbox::with_limits(1, 4, 1 << 20);
        let changed = || crate::jsonrpc::notification("notifications/tools/list_changed", None);
        assert_eq!((0..4).filter(|_| outbox.send(changed())).count(), 4);
        assert!(!outbox.send(changed()));
        assert!(!outbox.is_open());
    }

    #[tokio::test]
    async fn a_closed_session_is_not_an_overflow() {
        let (outbox, rx) = Outbox::with_limits(1, 3, 100);
        drop(rx);
        assert!(!outbox.send("a".into()));
        assert!(!outbox.overflowed.load(Ordering::SeqCst));
    }
}
