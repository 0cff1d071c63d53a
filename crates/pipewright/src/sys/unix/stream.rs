//! A connected Unix stream socket in byte or message mode.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use super::framing::{too_large, FrameReader, FrameWriter};
use super::socket::{Interrupt, Socket, SEND_FLAGS};
use crate::error::{Error, ErrorKind, Result};
use crate::name::PipeName;
use crate::options::{ConnectOptions, PipeMode, StreamConfig};
use crate::peer::{Peer, PeerUser};

/// Largest read `recv_message` makes in byte mode.
const BYTE_READ_SIZE: usize = 64 * 1024;

/// The longest path `sockaddr_un` holds, without its terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug)]
pub(crate) struct Stream {
    io: Socket,
    config: StreamConfig,
    server: bool,
    reader: FrameReader,
    writer: FrameWriter,
    /// `close_write` (or `shutdown`) was called: the end-of-stream marker is queued or sent,
    /// and every later write fails with `Closed`.
    write_closed: bool,
    /// The write half has been shut down in the kernel.
    write_shut: bool,
    path: String,
}

impl Stream {
    pub(crate) fn new(io: UnixStream, config: StreamConfig, server: bool, path: String) -> Self {
        Stream {
            io: Socket::Async(io),
            config,
            server,
            reader: FrameReader::default(),
            writer: FrameWriter::default(),
            write_closed: false,
            write_shut: false,
            path,
        }
    }

    pub(crate) fn mode(&self) -> PipeMode {
        self.config.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    pub(crate) fn peer(&self) -> Result<Peer> {
        let (pid, uid) = self
            .io
            .peer_cred()
            .map_err(|e| Error::from_io(e, &self.path, "read peer credentials"))?;
        Ok(Peer {
            pid: pid.and_then(|p| u32::try_from(p).ok()),
            user: Some(PeerUser::Uid(uid)),
        })
    }

    /// Makes every later read and write block the calling thread (for an owner with a
    /// thread of its own); what was queued is written first, and what the frame reader
    /// holds stays first in line.
    pub(crate) async fn make_blocking(&mut self) -> Result<std::sync::Arc<Interrupt>> {
        let result = async {
            std::future::poll_fn(|cx| self.writer.poll_drain(&mut self.io, cx)).await?;
            self.io.make_blocking()
        }
        .await;
        result.map_err(|e| Error::from_stream(e, &self.path, "make blocking"))
    }

    /// Puts the socket back on tokio's reactor ([`make_blocking`](Self::make_blocking)
    /// undone); must be called inside a tokio runtime.
    pub(crate) fn make_async(&mut self) -> Result<()> {
        self.io
            .make_async()
            .map_err(|e| Error::from_stream(e, &self.path, "make async"))
    }

    /// Sends what the socket takes now, without waiting; `WouldBlock` when it takes
    /// nothing. Byte mode (the caller checks).
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.write_closed {
            return Err(self.closed_error());
        }
        self.io.try_send(buf)
    }

    /// Reads of a blocking socket already go straight into the caller's buffer.
    pub(crate) fn read_direct(&mut self, _buf: &mut [u8]) -> Option<io::Result<usize>> {
        None
    }

    /// Writes of a blocking socket already go straight from the caller's buffer.
    pub(crate) fn write_direct(&mut self, _data: &[u8]) -> Option<io::Result<usize>> {
        None
    }

    /// The longest a blocking read waits for data (`None`: no limit).
    pub(crate) fn set_read_timeout(&mut self, timeout: Option<std::time::Duration>) {
        if let Err(e) = self.io.set_read_timeout(timeout) {
            tracing::warn!(error = %e, "could not set the read timeout");
        }
    }

    fn closed_error(&self) -> io::Error {
        Error::new(
            ErrorKind::Closed,
            "send: the write half was closed with close_write (or shutdown); nothing more can be sent on this stream",
        )
        .with_pipe(self.path.clone())
        .into()
    }

    /// Gives a crate error made below this layer (framing) the socket's path.
    fn name_error(&self, e: io::Error) -> io::Error {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return e;
        }
        let err = Error::from(e);
        if err.pipe().is_some() {
            return err.into();
        }
        err.with_pipe(self.path.clone()).into()
    }

    pub(crate) async fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        if msg.is_empty() && self.config.mode == PipeMode::Message {
            return self.close_write().await;
        }
        let result = async {
            if self.write_closed {
                return Err(self.closed_error());
            }
            match self.config.mode {
                PipeMode::Byte => self.io.write_all(msg).await,
                PipeMode::Message => {
                    if msg.len() > self.config.max_message_size {
                        return Err(too_large(msg.len(), self.config.max_message_size));
                    }
                    std::future::poll_fn(|cx| self.writer.poll_drain(&mut self.io, cx)).await?;
                    self.writer.queue(msg);
                    std::future::poll_fn(|cx| self.writer.poll_drain(&mut self.io, cx)).await
                }
            }
        }
        .await;
        result.map_err(|e| Error::from_stream(e, &self.path, "send"))
    }

    /// Waits for our queued writes, sends the end-of-stream marker (a zero-length frame in
    /// message mode) and shuts the write half. Idempotent; resumable after cancellation.
    fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_closed {
            ready!(self.writer.poll_drain(&mut self.io, cx))?;
            if self.config.mode == PipeMode::Message {
                self.writer.queue(&[]);
            }
            self.write_closed = true;
        }
        ready!(self.writer.poll_drain(&mut self.io, cx))?;
        if !self.write_shut {
            ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
            self.write_shut = true;
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) async fn close_write(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_close_write(cx))
            .await
            .map_err(|e| Error::from_stream(e, &self.path, "close_write"))
    }

    pub(crate) async fn recv_message(&mut self) -> Result<Option<Vec<u8>>> {
        let result = match self.config.mode {
            PipeMode::Byte => {
                // Whatever one read delivers; the kernel's socket buffer bounds it anyway.
                let mut buf = vec![0u8; self.config.io_buffer_size.min(BYTE_READ_SIZE)];
                self.io.read(&mut buf).await.map(|n| {
                    buf.truncate(n);
                    (n > 0).then_some(buf)
                })
            }
            PipeMode::Message => {
                let max = self.config.max_message_size;
                std::future::poll_fn(|cx| self.reader.poll_message(&mut self.io, max, cx)).await
            }
        };
        result.map_err(|e| Error::from_stream(self.name_error(e), &self.path, "receive"))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.config.mode {
            PipeMode::Byte => Pin::new(&mut this.io).poll_read(cx, buf),
            PipeMode::Message => {
                let max = this.config.max_message_size;
                let result = ready!(this.reader.poll_read(&mut this.io, max, cx, buf));
                Poll::Ready(result.map_err(|e| this.name_error(e)))
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(this.closed_error()));
        }
        match this.config.mode {
            PipeMode::Byte => Pin::new(&mut this.io).poll_write(cx, buf),
            PipeMode::Message => {
                this.writer
                    .poll_write(&mut this.io, this.config.max_message_size, cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.writer.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close_write(cx)
    }
}

impl Drop for Stream {
    /// Best effort, never blocking: a message-mode stream tries to finish its queued frame
    /// and send the end-of-stream frame if the socket takes them at once, so a pipewright
    /// peer that drops its stream ends orderly.
    fn drop(&mut self) {
        if self.config.mode != PipeMode::Message || self.write_shut {
            return;
        }
        if !self.write_closed {
            self.write_closed = true;
            if !self.try_send_queued() {
                return;
            }
            self.writer.queue(&[]);
        }
        self.try_send_queued();
    }
}

impl Stream {
    /// Writes what the frame writer holds without waiting (straight to the socket, whatever
    /// the runtime's readiness state says). Returns whether everything went out.
    fn try_send_queued(&mut self) -> bool {
        let socket = socket2::SockRef::from(&self.io);
        while !self.writer.is_drained() {
            // Never waits, on a blocking socket too.
            match socket.send_with_flags(self.writer.unwritten(), SEND_FLAGS | libc::MSG_DONTWAIT) {
                Ok(n) if n > 0 => self.writer.consumed(n),
                _ => return false,
            }
        }
        true
    }
}

/// One connect attempt.
pub(crate) async fn connect_once(name: &PipeName, options: &ConnectOptions) -> Result<Stream> {
    if name.host().is_some() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "remote pipes exist only on Windows; use a local name",
        )
        .with_pipe(name.windows_path()));
    }
    let path = name.unix_path();
    let shown = path.display().to_string();
    check_path_len(&shown)?;
    let io = UnixStream::connect(&path)
        .await
        .map_err(|e| Error::from_io(e, &shown, "connect"))?;
    Ok(Stream::new(io, options.stream.clone(), false, shown))
}

pub(crate) fn check_path_len(path: &str) -> Result<()> {
    if path.len() > MAX_SOCKET_PATH {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "socket path is {} bytes; Unix allows at most {MAX_SOCKET_PATH}: use a shorter name or set PIPEWRIGHT_RUNTIME_DIR to a shorter directory",
                path.len()
            ),
        )
        .with_pipe(path));
    }
    Ok(())
}
