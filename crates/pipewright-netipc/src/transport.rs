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

use std::future::Future;
use std::io;

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
