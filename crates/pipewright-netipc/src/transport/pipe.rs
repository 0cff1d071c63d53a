//! Named-pipe baseline transport (profile 0x01 on Windows) over pipewright's
//! message-mode pipes.
//!
//! * The pipe is `\\.\pipe\netipc-{fnv1a64(run_dir):016x}-{service}`
//!   ([`crate::wire::naming::pipe_name`]), created in message mode with in/out
//!   buffers of `max(packet_size, 65536)`; one packet is one pipe message.
//! * The listener keeps pending instances at every moment and all I/O is
//!   overlapped (pipewright's core), so there is no polling.
//! * The automatic packet size is 65536, as upstream; a configured size is
//!   used as is.
//!
//! On Unix the same code runs over pipewright's message framing on a stream
//! socket. That is *not* the netipc wire (UDS SEQPACKET is, see
//! [`crate::transport::uds`]), but it lets the transport be exercised on any host.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use pipewright_netipc::pipe::{PipeListener, PipeTransport};
//! use pipewright_netipc::transport::{PacketListener, PacketTransport};
//! let listener = PipeListener::bind("C:\\netipc-run", "demo", 0)?;
//! let mut client = PipeTransport::connect("C:\\netipc-run", "demo", 0).await?;
//! let mut server = listener.accept().await?;
//! client.send_packet(&[b"hello"]).await?;
//! let mut buf = [0u8; 16];
//! assert_eq!(server.recv_packet(&mut buf).await?, 5);
//! # Ok(()) }
//! ```

use crate::transport::{PacketListener, PacketTransport};
use crate::wire::naming::{pipe_name, NamingError};
use pipewright::{
    BlockingPipeStream, ConnectOptions, ErrorKind, Interrupter, Listener, ListenerOptions,
    PipeMode, PipeStream,
};
use std::io;
use std::time::Duration;

/// Automatic packet size on named pipes (`NIPC_NP_DEFAULT_PACKET_SIZE`).
pub const DEFAULT_PACKET_SIZE: u32 = 65536;
/// Smallest pipe buffer (`NIPC_NP_PIPE_BUF_SIZE` floor).
pub const MIN_PIPE_BUFFER: u32 = 65536;
/// How long [`PipeTransport::connect`] waits for a busy server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pending instances the listener keeps.
pub const BACKLOG: usize = 16;

/// The packet size a transport created with `packet_size` (0 = automatic)
/// can send.
fn resolved_packet_size(packet_size: u32) -> u32 {
    if packet_size == 0 {
        DEFAULT_PACKET_SIZE
    } else {
        packet_size
    }
}

/// Message limit and I/O size for pipewright: a little above the packet size
/// so that an oversized packet is reported by [`PacketTransport::recv_packet`]
/// with its real length rather than cut off.
fn stream_sizes(packet: u32) -> (usize, usize) {
    let packet = packet as usize;
    let max_message = packet.saturating_mul(2).clamp(1 << 20, u32::MAX as usize);
    let io = packet.clamp(MIN_PIPE_BUFFER as usize, 64 << 20);
    (max_message, io)
}

fn naming_error(e: NamingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// A named-pipe listener for one netipc service.
#[derive(Debug)]
pub struct PipeListener {
    listener: Listener,
    name: String,
    packet_size: u32,
}

impl PipeListener {
    /// Creates the service pipe `\\.\pipe\netipc-{hash}-{service}` with
    /// `packet_size` (0 = 65536). Fails with [`io::ErrorKind::AddrInUse`]
    /// when another server owns the name. Needs a tokio runtime.
    pub fn bind(run_dir: &str, service: &str, packet_size: u32) -> io::Result<PipeListener> {
        let name = pipe_name(run_dir, service).map_err(naming_error)?;
        let packet_size = resolved_packet_size(packet_size);
        let buffer = packet_size.max(MIN_PIPE_BUFFER);
        let (max_message, io_size) = stream_sizes(packet_size);
        let options = ListenerOptions::new()
            .mode(PipeMode::Message)
            .backlog(BACKLOG)
            .pipe_buffer_sizes(buffer, buffer)
            .max_message_size(max_message)
            .io_buffer_size(io_size);
        // AlreadyInUse becomes io::ErrorKind::AddrInUse; the message names the pipe.
        let listener = Listener::bind_with(name.as_str(), &options).map_err(io::Error::from)?;
        Ok(PipeListener {
            listener,
            name,
            packet_size,
        })
    }

    /// The full pipe name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops accepting; pending `accept` calls fail.
    pub fn close(&self) {
        self.listener.close();
    }
}

impl PacketListener for PipeListener {
    type Transport = PipeTransport;

    async fn accept(&self) -> io::Result<PipeTransport> {
        let stream = self.listener.accept().await.map_err(io::Error::from)?;
        Ok(PipeTransport::new(stream, self.packet_size))
    }
}

/// One connected message-mode pipe.
#[derive(Debug)]
pub struct PipeTransport {
    stream: Stream,
    packet_size: u32,
    scratch: Vec<u8>,
}

/// The pipe, async or (for a session that owns a thread) blocking.
#[derive(Debug)]
enum Stream {
    Async(PipeStream),
    Blocking(BlockingPipeStream),
    /// Only while [`PacketTransport::make_blocking`] switches.
    Switching,
}

impl Stream {
    async fn send(&mut self, msg: &[u8]) -> pipewright::Result<()> {
        match self {
            Stream::Async(s) => s.send_message(msg).await,
            Stream::Blocking(s) => s.send_message(msg),
            Stream::Switching => Err(switch_failed()),
        }
    }

    async fn recv(&mut self) -> pipewright::Result<Option<Vec<u8>>> {
        match self {
            Stream::Async(s) => s.recv_message().await,
            Stream::Blocking(s) => s.recv_message(),
            Stream::Switching => Err(switch_failed()),
        }
    }
}

fn switch_failed() -> pipewright::Error {
    pipewright::Error::new(
        ErrorKind::Closed,
        "the pipe could not be made blocking and was closed",
    )
}

impl PipeTransport {
    fn new(stream: PipeStream, packet_size: u32) -> PipeTransport {
        PipeTransport {
            stream: Stream::Async(stream),
            packet_size,
            scratch: Vec::new(),
        }
    }

    /// Opens the service pipe of `run_dir`/`service` in message mode. A busy
    /// server is retried for [`CONNECT_TIMEOUT`]; a missing one fails at once
    /// with [`io::ErrorKind::NotFound`]. `packet_size` 0 means 65536.
    pub async fn connect(run_dir: &str, service: &str, packet_size: u32) -> io::Result<Self> {
        let name = pipe_name(run_dir, service).map_err(naming_error)?;
        let packet_size = resolved_packet_size(packet_size);
        let (max_message, io_size) = stream_sizes(packet_size);
        let options = ConnectOptions::new()
            .mode(PipeMode::Message)
            .timeout(CONNECT_TIMEOUT)
            .retry_not_found(false)
            .max_message_size(max_message)
            .io_buffer_size(io_size);
        let stream = pipewright::connect_with(name.as_str(), &options)
            .await
            .map_err(io::Error::from)?;
        Ok(PipeTransport::new(stream, packet_size))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the pipe")
}

impl PacketTransport for PipeTransport {
    fn max_packet_size(&self) -> usize {
        self.packet_size as usize
    }

    async fn send_packet(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let result = if let [one] = parts {
            self.stream.send(one).await
        } else {
            self.scratch.clear();
            for p in parts {
                self.scratch.extend_from_slice(p);
            }
            self.stream.send(&self.scratch).await
        };
        result.map_err(|e| match e.kind() {
            ErrorKind::Disconnected | ErrorKind::Closed => closed(),
            _ => io::Error::from(e),
        })
    }

    async fn recv_packet(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.recv().await {
            Ok(Some(msg)) if msg.len() > buf.len() => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "received a {}-byte packet, larger than the {}-byte buffer",
                    msg.len(),
                    buf.len()
                ),
            )),
            Ok(Some(msg)) => {
                buf[..msg.len()].copy_from_slice(&msg);
                Ok(msg.len())
            }
            Ok(None) => Err(closed()),
            Err(e) => Err(match e.kind() {
                ErrorKind::Disconnected | ErrorKind::Closed => closed(),
                ErrorKind::MessageTooLarge => io::Error::new(io::ErrorKind::InvalidData, e),
                _ => io::Error::from(e),
            }),
        }
    }

    /// Turns the pipe into a [`BlockingPipeStream`]: from here `send_packet` and
    /// `recv_packet` block the calling thread (a read waits on its own event, with no hop
    /// through the completion thread or a runtime), so only a session that owns a thread
    /// may use it. A read that waits longer than `read_timeout` fails with
    /// [`io::ErrorKind::TimedOut`].
    async fn make_blocking(
        &mut self,
        read_timeout: Option<Duration>,
    ) -> io::Result<Option<Interrupter>> {
        let stream = match std::mem::replace(&mut self.stream, Stream::Switching) {
            Stream::Async(s) => s.into_blocking().await.map_err(io::Error::from)?,
            Stream::Blocking(s) => s,
            Stream::Switching => return Err(switch_failed().into()),
        };
        let mut stream = stream;
        stream.set_read_timeout(read_timeout);
        let interrupter = stream.interrupter();
        self.stream = Stream::Blocking(stream);
        Ok(Some(interrupter))
    }
}
