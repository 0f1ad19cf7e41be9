//! The last stderr lines of each server, for `stdioproxy logs`.
//!
//! Debugging a server should not need journald: every line a child writes
//! to stderr is kept, with the time and the pid of the instance that wrote
//! it, in a ring bounded both in lines and in bytes (1,000 lines, 256 KiB
//! by default; a single line is cut at 8 KiB), so a chatty server costs a
//! fixed amount of memory. The rings are kept by server name in
//! [`StderrLogs`], apart from any one instance, so history survives
//! restarts and reloads that replace the server. `logs --follow` waits on a
//! ring's sequence number for lines newer than the last it printed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

/// Lines kept per server by default.
pub const MAX_LINES: usize = 1000;
/// Bytes of text kept per server by default.
pub const MAX_BYTES: usize = 256 * 1024;
/// Longest line kept; the rest is cut (and marked).
pub const MAX_LINE: usize = 8 * 1024;

/// One stderr line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StderrLine {
    /// Position in the server's stream of lines, from 1.
    pub seq: u64,
    /// When the daemon read it, in milliseconds since the epoch.
    pub at_unix_ms: u64,
    /// The pid of the instance that wrote it.
    pub pid: u32,
    /// The text, without the newline.
    pub text: String,
}

impl StderrLine {
    /// `2026-12-04T18:30:01.123Z [pid 4242] text`.
    pub fn render(&self) -> String {
        format!(
            "{} [pid {}] {}",
            utc_timestamp(self.at_unix_ms),
            self.pid,
            self.text
        )
    }
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<StderrLine>,
    bytes: usize,
}

/// One server's ring of stderr lines.
pub struct StderrRing {
    ring: Mutex<Ring>,
    max_lines: usize,
    max_bytes: usize,
    /// The newest line's `seq` (0 before the first).
    newest: watch::Sender<u64>,
}

impl Default for StderrRing {
    fn default() -> Self {
        Self::new(MAX_LINES, MAX_BYTES)
    }
}

impl StderrRing {
    /// A ring keeping at most `max_lines` lines and `max_bytes` of text.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            ring: Mutex::new(Ring::default()),
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(MAX_LINE + 16),
            newest: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a line written by instance `pid` now.
    pub fn push(&self, pid: u32, text: &str) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.push_at(pid, text, at_unix_ms);
    }

    fn push_at(&self, pid: u32, text: &str, at_unix_ms: u64) {
        let mut text = text.trim_end_matches(['\n', '\r']).to_string();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [cut]");
        }
        let seq = {
            let mut ring = self.lock();
            let seq = ring.lines.back().map_or(*self.newest.borrow(), |l| l.seq) + 1;
            ring.bytes += text.len();
            ring.lines.push_back(StderrLine {
                seq,
                at_unix_ms,
                pid,
                text,
            });
            while ring.lines.len() > self.max_lines || ring.bytes > self.max_bytes {
                match ring.lines.pop_front() {
                    Some(old) => ring.bytes -= old.text.len(),
                    None => break,
                }
            }
            seq
        };
        self.newest.send_replace(seq);
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<StderrLine> {
        let ring = self.lock();
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }

    /// Lines newer than `seq`, oldest first, and how many newer lines were
    /// already dropped from the ring (a follower that fell behind).
    pub fn since(&self, seq: u64) -> (Vec<StderrLine>, u64) {
        let ring = self.lock();
        let lines: Vec<StderrLine> = ring.lines.iter().filter(|l| l.seq > seq).cloned().collect();
        let first = lines.first().map_or(*self.newest.borrow() + 1, |l| l.seq);
        (lines, first.saturating_sub(seq + 1))
    }

    /// The newest line's `seq`, and a receiver that sees every new one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Bytes of text held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Every server's ring, by server name.
#[derive(Default)]
pub struct StderrLogs {
    rings: Mutex<HashMap<String, Arc<StderrRing>>>,
}

impl StderrLogs {
    /// The ring of `server`, created empty on first use.
    pub fn ring(&self, server: &str) -> Arc<StderrRing> {
        self.lock()
            .entry(server.to_string())
            .or_insert_with(|| Arc::new(StderrRing::default()))
            .clone()
    }

    /// The ring of `server`, if it ever had one.
    pub fn get(&self, server: &str) -> Option<Arc<StderrRing>> {
        self.lock().get(server).cloned()
    }

    /// Forgets servers no longer configured.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|name, _| keep(name));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<StderrRing>>> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (UTC; the
/// proleptic Gregorian calendar, days-from-civil inverted).
pub fn utc_timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_timestamp(1_796_409_001_500), "2026-12-04T18:30:01.500Z");
    }

    #[test]
    fn bounded_in_lines_and_bytes() {
        let r = StderrRing::new(3, MAX_LINE);
        for i in 0..5 {
            r.push_at(7, &format!("line {i}\n"), 0);
        }
        let last = r.last(10);
        assert_eq!(
            last.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["line 2", "line 3", "line 4"]
        );
        assert_eq!(last[0].seq, 3);
        assert_eq!(
            r.last(1)[0].render(),
            "1970-01-01T00:00:00.000Z [pid 7] line 4"
        );

        let r = StderrRing::new(1000, MAX_LINE * 2);
        let big = "x".repeat(MAX_LINE * 3);
        r.push(1, &big);
        assert!(r.last(1)[0].text.ends_with(" [cut]"));
        r.push(1, &big);
        r.push(1, &big);
        assert!(r.bytes() <= MAX_LINE * 2, "{}", r.bytes());
        assert_eq!(r.last(10).len(), 1);
        let r = StderrRing::new(1000, MAX_LINE);
        r.push(1, &"é".repeat(MAX_LINE));
        assert!(r.last(1)[0].text.len() <= MAX_LINE + 6);
    }

    #[test]
    fn followers_see_new_lines_and_what_they_missed() {
        let r = StderrRing::new(2, MAX_LINE);
        let rx = r.subscribe();
        assert_eq!(*rx.borrow(), 0);
        r.push(1, "a");
        assert_eq!(*rx.borrow(), 1);
        let (lines, missed) = r.since(0);
        assert_eq!((lines.len(), missed), (1, 0));
        assert!(r.since(1).0.is_empty());
        r.push(1, "b");
        r.push(2, "c");
        r.push(2, "d");
        let (lines, missed) = r.since(1);
        assert_eq!(
            lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert_eq!(missed, 1, "b was dropped before the follower read it");
    }

    #[test]
    fn rings_outlive_instances() {
        let logs = StderrLogs::default();
        logs.ring("a").push(1, "one");
        assert_eq!(logs.ring("a").last(5).len(), 1);
        assert!(logs.get("b").is_none());
        logs.retain(|n| n != "a");
        assert!(logs.get("a").is_none());
    }
}
