//! MCP log levels (RFC 5424 severities) for `logging/setLevel` and
//! `notifications/message`.
//!
//! The level is per client session, but a shared child has one level: the
//! daemon sets each child to the most verbose level any session that sees it
//! asked for, and filters messages per session.

/// A log level, most verbose first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `notice`
    Notice,
    /// `warning`
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `alert`
    Alert,
    /// `emergency`
    Emergency,
}

const NAMES: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

impl Level {
    /// Parses a level name as MCP spells it.
    pub fn parse(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| Self::from_rank(i as u8))
    }

    /// The MCP name.
    pub fn as_str(self) -> &'static str {
        NAMES[self.rank() as usize]
    }

    /// 0 (debug) to 7 (emergency).
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The level of a rank.
    pub fn from_rank(rank: u8) -> Option<Self> {
        Some(match rank {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Notice,
            3 => Level::Warning,
            4 => Level::Error,
            5 => Level::Critical,
            6 => Level::Alert,
            7 => Level::Emergency,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_roundtrip() {
        for name in NAMES {
            assert_eq!(Level::parse(name).map(Level::as_str), Some(name));
        }
        assert!(Level::Debug < Level::Emergency);
        assert_eq!(Level::parse("verbose"), None);
    }
}
