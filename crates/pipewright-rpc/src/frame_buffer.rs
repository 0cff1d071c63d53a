//! The read side of a connection: bytes read but not handled yet, whole frames taken from
//! the front. Shared by the async client connection and the blocking client and server.

use std::io;

use crate::frame::HEADER_LEN;

/// The buffer's starting size; it grows for a larger frame within the limit.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// What the front of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Front<'a> {
    /// Less than one whole frame.
    Partial,
    /// A whole frame within the limit: its body.
    Whole(&'a [u8]),
    /// A frame whose header announces more than the limit (`len` body bytes).
    Oversize(usize),
}

/// Bytes read from a stream; `start..end` are not handled yet.
#[derive(Debug)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: usize,
}

impl FrameBuffer {
    /// An empty buffer for frames of at most `max_frame` body bytes.
    pub(crate) fn new(max_frame: usize) -> Self {
        FrameBuffer {
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// The largest frame body accepted.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes read and not handled yet.
    pub(crate) fn unhandled_len(&self) -> usize {
        self.end - self.start
    }

    /// The bytes read and not handled yet, taken out (the buffer is empty after).
    pub(crate) fn take_unhandled(&mut self) -> Vec<u8> {
        let unhandled = self.buf[self.start..self.end].to_vec();
        self.start = 0;
        self.end = 0;
        unhandled
    }

    /// The frame at the front.
    pub(crate) fn front(&self) -> Front<'_> {
        let unhandled = &self.buf[self.start..self.end];
        let Some(header) = unhandled.first_chunk::<HEADER_LEN>() else {
            return Front::Partial;
        };
        let len = u32::from_le_bytes(*header) as usize;
        if len > self.max_frame {
            Front::Oversize(len)
        } else if unhandled.len() < HEADER_LEN + len {
            Front::Partial
        } else {
            Front::Whole(&unhandled[HEADER_LEN..HEADER_LEN + len])
        }
    }

    /// Drops the whole frame of `body_len` bytes at the front.
    pub(crate) fn consume_frame(&mut self, body_len: usize) {
        self.start += HEADER_LEN + body_len;
        debug_assert!(self.start <= self.end);
    }

    /// Drops up to `n` unhandled bytes; returns how many were dropped.
    pub(crate) fn discard(&mut self, n: usize) -> usize {
        let n = n.min(self.unhandled_len());
        self.start += n;
        n
    }

    /// Free space after the unhandled bytes for the next read: moves them to the front, and
    /// grows the buffer when the frame at the front (within the limit) needs more.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let unhandled = self.end - self.start;
        let needed = match self.buf[self.start..self.end].first_chunk::<HEADER_LEN>() {
            Some(header) => HEADER_LEN + (u32::from_le_bytes(*header) as usize).min(self.max_frame),
            None => HEADER_LEN,
        };
        if self.start > 0
            && (self.buf.len() - self.end < 4096 || self.buf.len() - self.start < needed)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = unhandled;
        }
        if self.buf.len() < needed {
            self.buf.resize(needed, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Counts `n` bytes read into [`spare`](Self::spare) as unhandled.
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.buf.len());
    }

    /// One read from a blocking stream into the buffer; `Ok(0)` at the end of the stream.
    pub(crate) fn read_from(&mut self, io: &mut impl io::Read) -> io::Result<usize> {
        let n = io.read(self.spare())?;
        self.filled(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn whole_frames_come_out_in_order_across_reads() {
        let mut bytes = frame(b"one");
        bytes.extend(frame(b""));
        bytes.extend(frame(b"three"));
        let mut b = FrameBuffer::new(16);
        // Fed two bytes at a time: a frame shows only when all of it is in.
        let mut got = Vec::new();
        for chunk in bytes.chunks(2) {
            b.spare()[..chunk.len()].copy_from_slice(chunk);
            b.filled(chunk.len());
            while let Front::Whole(body) = b.front() {
                let body = body.to_vec();
                b.consume_frame(body.len());
                got.push(body);
            }
        }
        assert_eq!(got, [b"one".to_vec(), vec![], b"three".to_vec()]);
        assert_eq!(b.unhandled_len(), 0);
    }

    #[test]
    fn what_is_not_handled_can_be_taken_out_whole() {
        let mut bytes = frame(b"one");
        let two = frame(b"two");
        bytes.extend_from_slice(&two[..5]);
        let mut b = FrameBuffer::new(16);
        let mut r: &[u8] = &bytes;
        assert_eq!(b.read_from(&mut r).unwrap(), bytes.len());
        assert_eq!(b.front(), Front::Whole(b"one"));
        b.consume_frame(3);
        assert_eq!(b.take_unhandled(), &two[..5]);
        assert_eq!((b.unhandled_len(), b.front()), (0, Front::Partial));
        assert!(b.take_unhandled().is_empty());
    }

    #[test]
    fn an_oversize_header_is_reported_and_never_grows_the_buffer() {
        let mut b = FrameBuffer::new(8);
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
        assert_eq!(b.read_from(&mut r).unwrap(), 7);
        assert_eq!(b.front(), Front::Oversize(0x7fff_ffff));
        assert_eq!(b.spare().len(), READ_BUFFER - 7);
        assert_eq!(b.discard(100), 7);
        assert_eq!(b.front(), Front::Partial);
    }

    #[test]
    fn a_frame_larger_than_the_buffer_grows_it_to_fit() {
        let body = vec![7u8; READ_BUFFER * 2];
        let bytes = frame(&body);
        let mut b = FrameBuffer::new(body.len());
        let mut r = &bytes[..];
        while b.front() == Front::Partial {
            assert!(b.read_from(&mut r).unwrap() > 0);
        }
        assert_eq!(b.front(), Front::Whole(&body[..]));
    }
}
