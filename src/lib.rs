//! stdioproxy: one per-user daemon that owns every MCP server of a user and
//! shares it among all the user's MCP clients, which reach it through the tiny
//! `stdioproxy-shim` binary over a Unix socket.
//!
//! # Layout
//!
//! Every module, roughly from the client's end to the child's:
//!
//! - [`paths`]: where the config file and the socket live (flags, env, XDG).
//! - [`proto`]: the shim/control hello lines that precede MCP on the socket.
//! - [`listener`]: binds (or adopts) the socket, checks every peer's uid,
//!   reads the first line and hands the connection to a session or to
//!   [`control`]; [`slots`] are its reservations (and the session counter).
//! - [`session`]: one MCP session per client connection; the daemon is the
//!   MCP server: it answers `initialize`, `ping` and lists locally and routes
//!   the rest. It reaches the daemon through its [`session::Hub`].
//! - [`builtin`]: the daemon's own tools (`stdioproxy__reload`).
//! - [`catalog`]: the immutable, versioned snapshot of what clients see
//!   (prefixed tools and prompts, resources and templates) and the map back
//!   to (server, original name or URI).
//! - [`names`]: the `<server>__<tool>` naming rules and deterministic
//!   shortening.
//! - [`wire`]: the tie between sessions and children: a session's link and
//!   outbox, the child connection (id, progress-token and task-id remapping,
//!   pending requests), what a child sends besides responses, resource
//!   subscriptions, the per-server context, the protocol versions.
//! - [`upstream`]: one configured server across restarts: its lifecycle task
//!   (spawn, handshake, health, restart with backoff) and its process.
//! - [`supervisor`]: owns the set of upstreams and rebuilds the catalog.
//! - [`cache`]: the on-disk lists served until a server is ready.
//! - [`reaper`]: the companion process that kills children's process groups
//!   if the daemon dies hard.
//! - [`config`]: the TOML config: types, loading with file:line:column
//!   errors, permission checks, `${VAR}`/`~` expansion, durations, the
//!   per-server diff, the file watcher, the running settings cell.
//! - [`reload`]: the [`reload::Reloader`]: parse -> validate -> diff -> apply.
//! - [`control`]: the `status` and `reload` requests, daemon and CLI sides.
//! - [`daemon`]: builds the parts, runs them until shutdown, stops them in
//!   order.
//! - [`systemd`]: socket activation, `sd_notify`, the watchdog.
//! - [`loglevel`]: MCP log levels, per session and per child.
//! - [`pool`] and [`workspace`]: the instances of a per-client or
//!   per-workspace server, keyed by session or canonical workspace
//!   (docs/INSTANCES.md).
//! - [`jsonrpc`] and [`framing`]: the wire format (envelopes on raw JSON, and
//!   newline-delimited frames with a size limit).
//! - [`flag`]: one-way flags (shutdown, stop) on `watch` channels.
//! - [`error`]: error enums callers branch on.
//! - [`shim`]: the shim's options and its session memory (reconnect and
//!   resume), pure so that it is property-tested; the binary is thin I/O.
//! - [`telemetry`]: tracing setup.
//! - [`install`], [`client_setup`], [`import`]: the `install`, `setup-client`
//!   and `import` commands.
//! - [`atomic_file`]: the one writer of users' files (temp file, persist,
//!   modes, backups); [`toml_doc`]: editing tables of a user's TOML file.
//! - [`status_view`]: `stdioproxy status` rendered for a person.
//! - [`era`]: the two eras of MCP (2025-11-25 and 2026-07-28) and the pieces
//!   that bridge them.
//!
//! See `docs/ARCHITECTURE.md` for the two data flows (a client request; a
//! config change) and the ownership invariants.

pub mod atomic_file;
pub mod builtin;
pub mod cache;
pub mod catalog;
pub mod client_setup;
pub mod config;
pub mod control;
pub mod daemon;
pub mod era;
pub mod error;
pub mod fit_options;
pub mod flag;
pub mod framing;
pub mod import;
pub mod install;
pub mod jsonrpc;
pub mod listener;
pub mod loglevel;
pub mod meta_tools;
pub mod names;
pub mod paths;
pub mod pins;
pub mod pool;
pub mod proto;
pub mod reaper;
pub mod reload;
pub mod session;
pub mod shim;
pub mod slots;
pub mod status_view;
pub mod stderr_ring;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod toml_doc;
pub mod tool_search;
pub mod upstream;
pub mod view;
pub mod wire;
pub mod workspace;
