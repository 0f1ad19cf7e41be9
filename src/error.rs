//! Error types that callers branch on.
//!
//! Errors that reach a client become JSON-RPC errors at the session boundary
//! (codes in [`crate::jsonrpc::code`]); errors that reach a person (config,
//! socket) are one line naming what to do.

use std::path::PathBuf;
use std::time::Duration;

/// Talking to a child failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The child's connection is gone.
    #[error("the server closed its connection")]
    Closed,
    /// The child is not reading its input (its queue is full).
    #[error("the server is not reading its input (its queue is full)")]
    Busy,
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The child answered with a JSON-RPC error.
    #[error("the server answered with an error: {0}")]
    Rpc(String),
    /// The child answered something that is not MCP.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// The daemon could not take its socket.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another daemon answers on the socket.
    #[error("another stdioproxy daemon is already running on {0} (stop it first, or pass --socket to use another path)")]
    AlreadyRunning(PathBuf),
    /// Something other than a socket is at the path.
    #[error("{0} exists and is not a socket; remove it or choose another --socket")]
    NotASocket(PathBuf),
    /// The socket directory is unsafe.
    #[error("socket directory {0} is unsafe: {1}")]
    UnsafeDirectory(PathBuf, String),
    /// Any other I/O failure.
    #[error("{1} {0}: {2}")]
    Io(PathBuf, &'static str, #[source] std::io::Error),
}
