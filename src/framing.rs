//! Newline-delimited framing with a size limit, for client sockets and child
//! stdio alike.
//!
//! MCP's stdio transport is one JSON message per line. A peer that sends an
//! endless line must not make the daemon buffer it: as soon as a line passes
//! `max` bytes the reader reports [`Frame::TooLong`] (without waiting for the
//! line to end, which it may never do) and silently discards the rest of
//! that line on the following calls; the caller decides (error reply,
//! dropped session, restarted child).
//!
//! [`LineReader::next_frame`] is cancel-safe: its only await point is
//! `fill_buf`, and partial lines live in the reader, so it can sit in a
//! `select!` next to other events without losing bytes.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One unit read from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Line(Vec<u8>),
    /// A line longer than the limit was skipped; `prefix` holds its first
    /// bytes, so an id can sometimes still be recovered.
    TooLong {
        /// The first bytes of the line (up to 4 KiB).
        prefix: Vec<u8>,
    },
    /// The peer closed its side.
    Eof,
}

const PREFIX_KEEP: usize = 4096;

/// Reads frames from a buffered reader.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    discarding: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader that accepts lines up to `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max,
            discarding: false,
        }
    }

    /// The next frame. Empty lines are skipped.
    pub async fn next_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                // An oversized last line was already reported.
                self.discarding = false;
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    self.buf.clear();
                    return Ok(Frame::Eof);
                }
                // A last line without its newline: the same rules as any
                // other line (it cannot exceed `max`: see the `None` arm).
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                return Ok(Frame::Line(std::mem::take(&mut self.buf)));
            }
            match memchr(available) {
                Some(i) => {
                    if !self.discarding {
                        self.buf.extend_from_slice(&available[..i]);
                    }
                    self.inner.consume(i + 1);
                    if std::mem::take(&mut self.discarding) {
                        // The end of a line reported as too long already.
                        continue;
                    }
                    if self.buf.len() > self.max {
                        let mut prefix = std::mem::take(&mut self.buf);
                        prefix.truncate(PREFIX_KEEP);
                        return Ok(Frame::TooLong { prefix });
                    }
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        self.buf.clear();
                        continue;
                    }
                    return Ok(Frame::Line(std::mem::take(&mut self.buf)));
                }
                None => {
                    let n = available.len();
                    if self.discarding {
                        self.inner.consume(n);
                        continue;
                    }
                    self.buf.extend_from_slice(available);
                    self.inner.consume(n);
                    if self.buf.len() > self.max {
                        // Report it now: the line may never end.
                        self.discarding = true;
                        let mut prefix = std::mem::take(&mut self.buf);
                        prefix.truncate(PREFIX_KEEP);
                        return Ok(Frame::TooLong { prefix });
                    }
                }
            }
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut r = LineReader::new(BufReader::with_capacity(8, input), max);
        let mut out = Vec::new();
        loop {
            let f = r.next_frame().await.unwrap();
            let eof = f == Frame::Eof;
            out.push(f);
            if eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_strips_cr() {
        let f = frames(b"abc\r\n\n  \ndefghijklmnop\nlast", 100).await;
        assert_eq!(
            f,
            vec![
                Frame::Line(b"abc".to_vec()),
                Frame::Line(b"defghijklmnop".to_vec()),
                Frame::Line(b"last".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[tokio::test]
    async fn oversized_lines_are_skipped_not_buffered() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 50));
        input.extend_from_slice(b"\nafter\n");
        let f = frames(&input, 20).await;
        assert_eq!(f[0], Frame::Line(b"ok".to_vec()));
        assert!(matches!(&f[1], Frame::TooLong { prefix } if prefix.starts_with(b"xxxx")));
        assert_eq!(f[2], Frame::Line(b"after".to_vec()));
        assert_eq!(f[3], Frame::Eof);
    }

    #[tokio::test]
    async fn a_last_line_without_newline_loses_its_cr_too() {
        // Found while writing the framing property test: "abc\r" at EOF came back as
        // "abc\r", unlike "abc\r\n".
        let f = frames(b"x\nabc\r", 100).await;
        assert_eq!(f[1], Frame::Line(b"abc".to_vec()));
        assert_eq!(f[2], Frame::Eof);
    }

    #[tokio::test]
    async fn an_endless_line_is_reported_before_it_ends() {
        use tokio::io::AsyncWriteExt;
        // A peer writing without a newline: TooLong comes as soon as the
        // limit is passed. The writer sends the line's end only after the
        // reader reported it, so the report cannot have waited for it.
        let (mut w, r) = tokio::io::duplex(64);
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(async move {
            w.write_all(&[b'x'; 100]).await.unwrap();
            go_rx.await.unwrap();
            w.write_all(b"yyy\nok\n").await.unwrap();
        });
        let mut reader = LineReader::new(BufReader::with_capacity(16, r), 20);
        match reader.next_frame().await.unwrap() {
            Frame::TooLong { prefix } => assert!(prefix.len() > 20 && prefix.len() <= 36),
            f => panic!("{f:?}"),
        }
        go_tx.send(()).unwrap();
        // The rest of that line is skipped; the next line is read.
        assert_eq!(
            reader.next_frame().await.unwrap(),
            Frame::Line(b"ok".to_vec())
        );
        writer.await.unwrap();
        assert_eq!(reader.next_frame().await.unwrap(), Frame::Eof);
    }

    #[tokio::test]
    async fn exact_limit_is_accepted() {
        let f = frames(b"12345\n123456\n", 5).await;
        assert_eq!(f[0], Frame::Line(b"12345".to_vec()));
        assert!(matches!(f[1], Frame::TooLong { .. }));
    }
}
