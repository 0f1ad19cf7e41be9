//! stdioproxy: one per-user daemon that owns every MCP server of a user and
//! shares it among all the user's MCP clients, which reach it through the tiny
//! `stdioproxy-shim` binary over a Unix socket.
//!
//! # Layout
//!
//! The daemon's data flows left to right through these modules:
//!
//! - [`paths`]: where the config file and the socket live (flags, env, XDG).
//! - [`config`]: the TOML config: types, loading with file:line:column errors,
//!   permission checks, `${VAR}`/`~` expansion, durations.
//! - [`listener`]: binds (or adopts) the socket, checks every peer's uid, reads
//!   the optional hello line and hands the connection to a session or to
//!   [`control`].
//! - [`session`]: one MCP session per client connection; the daemon is the MCP
//!   server: it answers `initialize`, `ping` and lists locally and routes the rest.
//! - [`catalog`]: the immutable, versioned snapshot of what clients see
//!   (prefixed tools and prompts, resources and templates) and the map back
//!   to (server, original name or URI).
//! - [`names`]: the `<server>__<tool>` naming rules and deterministic shortening.
//! - [`upstream`]: the MCP client side of one child process: framing, id,
//!   progress-token and task-id remapping, pending requests, and routing what
//!   the child sends (notifications, requests to a client).
//! - [`loglevel`]: MCP log levels, per session and per child.
//! - [`supervisor`]: owns the set of upstreams and their lifecycles.
//! - [`jsonrpc`] and [`framing`]: the wire format (envelopes on raw JSON, and
//!   newline-delimited frames with a size limit).
//! - [`proto`]: the shim/control hello lines that precede MCP on the socket.
//! - [`shim`]: the shim's options and its session memory (reconnect and
//!   resume), pure so that it is property-tested; the binary is thin I/O.
//! - [`daemon`]: wires everything together and owns shutdown.
//! - [`telemetry`]: tracing setup.
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
