//! The packet-transport abstraction the session layer runs on.
//!
//! A transport moves whole packets (UDS SEQPACKET datagrams, named-pipe
//! messages): one send is one packet, one receive is one packet.
//!
//! ```
//! use pipewright_netipc::transport::PacketTransport;
//! fn advertised<T: PacketTransport>(t: &T) -> usize {
//!     t.max_packet_size()
//! }
//! ```

use crate::wire::header::HeaderError;
use crate::wire::naming::NamingError;
use pipewright_shm::ShmError;
use std::future::Future;
use std::io;
use std::time::Duration;

pub mod endpoint;
pub mod pipe;
pub mod shm;
#[cfg(target_os = "linux")]
pub(crate) mod sys;
#[cfg(target_os = "linux")]
pub mod uds;

/// A bidirectional, packet-preserving, reliable, ordered transport.
pub trait PacketTransport: Send {
    /// The largest packet this transport can send; used as the automatic
    /// packet size to advertise in the handshake.
    fn max_packet_size(&self) -> usize;

    /// Sends one packet made of the concatenation of `parts`.
    fn send_packet(&mut self, parts: &[&[u8]]) -> impl Future<Output = io::Result<()>> + Send;

    /// Receives one packet into `buf` and returns its length. A packet longer
    /// than `buf` is an error ([`io::ErrorKind::InvalidData`]), never silently
    /// truncated; the peer closing is [`io::ErrorKind::UnexpectedEof`].
    fn recv_packet(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Makes this transport's calls block the calling thread, for a session that owns a
    /// thread (a blocking client, a server session on a thread of its own): a receive then
    /// waits in place, and one that waits longer than `read_timeout` fails with
    /// [`io::ErrorKind::TimedOut`]. Returns what stops a blocked call from another thread,
    /// or `None` when the transport has no blocking form (the default: it stays as it is).
    fn make_blocking(
        &mut self,
        read_timeout: Option<Duration>,
    ) -> impl Future<Output = io::Result<Option<pipewright::Interrupter>>> + Send {
        let _ = read_timeout;
        async { Ok(None) }
    }
}

/// A listener that hands out connected [`PacketTransport`]s (the server side
/// of a baseline transport).
///
/// ```
/// use pipewright_netipc::transport::PacketListener;
/// async fn next<L: PacketListener>(l: &L) -> std::io::Result<L::Transport> {
///     l.accept().await
/// }
/// ```
pub trait PacketListener: Send + Sync + 'static {
    /// The connected transport type.
    type Transport: PacketTransport + 'static;

    /// Waits for the next client.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Transport>> + Send;
}

/// Why a transport-layer operation failed: creating or reaching an endpoint,
/// or moving a message through a shared-memory link. The session layer
/// turns each variant into the `SessionError` variant of the same name.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Transport I/O failed.
    #[error("transport error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection (or its side of the region).
    #[error("peer closed the connection")]
    Closed,
    /// A received message's header is malformed.
    #[error("malformed message: {0}")]
    Header(#[from] HeaderError),
    /// A shared-memory operation failed.
    #[error(transparent)]
    Shm(ShmError),
    /// Nothing arrived before the deadline.
    #[error("no response before the call deadline")]
    DeadlineExceeded,
    /// A name could not be built.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// The listener could not be created.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Bind(#[from] uds::BindError),
    /// An earlier error (or a cancelled operation) left the link unusable.
    #[error("session is broken by an earlier error")]
    Broken,
}
