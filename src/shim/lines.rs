//! One direction's read buffer, handing out complete lines only.
//!
//! The shim must never send half a message to a connection (if it is lost
//! mid-line, the new connection would start with garbage) and reads whatever
//! is available in one syscall, so it needs a buffer that keeps an
//! incomplete tail for the next read. It starts small (a client that sends
//! a message now and then never touches more memory than that) and doubles,
//! up to [`LineBuf::with_capacity`]'s `max`, whenever a read fills it (a
//! client that pipelines gets big reads); past that it grows only for a line
//! longer than itself.

use std::io::{self, Read};

/// A read buffer of complete lines (see the module docs).
#[derive(Debug)]
pub struct LineBuf {
    buf: Vec<u8>,
    max: usize,
    start: usize,
    lines_end: usize,
    end: usize,
}

impl LineBuf {
    /// A buffer of `start` bytes that grows to `max` under load.
    pub fn with_capacity(start: usize, max: usize) -> Self {
        LineBuf {
            buf: vec![0; start.max(1)],
            max,
            start: 0,
            lines_end: 0,
            end: 0,
        }
    }

    /// Forgets everything (for a new connection), keeping the memory.
    pub fn clear(&mut self) {
        self.start = 0;
        self.lines_end = 0;
        self.end = 0;
    }

    /// One read from `r` (retried on EINTR); `Ok(0)` at end of file.
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.lines_end -= self.start;
                self.start = 0;
            } else {
                self.grow(self.buf.len() * 2);
            }
        }
        loop {
            match r.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    let from = self.end;
                    self.end += n;
                    if let Some(i) = self.buf[from..self.end].iter().rposition(|&b| b == b'\n') {
                        self.lines_end = from + i + 1;
                    }
                    if self.end == self.buf.len() && self.buf.len() < self.max {
                        self.grow((self.buf.len() * 2).min(self.max));
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A new, larger buffer with the unconsumed bytes. Allocated zeroed
    /// (calloc) rather than resized in place: fresh zeroed memory is not
    /// written, so its pages cost nothing until a read fills them.
    fn grow(&mut self, len: usize) {
        let mut grown = vec![0; len];
        grown[..self.end - self.start].copy_from_slice(&self.buf[self.start..self.end]);
        self.end -= self.start;
        self.lines_end -= self.start;
        self.start = 0;
        self.buf = grown;
    }

    /// The complete lines read and not yet consumed.
    pub fn lines(&self) -> &[u8] {
        &self.buf[self.start..self.lines_end]
    }

    /// Consumes the first `n` bytes of [`Self::lines`].
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.lines_end);
        if self.start == self.end {
            self.start = 0;
            self.lines_end = 0;
            self.end = 0;
        }
    }

    /// Consumes every complete line.
    pub fn consume_lines(&mut self) {
        self.consume(self.lines_end - self.start);
    }

    /// The first complete line, if any (with its newline).
    pub fn first_line(&self) -> Option<&[u8]> {
        let lines = self.lines();
        let n = lines.iter().position(|&b| b == b'\n')?;
        Some(&lines[..=n])
    }

    /// The incomplete last line.
    pub fn tail(&self) -> &[u8] {
        &self.buf[self.lines_end.max(self.start)..self.end]
    }

    /// Bytes of an incomplete last line.
    pub fn partial(&self) -> usize {
        self.end - self.lines_end.max(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_under_load_and_keeps_what_is_unconsumed() {
        let mut b = LineBuf::with_capacity(4, 16);
        let mut input: &[u8] = b"a\nbcdefghij\nk";
        b.read_from(&mut input).unwrap(); // "a\nbc" fills 4: grows to 8
        assert_eq!(b.lines(), b"a\n");
        b.consume(2);
        while b.lines().is_empty() {
            b.read_from(&mut input).unwrap();
        }
        assert_eq!(b.lines(), b"bcdefghij\n");
        b.consume_lines();
        while b.read_from(&mut input).unwrap() > 0 {}
        assert_eq!(b.tail(), b"k");
    }

    #[test]
    fn keeps_partial_lines_and_grows() {
        let mut b = LineBuf::with_capacity(4, 4);
        let mut input: &[u8] = b"ab\ncdefgh\nij";
        b.read_from(&mut input).unwrap();
        assert_eq!(b.lines(), b"ab\n");
        b.consume_lines();
        assert_eq!(b.partial(), 1);
        while b.lines().is_empty() {
            b.read_from(&mut input).unwrap();
        }
        assert_eq!(b.lines(), b"cdefgh\n");
        assert_eq!(b.first_line(), Some(&b"cdefgh\n"[..]));
        b.consume_lines();
        while b.read_from(&mut input).unwrap() > 0 {}
        assert_eq!(b.lines(), b"");
        assert_eq!(b.partial(), 2);
        assert_eq!(b.tail(), b"ij");
    }
}
