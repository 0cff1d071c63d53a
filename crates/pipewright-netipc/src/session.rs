//! Async sessions over any [`PacketTransport`]: the client [`Session`] and the
//! server side ([`Server`] on UDS, [`ServerSession`] per connection). Messages
//! larger than the negotiated packet size are chunked transparently; batches
//! and pipelined requests are supported.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pipewright_netipc::session::SessionError> {
//! use pipewright_netipc::codec::increment;
//! use pipewright_netipc::handshake::EndpointConfig;
//! use pipewright_netipc::header::{method, TransportStatus};
//! use pipewright_netipc::session::{Server, ServerConfig, Session};
//! let run_dir = std::path::Path::new("/tmp");
//! let server = Server::bind(run_dir, "demo", ServerConfig::default())?;
//! tokio::spawn(async move {
//!     let mut s = server.accept().await?;
//!     while let Some(req) = s.recv_request().await? {
//!         let v = increment::decode(&req.payload).unwrap_or(0);
//!         s.send_response(&req.header, TransportStatus::OK, &increment::encode(v + 1)).await?;
//!     }
//!     Ok::<_, pipewright_netipc::session::SessionError>(())
//! });
//! let mut client = Session::connect(run_dir, "demo", &EndpointConfig::default()).await?;
//! let reply = client.call(method::INCREMENT, &increment::encode(1)).await?;
//! assert_eq!(increment::decode(&reply).unwrap(), 2);
//! # Ok(()) }
//! ```

use crate::batch::{decode_batch, encode_batch, BatchError};
use crate::chunk::{split_message, ChunkError, Message, Progress, Reassembler};
use crate::endpoint::{DefaultListener, DefaultTransport};
use crate::handshake::{
    build_hello, client_check_ack, server_decide, EndpointConfig, HandshakeError, Negotiated,
    Refusal, ReservedFieldPolicy, ServerDecision, HANDSHAKE_RECV_LEN,
};
use crate::header::{Header, HeaderError, Kind, TransportStatus, FLAG_BATCH};
use crate::hello::profile;
use crate::inflight::{InFlight, InFlightError};
use crate::limits::{LimitError, Limits, Role};
use crate::naming::NamingError;
use crate::transport::{PacketListener, PacketTransport};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[cfg(target_os = "linux")]
use crate::uds::{BindError, UdsListener};

/// How long either side waits for the peer's handshake message.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Any failure of a session operation. After an error other than
/// [`SessionError::Status`] and [`SessionError::InFlight`] with a duplicate id,
/// the session is broken and every later call returns [`SessionError::Broken`].
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Transport I/O failed.
    #[error("transport error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
    /// The handshake failed (client side).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The handshake was refused (server side).
    #[error("handshake refused{}: {reason}", if *.acked { " (rejection ACK sent)" } else { " (closed without ACK)" })]
    Refused {
        /// Why.
        reason: Refusal,
        /// Whether a rejection ACK was sent.
        acked: bool,
    },
    /// The peer did not complete the handshake in time.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// A malformed message header.
    #[error("malformed message: {0}")]
    Header(#[from] HeaderError),
    /// A negotiated limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(#[from] LimitError),
    /// Chunk reassembly failed.
    #[error("chunking error: {0}")]
    Chunk(#[from] ChunkError),
    /// A correlation error.
    #[error("correlation error: {0}")]
    InFlight(#[from] InFlightError),
    /// A malformed batch.
    #[error("bad batch: {0}")]
    Batch(#[from] BatchError),
    /// A message of the wrong kind.
    #[error("expected a {expected:?} message, got {got:?}")]
    UnexpectedKind {
        /// Expected.
        expected: Kind,
        /// Received.
        got: Kind,
    },
    /// A response that does not match its request.
    #[error("response mismatch: {0}")]
    Mismatch(String),
    /// The server answered with a non-OK status (the session stays usable).
    #[error("server answered {status} to request {message_id} (method {code})")]
    Status {
        /// The status.
        status: TransportStatus,
        /// Method code.
        code: u16,
        /// Message id.
        message_id: u64,
    },
    /// The server selected a profile this transport cannot run.
    #[error("server selected profile {0:#x}, which this transport does not implement")]
    UnsupportedProfile(u32),
    /// A name could not be built.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// The listener could not be created.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Bind(#[from] BindError),
    /// An earlier error (or a cancelled operation) left the session unusable.
    #[error("session is broken by an earlier error")]
    Broken,
}

fn map_io(e: io::Error) -> SessionError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => SessionError::Closed,
        _ => SessionError::Io(e),
    }
}

/// Packet framing shared by both roles: limits, chunking, the receive buffer
/// and the broken flag.
#[derive(Debug)]
struct Link<T> {
    transport: T,
    negotiated: Negotiated,
    limits: Limits,
    buf: Vec<u8>,
    busy: bool,
    broken: bool,
}

impl<T: PacketTransport> Link<T> {
    fn new(transport: T, negotiated: Negotiated, role: Role) -> Link<T> {
        Link {
            transport,
            limits: Limits::new(role, &negotiated),
            buf: vec![0; negotiated.packet_size as usize],
            negotiated,
            busy: false,
            broken: false,
        }
    }

    /// Marks the start of an operation; an operation that is dropped midway
    /// (cancelled) leaves `busy` set, which breaks the session.
    fn begin(&mut self) -> Result<(), SessionError> {
        if self.broken || self.busy {
            self.broken = true;
            return Err(SessionError::Broken);
        }
        self.busy = true;
        Ok(())
    }

    fn end<R>(&mut self, r: Result<R, SessionError>) -> Result<R, SessionError> {
        self.busy = false;
        if let Err(e) = &r {
            if !matches!(e, SessionError::Status { .. }) {
                self.broken = true;
            }
        }
        r
    }

    async fn send(&mut self, header: &Header, payload: &[u8]) -> Result<(), SessionError> {
        self.limits.check_send(header)?;
        let packets = split_message(header, payload, self.negotiated.packet_size as usize)?;
        for p in packets {
            self.transport
                .send_packet(&[&p.prefix, p.body])
                .await
                .map_err(map_io)?;
        }
        Ok(())
    }

    async fn recv(
        &mut self,
        mut on_header: impl FnMut(&Header) -> Result<(), SessionError>,
    ) -> Result<Message, SessionError> {
        let n = self
            .transport
            .recv_packet(&mut self.buf)
            .await
            .map_err(map_io)?;
        let packet = &self.buf[..n];
        let header = Header::decode(packet)?;
        self.limits.check_receive(&header)?;
        on_header(&header)?;
        let mut r = match Reassembler::start(header, packet, self.buf.len())? {
            Progress::Complete(m) => return Ok(m),
            Progress::Partial(r) => r,
        };
        loop {
            let n = self
                .transport
                .recv_packet(&mut self.buf)
                .await
                .map_err(map_io)?;
            if let Some(m) = r.push(&self.buf[..n])? {
                return Ok(m);
            }
        }
    }
}

fn effective_config<T: PacketTransport>(config: &EndpointConfig, transport: &T) -> EndpointConfig {
    let max = u32::try_from(transport.max_packet_size()).unwrap_or(u32::MAX);
    let mut c = config.resolved(max);
    c.packet_size = c.packet_size.min(max);
    c
}

/// A client session: sends requests, receives responses.
#[derive(Debug)]
pub struct Session<T> {
    link: Link<T>,
    inflight: InFlight,
    next_id: u64,
}

impl Session<DefaultTransport> {
    /// Connects to the service over the platform's baseline transport
    /// (`{run_dir}/{service}.sock` on Linux, the service's named pipe on
    /// Windows) and performs the handshake.
    pub async fn connect(
        run_dir: &Path,
        service: &str,
        config: &EndpointConfig,
    ) -> Result<Self, SessionError> {
        let transport = crate::endpoint::connect(run_dir, service, config.packet_size).await?;
        Session::handshake(transport, config).await
    }
}

impl<T: PacketTransport> Session<T> {
    /// Runs the client handshake on a connected transport. The advertised
    /// packet size is the configured one (or the transport's automatic size),
    /// capped at what the transport can send. Only the baseline profile runs
    /// over a packet transport: a server selecting a shared-memory profile is
    /// an error.
    pub async fn handshake(
        mut transport: T,
        config: &EndpointConfig,
    ) -> Result<Self, SessionError> {
        let cfg = effective_config(config, &transport);
        let (hello, msg) = build_hello(&cfg);
        let exchange = async {
            transport.send_packet(&[&msg]).await?;
            let mut buf = [0u8; HANDSHAKE_RECV_LEN];
            let n = transport.recv_packet(&mut buf).await?;
            Ok::<_, io::Error>((buf, n))
        };
        let (buf, n) = match tokio::time::timeout(DEFAULT_HANDSHAKE_TIMEOUT, exchange).await {
            Err(_) => return Err(SessionError::HandshakeTimeout(DEFAULT_HANDSHAKE_TIMEOUT)),
            Ok(Err(e)) => {
                return Err(match map_io(e) {
                    SessionError::Closed => HandshakeError::ClosedWithoutAck.into(),
                    other => other,
                })
            }
            Ok(Ok(v)) => v,
        };
        let negotiated = client_check_ack(&buf[..n], &hello)?;
        if negotiated.selected_profile != profile::BASELINE {
            return Err(SessionError::UnsupportedProfile(
                negotiated.selected_profile,
            ));
        }
        Ok(Session {
            link: Link::new(transport, negotiated, Role::Client),
            inflight: InFlight::default(),
            next_id: 1,
        })
    }

    /// The agreed session parameters.
    pub fn negotiated(&self) -> &Negotiated {
        &self.link.negotiated
    }

    /// Number of requests awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    async fn send_with_header(
        &mut self,
        header: Header,
        payload: &[u8],
    ) -> Result<u64, SessionError> {
        self.link.begin()?;
        if let Err(e) = self.inflight.insert(header.message_id) {
            self.link.busy = false;
            return Err(e.into());
        }
        let r = self.link.send(&header, payload).await;
        if r.is_err() {
            self.inflight.fail_all();
        }
        self.link.end(r).map(|()| header.message_id)
    }

    /// Sends a single request with an explicit message id (pipelining).
    /// A duplicate of an id in flight is refused without breaking the session.
    pub async fn send_request_with_id(
        &mut self,
        code: u16,
        message_id: u64,
        payload: &[u8],
    ) -> Result<u64, SessionError> {
        let len =
            u32::try_from(payload.len()).map_err(|_| ChunkError::MessageTooLarge(payload.len()))?;
        self.send_with_header(Header::request(code, message_id, len), payload)
            .await
    }

    /// Sends a single request and returns its message id (pipelining).
    pub async fn send_request(&mut self, code: u16, payload: &[u8]) -> Result<u64, SessionError> {
        let id = self.take_id();
        self.send_request_with_id(code, id, payload).await
    }

    /// Sends a batch request (directory always present) and returns its id.
    pub async fn send_batch_request(
        &mut self,
        code: u16,
        items: &[&[u8]],
    ) -> Result<u64, SessionError> {
        let payload = encode_batch(items)?;
        let header = Header {
            flags: FLAG_BATCH,
            item_count: items.len() as u32,
            ..Header::request(code, self.take_id(), payload.len() as u32)
        };
        self.send_with_header(header, &payload).await
    }

    /// Receives the next response (for any in-flight request, in whatever order
    /// the server answers). A response for an id not in flight is a protocol
    /// error.
    pub async fn recv_response(&mut self) -> Result<Message, SessionError> {
        self.link.begin()?;
        let inflight = &mut self.inflight;
        let r = self
            .link
            .recv(|h| {
                if h.kind != Kind::Response {
                    return Err(SessionError::UnexpectedKind {
                        expected: Kind::Response,
                        got: h.kind,
                    });
                }
                inflight.complete(h.message_id)?;
                Ok(())
            })
            .await;
        if r.is_err() {
            self.inflight.fail_all();
        }
        self.link.end(r)
    }

    async fn expect_response(&mut self, code: u16, id: u64) -> Result<Message, SessionError> {
        let m = self.recv_response().await?;
        if m.header.message_id != id || m.header.code != code {
            self.link.broken = true;
            return Err(SessionError::Mismatch(format!(
                "expected id {id} method {code}, got id {} method {}",
                m.header.message_id, m.header.code
            )));
        }
        if m.header.transport_status != TransportStatus::OK {
            return Err(SessionError::Status {
                status: m.header.transport_status,
                code,
                message_id: id,
            });
        }
        Ok(m)
    }

    /// Sends one request and waits for its response payload. Must not be mixed
    /// with outstanding pipelined requests.
    pub async fn call(&mut self, code: u16, payload: &[u8]) -> Result<Vec<u8>, SessionError> {
        let id = self.send_request(code, payload).await?;
        Ok(self.expect_response(code, id).await?.payload)
    }

    /// Sends a batch and returns the response items (correlated by position).
    pub async fn call_batch(
        &mut self,
        code: u16,
        items: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        let id = self.send_batch_request(code, items).await?;
        let m = self.expect_response(code, id).await?;
        if !m.header.is_batch() || m.header.item_count as usize != items.len() {
            self.link.broken = true;
            return Err(SessionError::Mismatch(format!(
                "batch of {} items answered with flags {:#x} and {} items",
                items.len(),
                m.header.flags,
                m.header.item_count
            )));
        }
        let out = decode_batch(&m.payload, m.header.item_count)
            .map(|v| v.into_iter().map(<[u8]>::to_vec).collect());
        if out.is_err() {
            self.link.broken = true;
        }
        Ok(out?)
    }
}

/// A received request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its header.
    pub header: Header,
    /// Its whole payload.
    pub payload: Vec<u8>,
}

impl Request {
    /// The items of a request: the batch items when BATCH is set, otherwise
    /// the whole payload as one item.
    pub fn items(&self) -> Result<Vec<&[u8]>, BatchError> {
        if self.header.is_batch() {
            decode_batch(&self.payload, self.header.item_count)
        } else {
            Ok(vec![&self.payload])
        }
    }
}

/// Server-side configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Limits, profiles, token and packet size.
    pub endpoint: EndpointConfig,
    /// How to treat non-zero HELLO flags and padding.
    pub reserved_field_policy: ReservedFieldPolicy,
    /// How long to wait for the client's HELLO.
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            endpoint: EndpointConfig::default(),
            reserved_field_policy: ReservedFieldPolicy::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The server end of one session.
#[derive(Debug)]
pub struct ServerSession<T> {
    link: Link<T>,
}

impl<T: PacketTransport> ServerSession<T> {
    /// Runs the server handshake on a freshly accepted transport. Only the
    /// baseline profile is offered (shared memory is not implemented here).
    pub async fn handshake(
        mut transport: T,
        config: &ServerConfig,
        session_id: u64,
    ) -> Result<Self, SessionError> {
        let mut cfg = effective_config(&config.endpoint, &transport);
        cfg.supported_profiles &= profile::BASELINE;
        cfg.preferred_profiles &= profile::BASELINE;
        let mut buf = [0u8; HANDSHAKE_RECV_LEN];
        let n =
            match tokio::time::timeout(config.handshake_timeout, transport.recv_packet(&mut buf))
                .await
            {
                Err(_) => return Err(SessionError::HandshakeTimeout(config.handshake_timeout)),
                Ok(r) => r.map_err(map_io)?,
            };
        match server_decide(&buf[..n], &cfg, config.reserved_field_policy, session_id) {
            ServerDecision::Accept { ack, negotiated } => {
                transport.send_packet(&[&ack]).await.map_err(map_io)?;
                Ok(ServerSession {
                    link: Link::new(transport, negotiated, Role::Server),
                })
            }
            ServerDecision::Reject { ack, reason, .. } => {
                // Best effort: the client may already be gone.
                let _ = transport.send_packet(&[&ack]).await;
                Err(SessionError::Refused {
                    reason,
                    acked: true,
                })
            }
            ServerDecision::Close { reason } => Err(SessionError::Refused {
                reason,
                acked: false,
            }),
        }
    }

    /// The agreed session parameters.
    pub fn negotiated(&self) -> &Negotiated {
        &self.link.negotiated
    }

    /// Receives the next request; `Ok(None)` when the client closed the
    /// session between messages. A request over the negotiated limits is
    /// answered with LIMIT_EXCEEDED and then fails the session; a message that
    /// is not a request fails the session.
    pub async fn recv_request(&mut self) -> Result<Option<Request>, SessionError> {
        self.link.begin()?;
        let mut over_limit = None;
        let r = self
            .link
            .recv(|h| {
                if h.kind != Kind::Request {
                    return Err(SessionError::UnexpectedKind {
                        expected: Kind::Request,
                        got: h.kind,
                    });
                }
                Ok(())
            })
            .await;
        let r = match r {
            Ok(m) => Ok(Some(Request {
                header: m.header,
                payload: m.payload,
            })),
            Err(SessionError::Closed) => {
                self.link.busy = false;
                self.link.broken = true;
                return Ok(None);
            }
            Err(SessionError::Limit(e)) => {
                over_limit = Some(e);
                Err(SessionError::Limit(e))
            }
            Err(e) => Err(e),
        };
        if let Some(limit) = over_limit {
            // The header was valid: tell the client before closing.
            if let Ok(h) = Header::decode(&self.link.buf) {
                if h.kind == Kind::Request {
                    let resp =
                        Header::response(h.code, h.message_id, TransportStatus::LIMIT_EXCEEDED, 0);
                    let _ = self.link.send(&resp, &[]).await;
                }
            }
            return self.link.end(Err(SessionError::Limit(limit)));
        }
        self.link.end(r)
    }

    /// Answers `request` with `status` and `payload` (non-OK statuses carry no
    /// payload: it is ignored).
    pub async fn send_response(
        &mut self,
        request: &Header,
        status: TransportStatus,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        self.link.begin()?;
        let payload = if status == TransportStatus::OK {
            payload
        } else {
            &[]
        };
        let r = match u32::try_from(payload.len()) {
            Ok(len) => {
                let h = Header::response(request.code, request.message_id, status, len);
                self.link.send(&h, payload).await
            }
            Err(_) => Err(ChunkError::MessageTooLarge(payload.len()).into()),
        };
        self.link.end(r)
    }

    /// Answers a batch request with one response item per request item.
    pub async fn send_batch_response(
        &mut self,
        request: &Header,
        items: &[&[u8]],
    ) -> Result<(), SessionError> {
        self.link.begin()?;
        let r = match encode_batch(items) {
            Ok(payload) => {
                let h = Header {
                    flags: FLAG_BATCH,
                    item_count: items.len() as u32,
                    ..Header::response(
                        request.code,
                        request.message_id,
                        TransportStatus::OK,
                        payload.len() as u32,
                    )
                };
                self.link.send(&h, &payload).await
            }
            Err(e) => Err(e.into()),
        };
        self.link.end(r)
    }
}

/// A netipc server: a listener of the platform's baseline transport by
/// default (`{run_dir}/{service}.sock` on Linux, the service's named pipe on
/// Windows), or any [`PacketListener`].
#[derive(Debug)]
pub struct Server<L = DefaultListener> {
    listener: L,
    config: Mutex<ServerConfig>,
    next_session_id: AtomicU64,
}

/// An accepted connection whose handshake has not run yet.
#[derive(Debug)]
pub struct PendingSession<T = DefaultTransport> {
    transport: T,
    config: ServerConfig,
    session_id: u64,
}

impl<T: PacketTransport> PendingSession<T> {
    /// The session id this connection was given.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Runs the handshake.
    pub async fn handshake(self) -> Result<ServerSession<T>, SessionError> {
        ServerSession::handshake(self.transport, &self.config, self.session_id).await
    }
}

impl Server<DefaultListener> {
    /// Binds the service on the platform's baseline transport (Linux: stale
    /// recovery, mode 0600; Windows: a message-mode pipe sized for the
    /// configured packet size).
    pub fn bind(
        run_dir: &Path,
        service: &str,
        config: ServerConfig,
    ) -> Result<Server, SessionError> {
        let listener = crate::endpoint::bind(run_dir, service, config.endpoint.packet_size)?;
        Ok(Server::with_listener(listener, config))
    }
}

#[cfg(target_os = "linux")]
impl Server<UdsListener> {
    /// The socket path.
    pub fn path(&self) -> &Path {
        self.listener.path()
    }
}

impl<L: PacketListener> Server<L> {
    /// A server over an existing listener; session ids start at 1.
    pub fn with_listener(listener: L, config: ServerConfig) -> Server<L> {
        Server {
            listener,
            config: Mutex::new(config),
            next_session_id: AtomicU64::new(1),
        }
    }

    /// The listener.
    pub fn listener(&self) -> &L {
        &self.listener
    }

    /// The configuration new sessions get.
    pub fn config(&self) -> ServerConfig {
        *self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the configuration of future sessions (e.g. learned limits).
    pub fn update_config(&self, update: impl FnOnce(&mut ServerConfig)) {
        update(&mut self.config.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Accepts a connection and assigns it the next session id (ids start at
    /// 1 and are consumed even when the handshake then fails).
    pub async fn accept_connection(&self) -> Result<PendingSession<L::Transport>, SessionError> {
        let transport = self.listener.accept().await?;
        Ok(PendingSession {
            transport,
            config: self.config(),
            session_id: self.next_session_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Accepts a connection and runs its handshake. A failed handshake is
    /// returned as an error; the server stays usable.
    pub async fn accept(&self) -> Result<ServerSession<L::Transport>, SessionError> {
        self.accept_connection().await?.handshake().await
    }
}
