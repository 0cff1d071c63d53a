//! The connected stream: `AsyncRead + AsyncWrite`, whole messages, and the peer's identity.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::Result;
use crate::options::PipeMode;
use crate::peer::Peer;
use crate::sys;

/// A connected pipe (Windows) or Unix socket, from [`Listener::accept`](crate::Listener::accept)
/// or [`connect`](crate::connect).
///
/// ## Ending a stream
/// [`close_write`](Self::close_write) (`shutdown()` is the same except on a Windows byte pipe,
/// and so is `send_message(&[])` in message mode) waits for our outstanding writes and sends the orderly end-of-stream marker: a
/// zero-byte message on a Windows message pipe, a zero-length frame then `shutdown(Write)` in
/// Unix message mode, `shutdown(Write)` in Unix byte mode. Reading continues (the peer can
/// still answer); later writes fail with [`Closed`](crate::ErrorKind::Closed). A Windows byte
/// pipe has no half-close: there `close_write` is
/// [`Unsupported`](crate::ErrorKind::Unsupported) and `shutdown()` closes the connection once
/// our writes are done.
///
/// The reading side tells the two ends apart in message mode: the marker is an orderly end
/// (`recv_message` gives `Ok(None)`, `AsyncRead` gives 0 bytes), while a peer that went away
/// without it (killed, or a foreign peer that just closed) is an error of kind
/// [`Disconnected`](crate::ErrorKind::Disconnected). Dropping a message-mode stream sends the
/// marker (on Unix if the socket takes it at once), so a pipewright peer that drops ends
/// orderly. In byte mode every end of stream is orderly, as with TCP.
///
/// ```no_run
/// use pipewright::{connect_with, ConnectOptions, PipeMode};
/// # async fn demo() -> pipewright::Result<()> {
/// let mut conn = connect_with("events", &ConnectOptions::new().mode(PipeMode::Message)).await?;
/// conn.send_message(b"subscribe").await?;
/// while let Some(msg) = conn.recv_message().await? {
///     println!("{} bytes", msg.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PipeStream {
    inner: sys::Stream,
}

impl PipeStream {
    pub(crate) fn from_sys(inner: sys::Stream) -> Self {
        PipeStream { inner }
    }

    pub(crate) fn into_sys(self) -> sys::Stream {
        self.inner
    }

    /// Byte or message mode.
    pub fn mode(&self) -> PipeMode {
        self.inner.mode()
    }

    /// Whether this is the server end (from a listener).
    pub fn is_server(&self) -> bool {
        self.inner.is_server()
    }

    /// The peer's process id and user.
    pub fn peer(&self) -> Result<Peer> {
        self.inner.peer()
    }

    /// Sends one whole message. In byte mode this writes the bytes without a boundary.
    ///
    /// In message mode an empty message is exactly [`close_write`](Self::close_write): the
    /// peer reads the orderly end of stream, and later sends fail with
    /// [`Closed`](crate::ErrorKind::Closed). In byte mode an empty message sends nothing (a
    /// byte stream has no boundaries), as on every platform.
    pub async fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        self.inner.send_message(msg).await
    }

    /// Receives one whole message, up to the configured limit.
    ///
    /// `Ok(None)` is the peer's orderly end (its `close_write`, `shutdown()`, drop, or an empty
    /// message; in byte mode any end of stream). In message mode a peer that went away
    /// without that marker (a killed process, a foreign peer that closed) is an error of kind
    /// [`Disconnected`](crate::ErrorKind::Disconnected). A message over the limit is an error of
    /// kind [`MessageTooLarge`](crate::ErrorKind::MessageTooLarge) and the stream is unusable
    /// afterwards. In byte mode this returns whatever one read delivers.
    ///
    /// Cancel-safe: dropping the future before it completes loses no data; the next call
    /// returns the same message whole.
    pub async fn recv_message(&mut self) -> Result<Option<Vec<u8>>> {
        self.inner.recv_message().await
    }

    /// Ends our direction of the stream and keeps reading: waits for our outstanding writes,
    /// then sends the orderly end-of-stream marker (see [Ending a stream](Self#ending-a-stream)).
    /// Later writes and `send_message` calls fail with [`Closed`](crate::ErrorKind::Closed);
    /// calling it again does nothing.
    ///
    /// On a Windows byte pipe there is no half-close: this fails with
    /// [`Unsupported`](crate::ErrorKind::Unsupported) (use message mode, or `shutdown()` to
    /// close the whole connection).
    ///
    /// ```no_run
    /// use pipewright::{connect_with, ConnectOptions, PipeMode};
    /// # async fn demo() -> pipewright::Result<()> {
    /// let mut conn = connect_with("svc", &ConnectOptions::new().mode(PipeMode::Message)).await?;
    /// conn.send_message(b"last request").await?;
    /// conn.close_write().await?;
    /// let answer = conn.recv_message().await?; // the answer still arrives
    /// # Ok(()) }
    /// ```
    pub async fn close_write(&mut self) -> Result<()> {
        self.inner.close_write().await
    }
}

impl AsyncRead for PipeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PipeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
