//! One-way flags (shutdown, stop) carried by `watch::channel(false)`.
//!
//! `watch::Receiver::wait_for` returns a borrow guard that is not `Send`; in a
//! `select!` arm that guard would make the whole task non-`Send`. [`raised`]
//! drops it at once.

use tokio::sync::watch;

/// Completes when the flag is (or becomes) true, or its sender is gone.
pub async fn raised(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}
