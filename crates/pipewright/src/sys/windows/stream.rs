//! The Windows stream: its own overlapped I/O with large buffers and several operations in
//! flight, exposed as `AsyncRead + AsyncWrite`.
//!
//! Reads: up to [`READS_IN_FLIGHT`] `ReadFile` calls are outstanding at once, each into a
//! buffer that starts at 16 KiB and doubles whenever a read fills it, up to the configured
//! `io_buffer_size`. Completed reads are consumed strictly in the order they were issued.
//! Writes: each `poll_write` copies up to `io_buffer_size` bytes (a whole message in message
//! mode) into an operation's buffer, issues the `WriteFile` at once and returns. Writes stay
//! outstanding while they total at most `io_buffer_size` bytes (at least [`WRITES_IN_FLIGHT`]
//! of any size, at most [`MAX_WRITES_IN_FLIGHT`]), so small writes keep the pipe as full as
//! large ones without holding any data back; `poll_flush` waits for all of them.

use std::collections::VecDeque;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_INVALID_PARAMETER, ERROR_MORE_DATA, ERROR_NO_DATA,
    ERROR_PIPE_NOT_CONNECTED,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};

use super::iocp::{associate, win32_result, Op, Status};
use super::pipe::{self, raw, wide};
use super::security::process_user_sid;
use crate::error::{Error, ErrorKind, Result};
use crate::name::PipeName;
use crate::options::{ConnectOptions, PipeMode, StreamConfig};
use crate::peer::{Peer, PeerUser};

/// Reads outstanding at once.
pub(crate) const READS_IN_FLIGHT: usize = 2;
/// Writes that may be outstanding whatever their size.
pub(crate) const WRITES_IN_FLIGHT: usize = 2;
/// Most writes outstanding at once (small writes, while their total fits `io_buffer_size`).
pub(crate) const MAX_WRITES_IN_FLIGHT: usize = 16;
/// Size of the first read buffer; it doubles while reads fill it.
const FIRST_READ_SIZE: usize = 16 * 1024;

/// The handle and what is known about it.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) handle: OwnedHandle,
    pub(crate) server: bool,
    pub(crate) path: String,
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

enum Shutdown {
    Idle,
    ZeroMessage(Arc<Op>),
    Blocking(tokio::task::JoinHandle<io::Result<()>>),
    Done,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shutdown::Idle => "Idle",
            Shutdown::ZeroMessage(_) => "ZeroMessage",
            Shutdown::Blocking(_) => "Blocking",
            Shutdown::Done => "Done",
        })
    }
}

/// Called when a server stream goes away, so the listener can top up its instances.
pub(crate) type OnClose = Box<dyn FnOnce() + Send + Sync>;

pub(crate) struct Stream {
    /// `None` once a client byte pipe has been shut down (and so closed).
    pipe: Option<Arc<Pipe>>,
    config: StreamConfig,
    reads: VecDeque<Arc<Op>>,
    spare_reads: Vec<Arc<Op>>,
    current: Option<Chunk>,
    read_size: usize,
    read_end: ReadEnd,
    message: Vec<u8>,
    writes: VecDeque<Arc<Op>>,
    /// Bytes in the outstanding writes.
    writing: usize,
    spare_writes: Vec<Arc<Op>>,
    write_error: Option<i32>,
    shutdown: Shutdown,
    on_close: Option<OnClose>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("pipe", &self.pipe)
            .field("mode", &self.config.mode)
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .field("read_end", &self.read_end)
            .field("shutdown", &self.shutdown)
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

impl Stream {
    pub(crate) fn new(
        handle: OwnedHandle,
        config: StreamConfig,
        server: bool,
        path: String,
        on_close: Option<OnClose>,
    ) -> Self {
        let read_size = FIRST_READ_SIZE.min(config.io_buffer_size);
        Stream {
            pipe: Some(Arc::new(Pipe {
                handle,
                server,
                path,
            })),
            config,
            reads: VecDeque::new(),
            spare_reads: Vec::new(),
            current: None,
            read_size,
            read_end: ReadEnd::Open,
            message: Vec::new(),
            writes: VecDeque::new(),
            writing: 0,
            spare_writes: Vec::new(),
            write_error: None,
            shutdown: Shutdown::Idle,
            on_close,
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
        self.pipe
            .as_ref()
            .map(|p| p.path.clone())
            .unwrap_or_default()
    }

    pub(crate) fn mode(&self) -> PipeMode {
        self.config.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.pipe.as_ref().is_some_and(|p| p.server)
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
        while self.reads.len() < READS_IN_FLIGHT && matches!(self.read_end, ReadEnd::Open) {
            let op = self.spare_reads.pop().unwrap_or_else(Op::new);
            let size = self.read_size;
            op.with_buf(|b| b.resize(size, 0));
            let handle = raw(&pipe.handle);
            op.start(|buf, overlapped| {
                // SAFETY: the buffer and OVERLAPPED live in `op`, kept alive by the reference
                // `start` parks until the completion packet; the handle is open and overlapped.
                win32_result(unsafe {
                    ReadFile(
                        handle,
                        buf.as_mut_ptr(),
                        buf.len() as u32,
                        std::ptr::null_mut(),
                        overlapped,
                    )
                })
            });
            let failed_now = matches!(op.status(), Status::Done { error, .. } if error != 0 && error != ERROR_MORE_DATA);
            self.reads.push_back(op);
            if failed_now {
                // The pipe is closed or broken: issuing more reads would fail the same way.
                break;
            }
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
                    return Poll::Ready(Err(io::Error::from(Error::new(*kind, msg.clone()))))
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
            let (error, bytes) = ready!(front.poll_done(cx));
            let op = self.reads.pop_front().expect("front exists");
            if error == 0 || error == ERROR_MORE_DATA {
                let more = error == ERROR_MORE_DATA;
                let full = op.with_buf(|b| bytes == b.len()).unwrap_or(false);
                if full && self.read_size < self.config.io_buffer_size {
                    self.read_size = (self.read_size * 2).min(self.config.io_buffer_size);
                }
                return Poll::Ready(Ok(Some(Chunk {
                    op,
                    pos: 0,
                    len: bytes,
                    more,
                })));
            }
            op.reset();
            if is_closed_code(error) {
                self.read_end = ReadEnd::Eof;
                continue;
            }
            return Poll::Ready(Err(os_error(error)));
        }
    }

    fn recycle_read(&mut self, op: Arc<Op>) {
        op.reset();
        self.spare_reads.push(op);
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
                // The whole message is in one buffer: hand the buffer over instead of copying.
                let msg = chunk
                    .op
                    .with_buf(|b| {
                        let mut taken = std::mem::take(b);
                        taken.truncate(chunk.len);
                        taken
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
        while let Some(front) = self.writes.front() {
            let Status::Done { error, bytes } = front.status() else {
                break;
            };
            let op = self.writes.pop_front().expect("front exists");
            let wanted = op.with_buf(|b| b.len()).unwrap_or(0);
            self.writing = self.writing.saturating_sub(wanted);
            op.reset();
            self.spare_writes.push(op);
            if error != 0 {
                self.write_error = Some(error as i32);
            } else if bytes != wanted {
                self.write_error = Some(ERROR_NO_DATA as i32);
            }
        }
        self.check_write_error()
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
        let handle = raw(&pipe.handle);
        op.start(|buf, overlapped| {
            // SAFETY: as for reads: buffer and OVERLAPPED live in `op` until the packet.
            win32_result(unsafe {
                WriteFile(
                    handle,
                    buf.as_ptr(),
                    buf.len() as u32,
                    std::ptr::null_mut(),
                    overlapped,
                )
            })
        });
        if let Status::Done { error, .. } = op.status() {
            if error != 0 {
                op.reset();
                self.spare_writes.push(op);
                return Err(os_error(error));
            }
        }
        Ok(op)
    }

    fn poll_write_data(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !matches!(self.shutdown, Shutdown::Idle) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
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

    pub(crate) async fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        let path = self.path();
        let result = async {
            if msg.is_empty() {
                if self.config.mode == PipeMode::Message {
                    std::future::poll_fn(|cx| self.poll_writes_below(cx, 0)).await?;
                    let op = self.start_write(&[])?;
                    self.writes.push_back(op);
                }
            } else {
                let mut sent = 0;
                while sent < msg.len() {
                    sent +=
                        std::future::poll_fn(|cx| self.poll_write_data(cx, &msg[sent..])).await?;
                }
            }
            std::future::poll_fn(|cx| self.poll_writes_below(cx, 0)).await
        }
        .await;
        result.map_err(|e| Error::from_stream(e, &path, "send"))
    }

    fn poll_shutdown_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.shutdown {
                Shutdown::Done => return Poll::Ready(Ok(())),
                Shutdown::Idle => {
                    ready!(self.poll_writes_below(cx, 0))?;
                    let pipe = self.pipe()?.clone();
                    match self.config.mode {
                        PipeMode::Message => {
                            let op = self.start_write(&[])?;
                            self.shutdown = Shutdown::ZeroMessage(op);
                        }
                        PipeMode::Byte => {
                            // FlushFileBuffers blocks until the peer has read everything.
                            let task = tokio::task::spawn_blocking(move || {
                                pipe::flush(&pipe.handle)?;
                                if pipe.server {
                                    pipe::disconnect(&pipe.handle)?;
                                }
                                Ok(())
                            });
                            self.shutdown = Shutdown::Blocking(task);
                        }
                    }
                }
                Shutdown::ZeroMessage(op) => {
                    let (error, _) = ready!(op.poll_done(cx));
                    self.shutdown = Shutdown::Done;
                    if error != 0 && !is_closed_code(error) {
                        return Poll::Ready(Err(os_error(error)));
                    }
                }
                Shutdown::Blocking(task) => {
                    let joined = ready!(Pin::new(task).poll(cx));
                    self.shutdown = Shutdown::Done;
                    let result = joined.map_err(io::Error::other)?;
                    if let Err(e) = result {
                        if !e.raw_os_error().is_some_and(|c| is_closed_code(c as u32)) {
                            return Poll::Ready(Err(e));
                        }
                    }
                    if self.pipe.as_ref().is_some_and(|p| !p.server) {
                        self.close_handle();
                    }
                }
            }
        }
    }

    fn close_handle(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            pipe::cancel_all(&pipe.handle);
        }
    }
}

use std::future::Future;

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
        // Cancel what is in flight; each cancelled operation's packet frees its buffer.
        self.close_handle();
        if let Some(on_close) = self.on_close.take() {
            on_close();
        }
    }
}

/// One connect attempt: open the client end, set the read mode, join the completion port.
pub(crate) async fn connect_once(name: &PipeName, options: &ConnectOptions) -> Result<Stream> {
    let path = name.windows_path();
    let handle = pipe::open_client(&wide(&path), options.impersonation)
        .map_err(|e| Error::from_io(e, &path, "connect"))?;
    let mut config = options.stream.clone();
    if options.mode_from_server {
        let message = pipe::is_message_pipe(&handle)
            .map_err(|e| Error::from_io(e, &path, "query the pipe's type"))?;
        config.mode = if message {
            PipeMode::Message
        } else {
            PipeMode::Byte
        };
    }
    if config.mode == PipeMode::Message {
        pipe::set_message_read_mode(&handle).map_err(|e| {
            if e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
                Error::new(
                    ErrorKind::InvalidOption,
                    "connect: the server's pipe is a byte pipe; connect in byte mode",
                )
                .with_pipe(path.clone())
                .with_source(e)
            } else {
                Error::from_io(e, &path, "set message read mode")
            }
        })?;
    }
    associate(raw(&handle))
        .map_err(|e| Error::from_io(e, &path, "associate with completion port"))?;
    Ok(Stream::new(handle, config, false, path, None))
}
