//! A session's outbound queue.
//!
//! Everything a client is sent (local answers, routed responses, notifications)
//! goes through its bounded outbox, drained by one writer task. Producers never
//! wait on a client: a child's reader task delivering a response must not be
//! blocked by a client that stopped reading, or every other session sharing
//! that child would stall. So [`Outbox::send`] never blocks; a full queue marks
//! the session overflowed, and the session closes with a logged reason.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, Notify};

/// Lines a session may have queued before it counts as stuck.
pub const CAPACITY: usize = 4096;

/// The sending side of a session's outbound queue.
#[derive(Debug)]
pub struct Outbox {
    /// The session's id (for logs and routing).
    pub session: u64,
    tx: mpsc::Sender<String>,
    overflowed: AtomicBool,
    overflow: Notify,
}

impl Outbox {
    /// A new outbox and the receiver its writer task drains.
    pub fn new(session: u64) -> (Self, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (
            Self {
                session,
                tx,
                overflowed: AtomicBool::new(false),
                overflow: Notify::new(),
            },
            rx,
        )
    }

    /// Queues one line (with its trailing newline). Returns false when the
    /// session is gone or stuck; the line is then dropped.
    pub fn send(&self, line: String) -> bool {
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        session = self.session,
                        "client is not reading its socket ({CAPACITY} messages queued); closing the session"
                    );
                    self.overflow.notify_one();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// True when the session can still receive.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed() && !self.overflowed.load(Ordering::SeqCst)
    }

    /// Completes once the queue overflowed.
    pub async fn overflowed(&self) {
        if self.overflowed.load(Ordering::SeqCst) {
            return;
        }
        self.overflow.notified().await;
    }
}
