//! The wire between client sessions and child servers: everything both sides
//! touch while a message is on its way.
//!
//! The runtime design is that a child's reader task writes straight into the
//! asking session's outbox, with no hop through the session task; so the
//! session's side of that tie ([`SessionLink`], its [`Outbox`], the
//! [`Registry`] of live sessions) and the child's side ([`Connection`], what
//! it routes besides responses, task ids, resource subscriptions, and the
//! per-server [`Context`] shared by its instances) live here together, in one
//! package that both [`crate::session`] and [`crate::upstream`] use. The
//! session keeps its per-client task and verbs; the upstream keeps the
//! lifecycle and the process.
//!
//! - `link`: a session as the rest of the daemon reaches it: outbox, view,
//!   declared capabilities, log level, requests in flight both ways, tasks;
//!   and the [`Registry`].
//! - `outbox`: a session's bounded outbound queue.
//! - `connection`: one running child: framing, id and progress-token
//!   remapping, the pending map, timeouts, reader/writer tasks.
//! - `inbound`: what a child sends besides responses.
//! - `progress`: progress tokens replaced per connection and routed back.
//! - `routes`: a child's routing state besides its pending map.
//! - `tasks`: task ids translated between a child and the owning session.
//! - `subscriptions`: resource subscriptions counted per URI.
//! - `context`: what one server's instances share across restarts.
//! - `modern`: a 2026-07-28 child's connection: the envelope on every
//!   request, results for either era, its `input_required` turned into real
//!   requests to a legacy client.
//! - `mrtr`: a legacy child's requests bridged to a 2026-07-28 client's
//!   call (`input_required`), the parked call, and the rounds' expiry;
//!   `rounds`: the items its bridge holds.
//!
//! Lock order: a link's lock is never held while calling into a connection,
//! and a connection releases its own locks before calling into a link.

mod connection;
mod context;
mod inbound;
mod link;
mod modern;
mod mrtr;
mod outbox;
mod progress;
mod rounds;
mod routes;
mod subscriptions;
mod tasks;

pub use connection::{ClientCall, Connection, Event, Reply, Rewrite};
pub use context::{Context, Owner};
pub use link::{ClientAnswer, ClientCaps, Outgoing, Registry, SessionLink, TaskRef};
pub use mrtr::{abandon as abandon_rounds, Resume};
pub use outbox::Outbox;
pub use rounds::{ChildAsk, ChildCall, ServerBridge};
pub use subscriptions::{SubscribeError, Subscriptions};
pub use tasks::replace_task_ids;

/// MCP protocol versions the daemon speaks with clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The protocol version the daemon asks children for (the newest it speaks).
pub const CHILD_PROTOCOL_VERSION: &str = SUPPORTED_VERSIONS[0];
