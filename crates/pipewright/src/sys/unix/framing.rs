//! Message mode over a Unix stream socket: each message is a 4-byte little-endian length
//! followed by the payload. A zero-length frame is the orderly end of messages (like Windows'
//! zero-byte message); the socket's end of stream without it means the peer went away.
//!
//! Reading is cancel-safe: the header bytes and the part of a message body read so far live
//! in the [`FrameReader`], so a `recv_message` dropped at any await point loses nothing and
//! the next call continues the same message.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, ErrorKind};

/// Bytes of the length prefix.
pub(crate) const HEADER_LEN: usize = 4;

/// Largest first allocation for a message body; the rest grows as bytes arrive, so a peer
/// announcing a large message and sending nothing costs nothing.
const FIRST_BODY_ALLOC: usize = 64 * 1024;

/// How the stream of messages ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer sent the zero-length frame.
    Orderly,
    /// The socket ended (or was reset) without it.
    Vanished,
    /// The socket ended inside a frame.
    Truncated,
}

/// Reading state of the current frame.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    header: [u8; HEADER_LEN],
    header_have: usize,
    /// Bytes of the current frame's payload not yet read from the socket; `None` between
    /// frames.
    remaining: Option<usize>,
    /// The current frame's payload read so far by `poll_message` (kept across cancellation).
    body: Vec<u8>,
    /// Bytes of `body` already handed out by `poll_read` (only after a `recv_message` was
    /// cancelled and the caller switched to `AsyncRead`).
    body_pos: usize,
    end: Option<End>,
}

impl FrameReader {
    /// Receives one whole message; `Ok(None)` at the orderly end. Cancel-safe.
    pub(crate) fn poll_message<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Vec<u8>>>> {
        if self.body_pos > 0 {
            // `poll_read` handed out the start of this message: drop that part.
            self.body.drain(..self.body_pos);
            self.body_pos = 0;
        }
        let left = match self.remaining {
            Some(left) => left,
            None => match ready!(self.poll_header(io, max, cx))? {
                None => return Poll::Ready(Ok(None)),
                Some(len) => {
                    self.body = Vec::with_capacity(len.min(FIRST_BODY_ALLOC));
                    len
                }
            },
        };
        let mut left = left;
        while left > 0 {
            if self.body.capacity() == self.body.len() {
                // Double, but never past the announced length.
                let grow = self.body.len().max(FIRST_BODY_ALLOC).min(left);
                self.body.reserve_exact(grow);
            }
            let spare = self.body.capacity() - self.body.len();
            let want = spare.min(left);
            let mut dst = ReadBuf::uninit(&mut self.body.spare_capacity_mut()[..want]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut dst))?;
            let got = dst.filled().len();
            if got == 0 {
                return Poll::Ready(Err(self.ended(End::Truncated)));
            }
            // SAFETY: `poll_read` initialised the first `got` bytes of the spare capacity
            // (ReadBuf's filled part), and `got <= want <= spare`.
            unsafe { self.body.set_len(self.body.len() + got) };
            left -= got;
            self.remaining = Some(left);
        }
        self.remaining = None;
        Poll::Ready(Ok(Some(std::mem::take(&mut self.body))))
    }

    /// Reads up to the current frame's end into `buf`. Returns with nothing filled at the
    /// orderly end of messages.
    pub(crate) fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if self.body_pos < self.body.len() {
            // The start of a message that a cancelled `recv_message` had read.
            let n = (self.body.len() - self.body_pos).min(buf.remaining());
            buf.put_slice(&self.body[self.body_pos..self.body_pos + n]);
            self.body_pos += n;
            if self.body_pos == self.body.len() {
                self.body = Vec::new();
                self.body_pos = 0;
                if self.remaining == Some(0) {
                    self.remaining = None;
                }
            }
            return Poll::Ready(Ok(()));
        }
        loop {
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
                        return Poll::Ready(Err(self.ended(End::Truncated)));
                    }
                    buf.advance(got);
                    let left = left - got;
                    self.remaining = if left == 0 { None } else { Some(left) };
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    /// Reads the next frame header. `Ok(None)` is the orderly end of messages.
    fn poll_header<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<usize>>> {
        match self.end {
            Some(End::Orderly) => return Poll::Ready(Ok(None)),
            Some(end) => return Poll::Ready(Err(end_error(end))),
            None => {}
        }
        while self.header_have < HEADER_LEN {
            let mut rb = ReadBuf::new(&mut self.header[self.header_have..]);
            match ready!(Pin::new(&mut *io).poll_read(cx, &mut rb)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                    return Poll::Ready(Err(self.ended(End::Vanished)));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            let got = rb.filled().len();
            if got == 0 {
                let end = if self.header_have == 0 {
                    End::Vanished
                } else {
                    End::Truncated
                };
                return Poll::Ready(Err(self.ended(end)));
            }
            self.header_have += got;
        }
        self.header_have = 0;
        let len = u32::from_le_bytes(self.header) as usize;
        if len == 0 {
            self.end = Some(End::Orderly);
            return Poll::Ready(Ok(None));
        }
        if len > max {
            return Poll::Ready(Err(too_large(len, max)));
        }
        self.remaining = Some(len);
        Poll::Ready(Ok(Some(len)))
    }

    fn ended(&mut self, end: End) -> io::Error {
        self.end = Some(end);
        end_error(end)
    }
}

fn end_error(end: End) -> io::Error {
    let detail = match end {
        End::Orderly => "the peer ended the stream",
        End::Vanished => {
            "the peer went away without closing (no end-of-stream frame: it was killed, or it is not a pipewright peer)"
        }
        End::Truncated => "the peer went away in the middle of a message",
    };
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        Error::new(ErrorKind::Disconnected, detail),
    )
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
        self.queue(msg);
        // Start sending now; the rest drains on the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(msg.len()))
    }

    /// Queues one frame (the previous one must have drained). An empty `msg` is the
    /// end-of-stream frame.
    pub(crate) fn queue(&mut self, msg: &[u8]) {
        debug_assert!(self.is_drained());
        // A big frame's buffer is not kept for the small ones after it.
        if self.pending.capacity() > FIRST_BODY_ALLOC && msg.len() + HEADER_LEN <= FIRST_BODY_ALLOC
        {
            self.pending = Vec::new();
        }
        self.pending.clear();
        self.written = 0;
        self.pending
            .extend_from_slice(&(msg.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(msg);
    }

    /// Whether everything queued has been written.
    pub(crate) fn is_drained(&self) -> bool {
        self.written == self.pending.len()
    }

    /// The queued bytes not yet written.
    pub(crate) fn unwritten(&self) -> &[u8] {
        &self.pending[self.written..]
    }

    /// Records that `n` more queued bytes were written outside `poll_drain`.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.written = (self.written + n).min(self.pending.len());
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

pub(crate) fn too_large(len: usize, max: usize) -> io::Error {
    crate::Error::message_too_large(len, max)
}
