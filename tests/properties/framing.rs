//! `LineReader` over arbitrary bytes, split into arbitrary chunks, with reads
//! that sometimes return `Pending` and calls that are sometimes cancelled
//! (dropped mid-read, as a `select!` does): the frames equal a reference
//! splitter's, oversized lines are reported as `TooLong` with a prefix of the
//! line, and the reader never holds much more than the limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use stdioproxy::framing::{Frame, LineReader};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

/// How much of an oversized line `TooLong` keeps.
const PREFIX_KEEP: usize = 4096;

/// Serves `data` in the given chunk sizes (cycled); every `pending_every`-th
/// read first returns `Pending` (and wakes at once).
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    next_chunk: usize,
    reads: usize,
    pending_every: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reads += 1;
        if self.pending_every > 0 && self.reads % self.pending_every == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let want = self.chunks[self.next_chunk % self.chunks.len()];
        self.next_chunk += 1;
        let n = want.min(buf.remaining()).min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq)]
enum Expected {
    Line(Vec<u8>),
    TooLong(Vec<u8>),
}

/// The specification, written as plainly as possible.
fn reference(input: &[u8], max: usize) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut segments: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    // The piece after the last newline is a last line without newline.
    let last = segments.pop().unwrap_or_default();
    for seg in segments.into_iter().chain(std::iter::once(last)) {
        if seg.len() > max {
            out.push(Expected::TooLong(seg.to_vec()));
            continue;
        }
        let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
        if seg.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(Expected::Line(seg.to_vec()));
    }
    out
}

/// Runs the reader to EOF, cancelling the pending `next_frame` call when
/// `cancel` says so.
fn frames(
    input: &[u8],
    chunks: Vec<usize>,
    capacity: usize,
    max: usize,
    pending_every: usize,
    cancel: &[bool],
) -> Vec<Frame> {
    let source = Chunked {
        data: input.to_vec(),
        pos: 0,
        chunks,
        next_chunk: 0,
        reads: 0,
        pending_every,
    };
    let mut reader = LineReader::new(BufReader::with_capacity(capacity, source), max);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut polls = 0usize;
    loop {
        let mut fut = Box::pin(reader.next_frame());
        let frame = loop {
            polls += 1;
            assert!(polls < 1_000_000, "the reader makes no progress");
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(f) => break Some(f.expect("in-memory reads do not fail")),
                Poll::Pending if cancel[polls % cancel.len()] => break None,
                Poll::Pending => {}
            }
        };
        drop(fut);
        match frame {
            None => continue, // cancelled: call again, nothing may be lost
            Some(Frame::Eof) => return out,
            Some(f) => out.push(f),
        }
    }
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(b'\n'),
        2 => Just(b'\r'),
        2 => Just(b' '),
        1 => Just(b'\t'),
        1 => Just(0x0c),
        6 => b'a'..=b'e',
        2 => any::<u8>(),
    ]
}

fn check(
    input: &[u8],
    chunks: Vec<usize>,
    capacity: usize,
    max: usize,
    pending_every: usize,
    cancel: &[bool],
) -> Result<(), TestCaseError> {
    let got = frames(input, chunks, capacity, max, pending_every, cancel);
    let want = reference(input, max);
    prop_assert_eq!(got.len(), want.len(), "frames {:?} vs {:?}", got, want);
    // The most a reader may hold: the limit plus one buffer fill, and Vec
    // growth may double that.
    let bound = 2 * (max + capacity) + 16;
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            (Frame::Line(l), Expected::Line(e)) => {
                prop_assert_eq!(l, e);
                prop_assert!(l.capacity() <= bound, "held {} > {bound}", l.capacity());
            }
            (Frame::TooLong { prefix }, Expected::TooLong(line)) => {
                prop_assert!(line.starts_with(prefix), "prefix of the line");
                prop_assert!(prefix.len() <= PREFIX_KEEP);
                prop_assert!(
                    prefix.len() >= (max + 1).min(PREFIX_KEEP).min(line.len()),
                    "prefix {} bytes of a {}-byte line, max {max}",
                    prefix.len(),
                    line.len()
                );
                prop_assert!(
                    prefix.capacity() <= bound,
                    "held {} > {bound}",
                    prefix.capacity()
                );
            }
            _ => prop_assert!(false, "frame {:?} where {:?} was expected", g, w),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::config(512))]

    #[test]
    fn line_reader_matches_the_reference_splitter(
        input in prop::collection::vec(byte(), 0..400),
        chunks in prop::collection::vec(1usize..40, 1..20),
        capacity in 1usize..48,
        max in 1usize..40,
        pending_every in prop_oneof![Just(0usize), 2usize..6],
        cancel in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        check(&input, chunks, capacity, max, pending_every, &cancel)?;
    }
}

proptest! {
    #![proptest_config(crate::config(64))]

    #[test]
    fn long_lines_keep_a_4k_prefix_and_nothing_more(
        lens in prop::collection::vec(0usize..12_000, 1..5),
        max in 3000usize..6000,
        capacity in 512usize..9000,
        chunk in 100usize..5000,
    ) {
        let mut input = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            input.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, *len));
            input.push(b'\n');
        }
        check(&input, vec![chunk], capacity, max, 0, &[false])?;
    }
}
