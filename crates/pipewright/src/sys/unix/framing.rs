//! Message mode over a Unix stream socket: each message is a 4-byte little-endian length
//! followed by the payload. A zero-length frame means "no more messages" (like Windows'
//! zero-byte message); the write side's shutdown gives the same end of stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of the length prefix.
pub(crate) const HEADER_LEN: usize = 4;

/// Reading state of the current frame.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    header: [u8; HEADER_LEN],
    header_have: usize,
    /// Bytes of the current frame's payload not yet read; `None` between frames.
    remaining: Option<usize>,
    eof: bool,
}

impl FrameReader {
    /// Reads up to the current frame's end into `buf`. Returns with nothing filled at the end
    /// of messages.
    pub(crate) fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match self.remaining {
                None => {
                    if ready!(self.poll_header(io, max, cx))?.is_none() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Some(0) => {
                    self.remaining = None;
                }
                Some(left) => {
                    let want = left.min(buf.remaining());
                    let mut dst = ReadBuf::new(buf.initialize_unfilled_to(want));
                    ready!(Pin::new(&mut *io).poll_read(cx, &mut dst))?;
                    let got = dst.filled().len();
                    if got == 0 {
                        return Poll::Ready(Err(truncated()));
                    }
                    buf.advance(got);
                    let left = left - got;
                    self.remaining = if left == 0 { None } else { Some(left) };
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    /// Reads the next frame header. `Ok(None)` is the end of messages.
    pub(crate) fn poll_header<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<usize>>> {
        if self.eof {
            return Poll::Ready(Ok(None));
        }
        if let Some(left) = self.remaining {
            return Poll::Ready(Ok(Some(left)));
        }
        while self.header_have < HEADER_LEN {
            let mut rb = ReadBuf::new(&mut self.header[self.header_have..]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
            let got = rb.filled().len();
            if got == 0 {
                if self.header_have == 0 {
                    self.eof = true;
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(truncated()));
            }
            self.header_have += got;
        }
        self.header_have = 0;
        let len = u32::from_le_bytes(self.header) as usize;
        if len == 0 {
            self.eof = true;
            return Poll::Ready(Ok(None));
        }
        if len > max {
            return Poll::Ready(Err(too_large(len, max)));
        }
        self.remaining = Some(len);
        Poll::Ready(Ok(Some(len)))
    }
}

/// Encodes frames into a pending buffer and drains it into the socket.
#[derive(Debug, Default)]
pub(crate) struct FrameWriter {
    pending: Vec<u8>,
    written: usize,
}

impl FrameWriter {
    /// Queues `msg` as one frame once the previous one has drained.
    pub(crate) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        max: usize,
        cx: &mut Context<'_>,
        msg: &[u8],
    ) -> Poll<io::Result<usize>> {
        if msg.len() > max {
            return Poll::Ready(Err(too_large(msg.len(), max)));
        }
        ready!(self.poll_drain(io, cx))?;
        self.pending.clear();
        self.written = 0;
        self.pending
            .extend_from_slice(&(msg.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(msg);
        // Start sending now; the rest drains on the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(msg.len()))
    }

    /// Writes out whatever is queued.
    pub(crate) fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed in the middle of a message",
    )
}

pub(crate) fn too_large(len: usize, max: usize) -> io::Error {
    crate::Error::message_too_large(len, max)
}
