//! The Windows stream: its own overlapped I/O with large buffers and several operations in
//! flight, exposed as `AsyncRead + AsyncWrite`.
//!
//! Reads: up to [`READS_IN_FLIGHT`] `ReadFile` calls are outstanding at once, each into a
//! buffer that starts at 16 KiB and doubles whenever a read fills it, up to the configured
//! `io_buffer_size`, and halves again after a run of reads that fill less than a quarter of
//! it. Buffers are not zero-filled: the kernel writes into reserved capacity and the length
//! is set to what it reports. Completed reads are consumed strictly in the order they were
//! issued. A message smaller than 64 KiB (or a quarter of its buffer) is copied out so the
//! buffer is kept; a larger one is handed over without copying.
//! Writes: each `poll_write` copies up to `io_buffer_size` bytes (a whole message in message
//! mode) into an operation's buffer, issues the `WriteFile` at once and returns. Writes stay
//! outstanding while they total at most `io_buffer_size` bytes (at least [`WRITES_IN_FLIGHT`]
//! of any size, at most [`MAX_WRITES_IN_FLIGHT`]), so small writes keep the pipe as full as
//! large ones without holding any data back; `poll_flush` waits for all of them. Write buffers
//! that grew past 64 KiB shrink back once small writes follow.
//!
//! # Ending a stream
//! A write that returned `Ok(n)` has handed `n` bytes to the kernel, but the peer may not have
//! read them yet; the stream never throws them away while its linger limit
//! (`StreamConfig::linger`, default 30 s) runs:
//! - **Drop** cancels only the reads and hands the handle and the outstanding writes to the
//!   completion thread's lingering set (`linger.rs`): the handle stays open until the last
//!   write completes, then a message pipe gets the zero-byte end-of-stream message, then the
//!   handle is closed and the listener's `on_close` runs. It never blocks the dropping thread
//!   and needs no runtime. Past the linger limit the writes are cancelled and the handle closed.
//! - **`close_write`** (message mode; `send_message(&[])` is the same) waits for our own
//!   writes, then sends the zero-byte message; reading continues, later writes fail with
//!   `Closed`. A byte pipe has no half-close: `Unsupported`.
//! - **`shutdown`** on a message pipe is `close_write`. On a byte pipe it waits for our own
//!   writes only (never `FlushFileBuffers`, never `DisconnectNamedPipe`, no blocking thread),
//!   then closes the handle: the peer still reads everything already in the pipe, then end
//!   of stream.
//! - Both waits are bounded by the linger limit: past it the writes are cancelled, the handle
//!   is closed and the call fails with `TimedOut`.
//! - Reading: in message mode the zero-byte message is the orderly end (`Ok(None)`, or 0 bytes
//!   from `AsyncRead`); a broken pipe without it means the peer vanished (killed, or a foreign
//!   peer) and is `Disconnected`. In byte mode both are a clean end of stream.

use std::collections::VecDeque;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_OPERATION_ABORTED,
    ERROR_PIPE_NOT_CONNECTED, HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};

use super::interrupt::Interrupt;
use super::iocp::{skip_port_on_success, win32_result, Op, Status};
use super::linger::{self, Deadline, Linger, SendHandle};
use super::pipe::{self, raw};
use super::security::process_user_sid;
use crate::error::{Error, ErrorKind, Result};
use crate::options::{PipeMode, StreamConfig};
use crate::peer::{Peer, PeerUser};

/// Reads outstanding at once.
pub(crate) const READS_IN_FLIGHT: usize = 2;
/// Writes that may be outstanding whatever their size.
pub(crate) const WRITES_IN_FLIGHT: usize = 2;
/// Most writes outstanding at once (small writes, while their total fits `io_buffer_size`).
pub(crate) const MAX_WRITES_IN_FLIGHT: usize = 16;
/// Size of the first read buffer; it doubles while reads fill it.
const FIRST_READ_SIZE: usize = 16 * 1024;
/// Messages below this size are copied out of the read buffer, which is kept.
const COPY_BELOW: usize = 64 * 1024;
/// Reads in a row that fill less than a quarter of the read size before it halves.
const SHRINK_AFTER: u32 = 4;
/// Write buffers above this capacity shrink back to it once small writes follow.
const WRITE_KEEP: usize = 64 * 1024;

/// Text of the error a message-mode read gives when the peer vanished.
const VANISHED: &str = "receive: the peer went away without closing (no end-of-stream message): \
it was killed or crashed, or is not a pipewright peer; treat the last exchange as incomplete";

/// Text of the error of a blocking stream after its interrupter was used.
const STOPPED: &str = "the blocking stream was interrupted (Interrupter::interrupt); drop it";

/// The handle and what is known about it.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) handle: OwnedHandle,
    pub(crate) server: bool,
    pub(crate) path: String,
    /// Operations that finish at once complete in place, without a packet
    /// ([`skip_port_on_success`]).
    pub(crate) skips_port: bool,
}

/// An outstanding read and the size it was issued with.
#[derive(Debug)]
struct Read {
    op: Arc<Op>,
    size: usize,
}

/// A completed read being consumed.
#[derive(Debug)]
struct Chunk {
    op: Arc<Op>,
    pos: usize,
    len: usize,
    /// The message continues in the next read (`ERROR_MORE_DATA`).
    more: bool,
}

#[derive(Debug)]
enum ReadEnd {
    Open,
    Eof,
    Failed(ErrorKind, String),
}

/// Our direction of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    Open,
    /// `close_write` sent the zero-byte message; reading continues.
    HalfClosed,
    /// `shutdown` finished (byte pipes: the handle is closed).
    ShutDown,
}

/// A bounded wait for our writes (and the zero-byte message) in progress.
#[derive(Debug)]
struct Ending {
    deadline: Deadline,
    zero: Option<Arc<Op>>,
}

/// A stream whose reads block the calling thread ([`Stream::make_blocking`]).
#[derive(Debug)]
struct BlockingReads {
    interrupt: Arc<Interrupt>,
    timeout: Option<Duration>,
}

/// Called when a server stream goes away, so the listener can top up its instances.
pub(crate) type OnClose = Box<dyn FnOnce() + Send + Sync>;

pub(crate) struct Stream {
    /// `None` once the handle is closed (byte-pipe shutdown, or the linger limit passed).
    pipe: Option<Arc<Pipe>>,
    /// The pipe's path and end, kept for errors and queries after the handle is closed.
    path: String,
    server: bool,
    config: StreamConfig,
    reads: VecDeque<Read>,
    spare_reads: Vec<Arc<Op>>,
    current: Option<Chunk>,
    read_size: usize,
    /// Reads in a row that filled less than a quarter of `read_size`.
    small_reads: u32,
    read_end: ReadEnd,
    message: Vec<u8>,
    writes: VecDeque<Arc<Op>>,
    /// Bytes in the outstanding writes.
    writing: usize,
    spare_writes: Vec<Arc<Op>>,
    /// Some write buffer may have grown past [`WRITE_KEEP`].
    large_write_bufs: bool,
    write_error: Option<i32>,
    write_state: WriteState,
    ending: Option<Ending>,
    on_close: Option<OnClose>,
    /// Reads complete through their own events, waited for on the reading thread.
    blocking: Option<BlockingReads>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("pipe", &self.pipe)
            .field("mode", &self.config.mode)
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .field("read_end", &self.read_end)
            .field("write_state", &self.write_state)
            .finish()
    }
}

fn is_closed_code(code: u32) -> bool {
    matches!(
        code,
        ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED | ERROR_NO_DATA
    )
}

fn os_error(code: u32) -> io::Error {
    io::Error::from_raw_os_error(code as i32)
}

fn deadline_after(limit: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

impl Stream {
    pub(crate) fn new(
        handle: OwnedHandle,
        config: StreamConfig,
        server: bool,
        path: String,
        on_close: Option<OnClose>,
    ) -> Self {
        let read_size = FIRST_READ_SIZE.min(config.io_buffer_size);
        // Connected, nothing in flight: from here a read or write that finishes at once
        // costs no packet, no completion-thread wake-up and no task wake-up.
        let skips_port = skip_port_on_success(raw(&handle));
        Stream {
            pipe: Some(Arc::new(Pipe {
                handle,
                server,
                path: path.clone(),
                skips_port,
            })),
            path,
            server,
            config,
            reads: VecDeque::new(),
            spare_reads: Vec::new(),
            current: None,
            read_size,
            small_reads: 0,
            read_end: ReadEnd::Open,
            message: Vec::new(),
            writes: VecDeque::new(),
            writing: 0,
            spare_writes: Vec::new(),
            large_write_bufs: false,
            write_error: None,
            write_state: WriteState::Open,
            ending: None,
            on_close,
            blocking: None,
        }
    }

    fn pipe(&self) -> io::Result<&Arc<Pipe>> {
        self.pipe.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the pipe was shut down and closed",
            )
        })
    }

    fn path(&self) -> String {
        self.path.clone()
    }

    pub(crate) fn mode(&self) -> PipeMode {
        self.config.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    pub(crate) fn peer(&self) -> Result<Peer> {
        let pipe = self.pipe().map_err(Error::from)?;
        let pid = if pipe.server {
            pipe::client_pid(&pipe.handle)
        } else {
            pipe::server_pid(&pipe.handle)
        }
        .map_err(|e| Error::from_io(e, &pipe.path, "read peer process id"))?;
        let user = process_user_sid(pid).ok().map(PeerUser::Sid);
        Ok(Peer {
            pid: Some(pid),
            user,
        })
    }

    // ----- reading -----

    fn start_reads(&mut self) {
        let Some(pipe) = self.pipe.clone() else {
            return;
        };
        // A blocking reader asks for data when it needs it, as a plain blocking program does.
        let in_flight = if self.blocking.is_some() {
            1
        } else {
            READS_IN_FLIGHT
        };
        while self.reads.len() < in_flight && matches!(self.read_end, ReadEnd::Open) {
            let op = self.spare_reads.pop().unwrap_or_else(Op::new);
            let size = self.read_size;
            op.with_buf(|b| {
                b.clear();
                if b.capacity() > 2 * size {
                    // Reads got small again: give the big buffer back.
                    b.shrink_to(size);
                }
                // Capacity only: the kernel fills it, so it is never zero-filled.
                b.reserve(size);
            });
            let handle = raw(&pipe.handle);
            let read = |buf: &mut Vec<u8>, overlapped| {
                debug_assert!(buf.capacity() >= size);
                // SAFETY: the buffer and OVERLAPPED live in `op`, kept alive by the reference
                // `start` parks until the operation is finished; the buffer has at least
                // `size` bytes of capacity (reserved above), which ReadFile may write; the
                // handle is open and overlapped.
                win32_result(unsafe {
                    ReadFile(
                        handle,
                        buf.as_mut_ptr(),
                        size as u32,
                        std::ptr::null_mut(),
                        overlapped,
                    )
                })
            };
            if self.blocking.is_some() {
                if let Err(e) = op.start_evented(read) {
                    // No event for it: fail this read like a failed ReadFile.
                    tracing::warn!(error = %e, "could not create a read event");
                    self.read_end = ReadEnd::Failed(ErrorKind::Other, format!("receive: {e}"));
                    self.spare_reads.push(op);
                    break;
                }
            } else {
                op.start(pipe.skips_port, read);
            }
            let failed_now = matches!(op.status(), Status::Done { error, .. } if error != 0 && error != ERROR_MORE_DATA);
            self.reads.push_back(Read { op, size });
            if failed_now {
                // The pipe is closed or broken: issuing more reads would fail the same way.
                break;
            }
        }
    }

    /// Grows the read size while reads fill it; halves it after a run of small reads.
    fn note_read(&mut self, bytes: usize, size: usize) {
        if bytes >= size {
            self.small_reads = 0;
            if self.read_size < self.config.io_buffer_size {
                self.read_size = (self.read_size * 2).min(self.config.io_buffer_size);
            }
        } else if bytes < self.read_size / 4 {
            self.small_reads += 1;
            if self.small_reads >= SHRINK_AFTER {
                self.small_reads = 0;
                let floor = FIRST_READ_SIZE.min(self.config.io_buffer_size);
                self.read_size = (self.read_size / 2).max(floor);
            }
        } else {
            self.small_reads = 0;
        }
    }

    /// The next piece of data in issue order; `None` at end of stream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Chunk>>> {
        if let Some(chunk) = self.current.take() {
            return Poll::Ready(Ok(Some(chunk)));
        }
        loop {
            match &self.read_end {
                ReadEnd::Open => {}
                ReadEnd::Eof => return Poll::Ready(Ok(None)),
                ReadEnd::Failed(kind, msg) => {
                    let err = Error::new(*kind, msg.clone()).with_pipe(self.path());
                    return Poll::Ready(Err(io::Error::from(err)));
                }
            }
            if self.pipe.is_none() {
                self.read_end = ReadEnd::Eof;
                continue;
            }
            self.start_reads();
            let Some(front) = self.reads.front() else {
                self.read_end = ReadEnd::Eof;
                continue;
            };
            if let (Some(blocking), Some(pipe)) = (&self.blocking, &self.pipe) {
                let until = blocking.timeout.map(deadline_after);
                let stop = blocking.interrupt.handle();
                front.op.wait_evented(raw(&pipe.handle), stop, until);
            }
            let (error, bytes) = ready!(front.op.poll_done(cx));
            let Read { op, size } = self.reads.pop_front().expect("front exists");
            if error == ERROR_OPERATION_ABORTED && bytes == 0 {
                if let Some(stopped) = self.blocking.as_ref().map(|b| b.interrupt.is_set()) {
                    // Our own wait gave up: nothing was read, nothing is lost.
                    self.recycle_read(op);
                    return Poll::Ready(Err(self.blocking_wait_ended(stopped)));
                }
            }
            if error == 0 || error == ERROR_MORE_DATA {
                let more = error == ERROR_MORE_DATA;
                let bytes = bytes.min(size);
                op.with_buf(|b| {
                    debug_assert!(b.is_empty() && b.capacity() >= size);
                    // SAFETY: `start_reads` issued this ReadFile into the first `size` bytes
                    // of the buffer's capacity; the kernel reports `bytes` (<= size) of them
                    // written, so they are initialised, and the operation is no longer
                    // pending, so nothing writes into the buffer any more.
                    unsafe { b.set_len(bytes) }
                });
                self.note_read(bytes, size);
                return Poll::Ready(Ok(Some(Chunk {
                    op,
                    pos: 0,
                    len: bytes,
                    more,
                })));
            }
            op.reset();
            if is_closed_code(error) {
                self.read_end = match self.config.mode {
                    // Byte pipes: every end is a clean end, as TCP's FIN.
                    PipeMode::Byte => ReadEnd::Eof,
                    // Message pipes: the orderly end is the zero-byte message, consumed
                    // before this; a broken pipe without it means the peer vanished.
                    PipeMode::Message => {
                        ReadEnd::Failed(ErrorKind::Disconnected, VANISHED.to_string())
                    }
                };
                continue;
            }
            return Poll::Ready(Err(os_error(error)));
        }
    }

    /// Takes the reads that were cancelled before they read anything out of line (spare
    /// again); reads that completed keep their data, first in line.
    fn recycle_aborted_reads(&mut self) {
        let (aborted, kept): (Vec<Read>, Vec<Read>) = self.reads.drain(..).partition(|r| {
            matches!(r.op.status(), Status::Done { error, bytes: 0 } if error == ERROR_OPERATION_ABORTED)
        });
        self.reads = kept.into();
        for read in aborted {
            self.recycle_read(read.op);
        }
    }

    fn recycle_read(&mut self, op: Arc<Op>) {
        op.reset();
        self.spare_reads.push(op);
    }

    /// The error of a blocking read whose wait ended without data: interrupted (the stream
    /// is unusable from then on) or timed out (the next read starts afresh).
    fn blocking_wait_ended(&mut self, stopped: bool) -> io::Error {
        if stopped {
            self.read_end = ReadEnd::Failed(ErrorKind::Stopped, STOPPED.to_string());
            return Error::new(ErrorKind::Stopped, STOPPED)
                .with_pipe(self.path())
                .into();
        }
        let limit = self.blocking.as_ref().and_then(|b| b.timeout);
        Error::new(
            ErrorKind::TimedOut,
            format!(
                "receive: nothing arrived within the read timeout of {limit:?}; \
                 the stream is still usable"
            ),
        )
        .with_pipe(self.path())
        .into()
    }

    /// Turns the reads to blocking ones, for a stream whose owner has a thread of its own:
    /// from here a read that has to wait blocks the calling thread on the read's own event
    /// (no completion thread, no task wake-up), until data, the read timeout or
    /// [`Interrupt::interrupt`]. Reads in flight are cancelled first; what they had already
    /// read stays first in line. Writes are unchanged.
    pub(crate) async fn make_blocking(&mut self) -> Result<Arc<Interrupt>> {
        if let Some(b) = &self.blocking {
            return Ok(b.interrupt.clone());
        }
        let interrupt =
            Interrupt::new().map_err(|e| Error::from_stream(e, &self.path, "make blocking"))?;
        if let Some(pipe) = &self.pipe {
            linger::cancel_ops(raw(&pipe.handle), self.reads.iter().map(|r| &r.op));
        }
        for read in &self.reads {
            std::future::poll_fn(|cx| read.op.poll_done(cx)).await;
        }
        self.recycle_aborted_reads();
        // The spare reads' buffers are kept; they get their events when first started.
        self.blocking = Some(BlockingReads {
            interrupt: interrupt.clone(),
            timeout: None,
        });
        Ok(interrupt)
    }

    /// Turns the reads back to the async path ([`make_blocking`](Self::make_blocking)
    /// undone). A blocking read is in flight only while its caller waits, so between calls
    /// there is none; one left over is cancelled and waited for here, and what it had read
    /// stays first in line.
    pub(crate) fn make_async(&mut self) {
        if self.blocking.take().is_none() {
            return;
        }
        if let Some(pipe) = &self.pipe {
            for read in &self.reads {
                read.op.cancel_evented(raw(&pipe.handle));
            }
        }
        self.recycle_aborted_reads();
    }

    /// Writes what the outstanding writes have room for now, without waiting; `WouldBlock`
    /// when they have none.
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.poll_write_data(&mut Context::from_waker(std::task::Waker::noop()), buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// A blocking byte-mode read of at least [`COPY_BELOW`] bytes with nothing buffered:
    /// `ReadFile` straight into `buf`, no copy. `None` when the stream is not in that state
    /// (the caller then takes the buffered path).
    pub(crate) fn read_direct(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let blocking = self.blocking.as_ref()?;
        if self.config.mode != PipeMode::Byte
            || buf.len() < COPY_BELOW
            || self.current.is_some()
            || !self.reads.is_empty()
            || !matches!(self.read_end, ReadEnd::Open)
        {
            return None;
        }
        let handle = raw(&self.pipe.as_ref()?.handle);
        let (stop, until) = (
            blocking.interrupt.handle(),
            blocking.timeout.map(deadline_after),
        );
        let len = buf.len().min(u32::MAX as usize) as u32;
        let ptr = buf.as_mut_ptr();
        let op = self.spare_reads.pop().unwrap_or_else(Op::new);
        let done = op.run_evented(handle, stop, until, |_, overlapped| {
            // SAFETY: `buf` is valid for `len` bytes and outlives the operation: `run_evented`
            // returns only once the kernel is done with it (or has cancelled it and is
            // done), before `buf`'s borrow ends; the handle is open and overlapped.
            win32_result(unsafe { ReadFile(handle, ptr, len, std::ptr::null_mut(), overlapped) })
        });
        self.recycle_read(op);
        let (error, bytes) = match done {
            Ok(done) => done,
            Err(e) => return Some(Err(e)),
        };
        Some(match error {
            0 if bytes > 0 => Ok(bytes),
            0 => {
                self.read_end = ReadEnd::Eof;
                Ok(0)
            }
            ERROR_OPERATION_ABORTED if bytes == 0 => {
                let stopped = self.blocking.as_ref().is_some_and(|b| b.interrupt.is_set());
                Err(self.blocking_wait_ended(stopped))
            }
            e if is_closed_code(e) => {
                self.read_end = ReadEnd::Eof;
                Ok(0)
            }
            e => Err(os_error(e)),
        })
    }

    /// A blocking byte-mode write of at least [`COPY_BELOW`] bytes with no write in flight:
    /// `WriteFile` straight from `data`, waited for on this thread, no copy. `None` when
    /// the stream is not in that state.
    pub(crate) fn write_direct(&mut self, data: &[u8]) -> Option<io::Result<usize>> {
        let blocking = self.blocking.as_ref()?;
        if self.config.mode != PipeMode::Byte
            || data.len() < COPY_BELOW
            || !self.writes.is_empty()
            || self.write_error.is_some()
            || self.write_state != WriteState::Open
        {
            return None;
        }
        let handle = raw(&self.pipe.as_ref()?.handle);
        let stop = blocking.interrupt.handle();
        let len = data.len().min(self.config.io_buffer_size) as u32;
        let op = self.spare_writes.pop().unwrap_or_else(Op::new);
        let done = op.run_evented(handle, stop, None, |_, overlapped| {
            // SAFETY: `data` is valid for `len` bytes and outlives the operation:
            // `run_evented` returns only once the kernel is done with it; the handle is open
            // and overlapped.
            win32_result(unsafe {
                WriteFile(handle, data.as_ptr(), len, std::ptr::null_mut(), overlapped)
            })
        });
        op.reset();
        self.spare_writes.push(op);
        let (error, bytes) = match done {
            Ok(done) => done,
            Err(e) => return Some(Err(e)),
        };
        Some(match error {
            0 => Ok(bytes),
            _ if bytes > 0 => Ok(bytes),
            ERROR_OPERATION_ABORTED => Err(self.blocking_wait_ended(true)),
            e => {
                self.write_error = Some(e as i32);
                Err(os_error(e))
            }
        })
    }

    /// The longest a blocking read waits for data (`None`: no limit).
    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        if let Some(b) = &mut self.blocking {
            b.timeout = timeout;
        }
    }

    /// Cancels the reads in flight (on drop and close): blocking ones are finished here,
    /// the others by their packets.
    fn cancel_reads(&self, handle: HANDLE) {
        if self.blocking.is_some() {
            for read in &self.reads {
                read.op.cancel_evented(handle);
            }
        } else {
            linger::cancel_ops(handle, self.reads.iter().map(|r| &r.op));
        }
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>> {
        let max = self.config.max_message_size;
        loop {
            let Some(chunk) = ready!(self.poll_chunk(cx))? else {
                if self.message.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                self.message.clear();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed in the middle of a message",
                )));
            };
            if chunk.len == 0 && !chunk.more && self.message.is_empty() {
                // A zero-byte message: the peer has no more messages.
                self.recycle_read(chunk.op);
                self.read_end = ReadEnd::Eof;
                return Poll::Ready(Ok(None));
            }
            let part = chunk.len - chunk.pos;
            if self.message.len() + part > max {
                let size = self.message.len() + part;
                self.message = Vec::new();
                self.recycle_read(chunk.op);
                let msg = format!(
                    "a message of more than {size} bytes exceeds the limit of {max}; raise max_message_size"
                );
                self.read_end = ReadEnd::Failed(ErrorKind::MessageTooLarge, msg.clone());
                return Poll::Ready(Err(io::Error::from(Error::new(
                    ErrorKind::MessageTooLarge,
                    msg,
                ))));
            }
            if self.config.mode == PipeMode::Message
                && self.message.is_empty()
                && chunk.pos == 0
                && !chunk.more
            {
                // The whole message is in one buffer: copy a small one out and keep the
                // buffer; hand a large one over (its buffer is at most 4 times its size).
                let msg = chunk
                    .op
                    .with_buf(|b| {
                        if chunk.len < COPY_BELOW || chunk.len < b.capacity() / 4 {
                            b[..chunk.len].to_vec()
                        } else {
                            let mut taken = std::mem::take(b);
                            taken.truncate(chunk.len);
                            taken
                        }
                    })
                    .unwrap_or_default();
                self.recycle_read(chunk.op);
                return Poll::Ready(Ok(Some(msg)));
            }
            chunk
                .op
                .with_buf(|b| self.message.extend_from_slice(&b[chunk.pos..chunk.len]));
            let more = chunk.more && self.config.mode == PipeMode::Message;
            self.recycle_read(chunk.op);
            if !more {
                return Poll::Ready(Ok(Some(std::mem::take(&mut self.message))));
            }
        }
    }

    pub(crate) async fn recv_message(&mut self) -> Result<Option<Vec<u8>>> {
        let path = self.path();
        std::future::poll_fn(|cx| self.poll_message(cx))
            .await
            .map_err(|e| Error::from_stream(e, &path, "receive"))
    }

    // ----- writing -----

    /// Takes finished writes off the front; the first failure becomes sticky.
    fn reap_writes(&mut self) -> io::Result<()> {
        let mut small_done = false;
        while let Some(front) = self.writes.front() {
            let Status::Done { error, bytes } = front.status() else {
                break;
            };
            let op = self.writes.pop_front().expect("front exists");
            let wanted = op.with_buf(|b| b.len()).unwrap_or(0);
            self.writing = self.writing.saturating_sub(wanted);
            small_done |= wanted < WRITE_KEEP;
            op.reset();
            self.spare_writes.push(op);
            if error != 0 {
                self.write_error = Some(error as i32);
            } else if bytes != wanted {
                self.write_error = Some(ERROR_NO_DATA as i32);
            }
        }
        if small_done && self.large_write_bufs {
            self.trim_write_buffers();
        }
        self.check_write_error()
    }

    /// Small writes follow large ones: give the large write buffers back.
    fn trim_write_buffers(&mut self) {
        self.spare_writes.truncate(WRITES_IN_FLIGHT);
        for op in &self.spare_writes {
            op.with_buf(|b| {
                if b.capacity() > WRITE_KEEP {
                    b.clear();
                    b.shrink_to(WRITE_KEEP);
                }
            });
        }
        // Writes still in flight may be large ones; look again when they are reaped.
        self.large_write_bufs = self.writing > WRITE_KEEP;
    }

    fn check_write_error(&self) -> io::Result<()> {
        match self.write_error {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(()),
        }
    }

    /// Waits until `limit` or fewer writes are outstanding.
    fn poll_writes_below(&mut self, cx: &mut Context<'_>, limit: usize) -> Poll<io::Result<()>> {
        loop {
            self.reap_writes()?;
            if self.writes.len() <= limit {
                return Poll::Ready(Ok(()));
            }
            let front = self.writes.front().expect("more than limit outstanding");
            ready!(front.poll_done(cx));
        }
    }

    /// Waits until a write of `len` more bytes may be issued: fewer than
    /// [`WRITES_IN_FLIGHT`] are outstanding, or fewer than [`MAX_WRITES_IN_FLIGHT`] and the
    /// bytes outstanding stay within `io_buffer_size`.
    fn poll_room_for(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        loop {
            self.reap_writes()?;
            let n = self.writes.len();
            if n < WRITES_IN_FLIGHT
                || (n < MAX_WRITES_IN_FLIGHT && self.writing + len <= self.config.io_buffer_size)
            {
                return Poll::Ready(Ok(()));
            }
            let front = self.writes.front().expect("writes outstanding");
            ready!(front.poll_done(cx));
        }
    }

    /// Starts one write of `data` (may be empty: a zero-byte message).
    fn start_write(&mut self, data: &[u8]) -> io::Result<Arc<Op>> {
        let pipe = self.pipe()?.clone();
        let op = self.spare_writes.pop().unwrap_or_else(Op::new);
        op.with_buf(|b| {
            b.clear();
            b.extend_from_slice(data);
        });
        if data.len() > WRITE_KEEP {
            self.large_write_bufs = true;
        }
        linger::start_write(raw(&pipe.handle), pipe.skips_port, &op);
        if let Status::Done { error, .. } = op.status() {
            if error != 0 {
                op.reset();
                self.spare_writes.push(op);
                return Err(os_error(error));
            }
        }
        Ok(op)
    }

    /// The error for a write after our direction was ended.
    fn closed_for_writes(&self) -> Option<io::Error> {
        let detail = match self.write_state {
            WriteState::Open => return None,
            WriteState::HalfClosed => {
                "send: the write half was closed with close_write; no more messages can be sent"
            }
            WriteState::ShutDown => "send: the stream was shut down; no more data can be sent",
        };
        let err = Error::new(ErrorKind::Closed, detail).with_pipe(self.path());
        Some(io::Error::from(err))
    }

    fn poll_write_data(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(err) = self.closed_for_writes() {
            return Poll::Ready(Err(err));
        }
        let n = match self.config.mode {
            PipeMode::Byte => buf.len().min(self.config.io_buffer_size),
            PipeMode::Message => {
                if buf.len() > self.config.max_message_size {
                    return Poll::Ready(Err(Error::message_too_large(
                        buf.len(),
                        self.config.max_message_size,
                    )));
                }
                buf.len()
            }
        };
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll_room_for(cx, n))?;
        let op = self.start_write(&buf[..n])?;
        self.writes.push_back(op);
        self.writing += n;
        Poll::Ready(Ok(n))
    }

    /// Sends one message and waits until it is written. An empty message in message mode is
    /// exactly [`close_write`](Self::close_write); in byte mode it sends nothing (a byte
    /// pipe has no boundaries) and only waits for the outstanding writes.
    pub(crate) async fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        if msg.is_empty() && self.config.mode == PipeMode::Message {
            return self.close_write().await;
        }
        let path = self.path();
        let result = async {
            let mut sent = 0;
            while sent < msg.len() {
                sent += std::future::poll_fn(|cx| self.poll_write_data(cx, &msg[sent..])).await?;
            }
            if msg.is_empty() {
                if let Some(err) = self.closed_for_writes() {
                    return Err(err);
                }
            }
            std::future::poll_fn(|cx| self.poll_writes_below(cx, 0)).await
        }
        .await;
        result.map_err(|e| Error::from_stream(e, &path, "send"))
    }

    // ----- ending -----

    /// Waits for our outstanding writes and, if `zero`, then sends the zero-byte message; all
    /// bounded by the linger limit (past it: writes cancelled, handle closed, `TimedOut`).
    fn poll_drain(&mut self, cx: &mut Context<'_>, zero: bool) -> Poll<io::Result<()>> {
        if self.pipe.is_none() {
            return Poll::Ready(Ok(()));
        }
        if self.ending.is_none() {
            self.ending = Some(Ending {
                deadline: Deadline::after(self.config.linger),
                zero: None,
            });
        }
        loop {
            if let Err(e) = self.reap_writes() {
                self.ending = None;
                return Poll::Ready(Err(e));
            }
            if let Some(front) = self.writes.front() {
                if front.poll_done(cx).is_ready() {
                    continue;
                }
                return self.poll_linger(cx);
            }
            if !zero {
                self.ending = None;
                return Poll::Ready(Ok(()));
            }
            match self.ending.as_ref().and_then(|e| e.zero.clone()) {
                None => match self.start_write(&[]) {
                    Ok(op) => {
                        if let Some(e) = self.ending.as_mut() {
                            e.zero = Some(op);
                        }
                    }
                    Err(e) => {
                        self.ending = None;
                        // The peer is gone already: nothing is left to deliver.
                        if e.raw_os_error().is_some_and(|c| is_closed_code(c as u32)) {
                            return Poll::Ready(Ok(()));
                        }
                        return Poll::Ready(Err(e));
                    }
                },
                Some(op) => {
                    if let Poll::Ready((error, _)) = op.poll_done(cx) {
                        self.ending = None;
                        op.reset();
                        self.spare_writes.push(op);
                        if error != 0 && !is_closed_code(error) {
                            return Poll::Ready(Err(os_error(error)));
                        }
                        return Poll::Ready(Ok(()));
                    }
                    return self.poll_linger(cx);
                }
            }
        }
    }

    /// Pending until the linger deadline; past it cancels the writes, closes and fails.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let expired = self
            .ending
            .as_ref()
            .is_some_and(|e| e.deadline.poll_expired(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        let path = self.path();
        let unsent = self.writing;
        self.close_now(true);
        self.write_state = WriteState::ShutDown;
        let err = Error::new(
            ErrorKind::TimedOut,
            format!(
                "the peer did not take the last {unsent} bytes written within the linger limit of {:?}; \
                 they were discarded and the pipe was closed; make the peer read, or raise linger \
                 (ListenerOptions::linger, ConnectOptions::linger)",
                self.config.linger
            ),
        )
        .with_pipe(path);
        Poll::Ready(Err(io::Error::from(err)))
    }

    /// Closes the handle now: cancels the reads (and the writes if `cancel_writes`), closes,
    /// and lets the listener know.
    fn close_now(&mut self, cancel_writes: bool) {
        if let Some(pipe) = self.pipe.take() {
            let handle = raw(&pipe.handle);
            self.cancel_reads(handle);
            if cancel_writes {
                linger::cancel_ops(handle, self.writes.iter());
                if let Some(zero) = self.ending.as_ref().and_then(|e| e.zero.as_ref()) {
                    zero.cancel(handle);
                }
            }
            // Each cancelled operation's packet frees its block later.
            drop(pipe);
        }
        self.ending = None;
        self.reads.clear();
        self.current = None;
        self.writes.clear();
        self.writing = 0;
        if let Some(on_close) = self.on_close.take() {
            on_close();
        }
    }

    /// Ends our direction and keeps reading (message mode): waits for our outstanding
    /// writes, then sends the zero-byte end-of-stream message, bounded by the linger limit.
    /// Later writes fail with [`ErrorKind::Closed`]; calling it again does nothing. A byte
    /// pipe has no half-close: [`ErrorKind::Unsupported`].
    pub(crate) fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.config.mode == PipeMode::Byte {
            let err = Error::new(
                ErrorKind::Unsupported,
                "close_write: a Windows byte pipe has no half-close; use message mode on both \
                 ends, or shutdown() to end the whole connection once our writes are done",
            )
            .with_pipe(self.path());
            return Poll::Ready(Err(io::Error::from(err)));
        }
        if self.write_state != WriteState::Open {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_drain(cx, true))?;
        if self.write_state == WriteState::Open {
            self.write_state = WriteState::HalfClosed;
        }
        Poll::Ready(Ok(()))
    }

    /// [`poll_close_write`](Self::poll_close_write) as a future.
    pub(crate) async fn close_write(&mut self) -> Result<()> {
        let path = self.path();
        std::future::poll_fn(|cx| self.poll_close_write(cx))
            .await
            .map_err(|e| Error::from_stream(e, &path, "close_write"))
    }

    fn poll_shutdown_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_state == WriteState::ShutDown {
            return Poll::Ready(Ok(()));
        }
        match self.config.mode {
            PipeMode::Message => {
                ready!(self.poll_close_write(cx))?;
            }
            PipeMode::Byte => {
                ready!(self.poll_drain(cx, false))?;
                // Our writes are in the pipe: close our end. The peer reads what is left
                // in the pipe, then end of stream (no DisconnectNamedPipe: that discards).
                self.close_now(false);
            }
        }
        self.write_state = WriteState::ShutDown;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let Some(mut chunk) = ready!(this.poll_chunk(cx))? else {
                return Poll::Ready(Ok(()));
            };
            if chunk.len == 0 {
                this.recycle_read(chunk.op);
                if this.config.mode == PipeMode::Message || !chunk.more {
                    // A zero-byte message or read: end of stream.
                    this.read_end = ReadEnd::Eof;
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let n = (chunk.len - chunk.pos).min(buf.remaining());
            chunk
                .op
                .with_buf(|b| buf.put_slice(&b[chunk.pos..chunk.pos + n]));
            chunk.pos += n;
            if chunk.pos < chunk.len {
                this.current = Some(chunk);
            } else {
                this.recycle_read(chunk.op);
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_data(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_writes_below(cx, 0)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_shutdown_inner(cx)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let on_close = self.on_close.take();
        let Some(pipe) = self.pipe.take() else {
            if let Some(on_close) = on_close {
                on_close();
            }
            return;
        };
        let handle = raw(&pipe.handle);
        // Only the reads are cancelled; each cancelled read's packet frees its block.
        self.cancel_reads(handle);
        let _ = self.reap_writes();
        let mut writes: Vec<Arc<Op>> = self.writes.drain(..).collect();
        let zero_started = match self.ending.take().and_then(|e| e.zero) {
            Some(zero) => {
                writes.push(zero);
                true
            }
            None => false,
        };
        if self.write_error.is_some() {
            // The pipe is broken: what is still queued cannot be delivered.
            linger::cancel_ops(handle, writes.iter());
            writes.clear();
        }
        let zero_message = self.config.mode == PipeMode::Message
            && self.write_state == WriteState::Open
            && self.write_error.is_none()
            && !zero_started;
        let pending = writes.iter().any(|op| op.status() == Status::Pending);
        let mut zero_message = zero_message;
        if !pending && zero_message {
            // Nothing else in flight: the zero-byte message nearly always fits in the pipe at
            // once, and then the handle is closed before drop returns, so the instance is
            // gone at once (a server restarting in the same process can bind the name again).
            // Its packet, if the handle does not skip the port, still comes and frees it.
            let zero = Op::new();
            let sent_now = linger::start_write(handle, pipe.skips_port, &zero);
            let failed_now = matches!(zero.status(), Status::Done { error, .. } if error != 0);
            if !(sent_now || failed_now) {
                writes.push(zero);
            }
            zero_message = false;
        }
        if !writes.iter().any(|op| op.status() == Status::Pending) && !zero_message {
            drop(pipe);
            if let Some(on_close) = on_close {
                on_close();
            }
            return;
        }
        // Keep the handle open until the writes are done (and the zero-byte message is
        // sent), on the completion thread, bounded by the linger limit.
        linger::hand_over(Linger {
            handle: SendHandle(handle),
            skips_port: pipe.skips_port,
            keep: Box::new(pipe),
            writes,
            zero_message,
            deadline: deadline_after(self.config.linger),
            on_close,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::PipeName;
    use crate::options::{ConnectOptions, ListenerOptions};

    /// One 16 MiB message, then many small ones: the read size and the buffers shrink back,
    /// and small messages are copied out of the read buffer instead of taking it.
    #[test]
    fn buffers_shrink_after_one_big_message() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let name = PipeName::parse(&format!("pw-unit-shrink-{}", std::process::id())).unwrap();
            let lopts = ListenerOptions::new().mode(PipeMode::Message);
            let listener = crate::sys::Listener::bind(&name, &lopts).unwrap();
            let copts = ConnectOptions::new().mode(PipeMode::Message);
            let mut client = crate::sys::connect_once(&name, &copts).await.unwrap();
            let mut server = listener.accept().await.unwrap();
            let big = vec![5u8; 16 * 1024 * 1024];
            let small = [9u8; 100];
            let send = async {
                client.send_message(&big).await.unwrap();
                for _ in 0..200 {
                    client.send_message(&small).await.unwrap();
                }
            };
            let recv = async {
                let m = server.recv_message().await.unwrap().unwrap();
                assert_eq!(m.len(), big.len());
                assert_eq!(server.read_size, server.config.io_buffer_size, "reads grew");
                for _ in 0..200 {
                    let m = server.recv_message().await.unwrap().unwrap();
                    assert_eq!(m, small);
                    assert!(
                        m.capacity() < COPY_BELOW,
                        "a small message took a big buffer"
                    );
                }
            };
            tokio::join!(send, recv);
            assert_eq!(
                server.read_size, FIRST_READ_SIZE,
                "the read size shrank back"
            );
            for op in &server.spare_reads {
                let cap = op.with_buf(|b| b.capacity()).unwrap();
                assert!(
                    cap <= 4 * FIRST_READ_SIZE,
                    "a spare read buffer kept {cap} bytes"
                );
            }
            assert!(client.spare_writes.len() <= WRITES_IN_FLIGHT);
            for op in &client.spare_writes {
                let cap = op.with_buf(|b| b.capacity()).unwrap();
                assert!(cap <= WRITE_KEEP, "a write buffer kept {cap} bytes");
            }
        });
    }

    /// A write the pipe takes at once, and a read of data already in the pipe, complete in
    /// place: the operation is finished when the call returns, with no completion packet (and
    /// so no completion-thread wake-up and no task wake-up) in between. Through the port they
    /// would stay pending until the completion thread saw their packets.
    #[test]
    fn operations_that_finish_at_once_complete_in_place() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let name = PipeName::parse(&format!("pw-unit-inline-{}", std::process::id())).unwrap();
            let lopts = ListenerOptions::new().mode(PipeMode::Message);
            let listener = crate::sys::Listener::bind(&name, &lopts).unwrap();
            let copts = ConnectOptions::new().mode(PipeMode::Message);
            let mut client = crate::sys::connect_once(&name, &copts).await.unwrap();
            let mut server = listener.accept().await.unwrap();
            assert!(client.pipe.as_ref().unwrap().skips_port);
            assert!(server.pipe.as_ref().unwrap().skips_port);
            for i in 0..50u8 {
                // 50 small messages fit in the pipe's buffer: each write is done on return.
                let op = client.start_write(&[i; 40]).unwrap();
                assert_eq!(
                    op.status(),
                    Status::Done {
                        error: 0,
                        bytes: 40
                    },
                    "write {i} finished in place"
                );
                client.writes.push_back(op);
            }
            client.reap_writes().unwrap();
            assert!(client.writes.is_empty());
            // The data is in the pipe before the first read is issued, so every read finishes
            // at once; the reads issued after the last message stay pending.
            for i in 0..50u8 {
                let m = server.recv_message().await.unwrap().unwrap();
                assert_eq!(m, [i; 40]);
            }
            assert!(server
                .reads
                .iter()
                .all(|r| r.op.status() == Status::Pending));
        });
    }

    /// Every operation a stream's reads and writes used, weakly held.
    fn op_refs(s: &Stream) -> Vec<std::sync::Weak<Op>> {
        s.reads
            .iter()
            .map(|r| &r.op)
            .chain(s.spare_reads.iter())
            .chain(s.current.iter().map(|c| &c.op))
            .chain(s.writes.iter())
            .chain(s.spare_writes.iter())
            .chain(s.ending.iter().filter_map(|e| e.zero.as_ref()))
            .map(Arc::downgrade)
            .collect()
    }

    /// Connection churn with every way a stream ends (drop right after `write_all`,
    /// `shutdown`, `close_write` in message mode, a client that drops in the middle of a read,
    /// reads cancelled by a timeout): once the streams are gone and their ends have finished
    /// lingering, every operation they used is freed (its completion packet arrived and gave
    /// the kernel's reference back), so no `Op` block and no buffer outlives its connection.
    #[test]
    fn churned_connections_free_every_operation() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tag = format!(
                "pw-unit-churn-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            );
            let bname = PipeName::parse(&format!("{tag}-b")).unwrap();
            let mname = PipeName::parse(&format!("{tag}-m")).unwrap();
            let bl = crate::sys::Listener::bind(&bname, &ListenerOptions::new()).unwrap();
            let ml =
                crate::sys::Listener::bind(&mname, &ListenerOptions::new().mode(PipeMode::Message))
                    .unwrap();
            let bopts = ConnectOptions::new();
            let mopts = ConnectOptions::new().mode(PipeMode::Message);
            let up = vec![1u8; 8 * 1024];
            let down = vec![2u8; 32 * 1024];
            let mut refs = Vec::new();
            for round in 0..100 {
                match round % 5 {
                    0 => {
                        // Both ends drop right after write_all: the server's end lingers.
                        let mut c = crate::sys::connect_once(&bname, &bopts).await.unwrap();
                        let mut s = bl.accept().await.unwrap();
                        c.write_all(&up).await.unwrap();
                        let mut got = vec![0u8; up.len()];
                        s.read_exact(&mut got).await.unwrap();
                        s.write_all(&down).await.unwrap();
                        refs.extend(op_refs(&s));
                        drop(s);
                        let mut got = vec![0u8; down.len()];
                        c.read_exact(&mut got).await.unwrap();
                        refs.extend(op_refs(&c));
                    }
                    1 => {
                        let mut c = crate::sys::connect_once(&bname, &bopts).await.unwrap();
                        let mut s = bl.accept().await.unwrap();
                        s.write_all(&down).await.unwrap();
                        s.shutdown().await.unwrap();
                        let mut all = Vec::new();
                        c.read_to_end(&mut all).await.unwrap();
                        assert_eq!(all.len(), down.len());
                        refs.extend(op_refs(&s));
                        refs.extend(op_refs(&c));
                    }
                    2 => {
                        let mut c = crate::sys::connect_once(&mname, &mopts).await.unwrap();
                        let mut s = ml.accept().await.unwrap();
                        c.send_message(&up).await.unwrap();
                        c.close_write().await.unwrap();
                        assert_eq!(s.recv_message().await.unwrap().unwrap().len(), up.len());
                        assert!(s.recv_message().await.unwrap().is_none());
                        s.send_message(&down).await.unwrap();
                        s.close_write().await.unwrap();
                        assert_eq!(c.recv_message().await.unwrap().unwrap().len(), down.len());
                        assert!(c.recv_message().await.unwrap().is_none());
                        refs.extend(op_refs(&s));
                        refs.extend(op_refs(&c));
                    }
                    3 => {
                        // The client drops in the middle of a read, its reads in flight.
                        let mut c = crate::sys::connect_once(&bname, &bopts).await.unwrap();
                        let mut s = bl.accept().await.unwrap();
                        let writer = tokio::spawn(async move {
                            let _ = s.write_all(&vec![3u8; 256 * 1024]).await;
                            let refs = op_refs(&s);
                            drop(s);
                            refs
                        });
                        let mut got = vec![0u8; 1024];
                        c.read_exact(&mut got).await.unwrap();
                        refs.extend(op_refs(&c));
                        drop(c);
                        refs.extend(writer.await.unwrap());
                    }
                    _ => {
                        // Reads cancelled by a timeout on both ends before the data comes.
                        let mut c = crate::sys::connect_once(&bname, &bopts).await.unwrap();
                        let mut s = bl.accept().await.unwrap();
                        let mut buf = vec![0u8; up.len()];
                        for _ in 0..2 {
                            let t = Duration::from_millis(1);
                            let _ = tokio::time::timeout(t, c.read(&mut buf)).await;
                            let _ = tokio::time::timeout(t, s.read(&mut buf)).await;
                        }
                        c.write_all(&up).await.unwrap();
                        s.read_exact(&mut buf).await.unwrap();
                        refs.extend(op_refs(&s));
                        refs.extend(op_refs(&c));
                    }
                }
            }
            drop(bl);
            drop(ml);
            assert!(!refs.is_empty());
            // Lingering ends finish as soon as their writes are read or fail; bound a hang.
            let started = std::time::Instant::now();
            loop {
                let alive = refs.iter().filter(|w| w.strong_count() > 0).count();
                if alive == 0 {
                    break;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    let statuses: Vec<_> = refs
                        .iter()
                        .filter_map(|w| w.upgrade())
                        .map(|op| op.status())
                        .take(8)
                        .collect();
                    panic!(
                        "{alive} of {} operations outlived their connections by 60 s \
                         (statuses of the first: {statuses:?})",
                        refs.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}
