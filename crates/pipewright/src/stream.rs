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
/// `shutdown()` means something on every platform: on a message pipe it sends a zero-byte
/// message (the peer reads end of stream); on a byte pipe it waits until the peer has read
/// everything, then closes (the server side disconnects the instance); on Unix it shuts the
/// write half.
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
    /// An empty message tells the peer that no more messages follow (it reads end of stream).
    pub async fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        self.inner.send_message(msg).await
    }

    /// Receives one whole message, up to the configured limit. `Ok(None)` means the peer sent
    /// an empty message (end of messages) or closed. A message over the limit is an error of
    /// kind [`MessageTooLarge`](crate::ErrorKind::MessageTooLarge) and the stream is unusable
    /// afterwards. In byte mode this returns whatever one read delivers.
    pub async fn recv_message(&mut self) -> Result<Option<Vec<u8>>> {
        self.inner.recv_message().await
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
