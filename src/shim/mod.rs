//! The library half of `stdioproxy-shim`: everything that is not I/O, so it
//! is tested without processes and the binary stays thin.
//!
//! - [`options`]: the command line, in one struct.
//! - [`peek`]: reading a line's `id` and `method` without copying it.
//! - [`resume`]: the session memory that lets a client's MCP session outlive
//!   its connection to the daemon (replay, in-flight errors, the queue).
//! - [`lines`]: splitting a byte stream into complete lines with one buffer.
//!
//! Std, serde and serde_json only: the shim must start in about a
//! millisecond.

pub mod lines;
pub mod options;
pub mod peek;
pub mod resume;
