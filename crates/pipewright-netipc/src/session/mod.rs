//! Async sessions over any [`PacketTransport`]: the client [`Session`] and the
//! server side ([`Server`] on UDS, [`ServerSession`] per connection). Messages
//! larger than the negotiated packet size are chunked transparently; batches
//! and pipelined requests are supported.
//!
//! Sessions opened by name ([`Session::connect`], [`Server::bind`]) also run
//! the platform's shared-memory profiles when both configurations offer
//! them: the server creates the session's region once it has accepted the
//! HELLO (right token) and selected SHM (and answers with the baseline if it
//! cannot), the client attaches after an ACK that
//! selected SHM, and every later message travels through the region (whole,
//! never chunked, one request at a time). The baseline connection then only
//! tells each side when the other is gone.
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

pub mod handshake;
pub mod inflight;

use crate::session::handshake::{
    build_hello, client_check_ack, server_decide, EndpointConfig, HandshakeError, Negotiated,
    Refusal, ReservedFieldPolicy, ServerDecision, HANDSHAKE_RECV_LEN,
};
use crate::session::inflight::{InFlight, InFlightError};
use crate::transport::endpoint::{DefaultListener, DefaultTransport};
use crate::transport::shm::link::ShmLink;
use crate::transport::shm::{platform, RegionParams, ShmError};
use crate::transport::{PacketListener, PacketTransport, TransportError};
use crate::wire::batch::{decode_batch, encode_batch, BatchError};
use crate::wire::chunk::{split_message, ChunkError, Message, Progress, Reassembler};
use crate::wire::header::{Header, HeaderError, Kind, TransportStatus, FLAG_BATCH, HEADER_LEN};
use crate::wire::hello::profile;
use crate::wire::limits::{LimitError, Limits, Role};
use crate::wire::naming::NamingError;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use crate::transport::uds::{BindError, UdsListener};

/// How long either side waits for the peer's handshake message.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client retries attaching the server's region
/// (`CLIENT_SHM_ATTACH_RETRY_TIMEOUT_MS`).
pub const SHM_ATTACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Every shared-memory profile bit (POSIX 0x02/0x04, Windows 0x02/0x04/0x08).
pub const ALL_SHM_PROFILES: u32 = profile::SHM_HYBRID | profile::SHM_FUTEX | profile::SHM_WAITADDR;

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
    /// A shared-memory operation failed (e.g. a message larger than the
    /// region's area, or a corrupted region).
    #[error(transparent)]
    Shm(ShmError),
    /// The server selected a shared-memory profile but its region could not
    /// be attached; the session is closed (the L2 client then reconnects
    /// without the SHM profiles).
    #[error("cannot attach the server's shared-memory region for profile {profile:#x}: {source}")]
    ShmAttach {
        /// The selected profile.
        profile: u32,
        /// Why attaching failed.
        source: ShmError,
    },
    /// A shared-memory session carries one request at a time (the session
    /// stays usable).
    #[error("a shared-memory session carries one request at a time (no pipelining): receive the response first, or send a batch")]
    ShmOneInFlight,
    /// The response did not arrive before the call's deadline.
    #[error("no response before the call deadline")]
    DeadlineExceeded,
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

impl From<TransportError> for SessionError {
    fn from(e: TransportError) -> SessionError {
        match e {
            TransportError::Io(e) => SessionError::Io(e),
            TransportError::Closed => SessionError::Closed,
            TransportError::Header(e) => SessionError::Header(e),
            TransportError::Shm(e) => SessionError::Shm(e),
            TransportError::DeadlineExceeded => SessionError::DeadlineExceeded,
            TransportError::Naming(e) => SessionError::Naming(e),
            #[cfg(target_os = "linux")]
            TransportError::Bind(e) => SessionError::Bind(e),
            TransportError::Broken => SessionError::Broken,
        }
    }
}

fn map_io(e: io::Error) -> SessionError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => SessionError::Closed,
        // Only a blocking transport's read timeout (the call timeout) gives this.
        io::ErrorKind::TimedOut => SessionError::DeadlineExceeded,
        _ => SessionError::Io(e),
    }
}

/// Packet framing shared by both roles: limits, chunking, the receive buffer
/// and the broken flag.
/// Over shared memory the transport belongs to the region's watcher and
/// `shm` carries the messages.
#[derive(Debug)]
struct Link<T> {
    transport: Option<T>,
    shm: Option<ShmLink>,
    negotiated: Negotiated,
    limits: Limits,
    buf: Vec<u8>,
    /// A payload buffer handed back by the caller ([`Session::recycle`]), reused for the
    /// next shared-memory answer instead of a new allocation.
    spare: Vec<u8>,
    busy: bool,
    broken: bool,
}

impl<T: PacketTransport> Link<T> {
    fn new(transport: T, negotiated: Negotiated, role: Role) -> Link<T> {
        Link {
            transport: Some(transport),
            shm: None,
            limits: Limits::new(role, &negotiated),
            buf: vec![0; negotiated.packet_size as usize],
            spare: Vec::new(),
            negotiated,
            busy: false,
            broken: false,
        }
    }

    fn over_shm(shm: ShmLink, negotiated: Negotiated, role: Role) -> Link<T> {
        Link {
            transport: None,
            shm: Some(shm),
            limits: Limits::new(role, &negotiated),
            buf: Vec::new(),
            spare: Vec::new(),
            negotiated,
            busy: false,
            broken: false,
        }
    }

    fn transport(&mut self) -> Result<&mut T, SessionError> {
        self.transport.as_mut().ok_or(SessionError::Broken)
    }

    /// [`PacketTransport::make_blocking`] for a baseline link; `None` over shared memory
    /// or when the transport has no blocking form.
    async fn make_blocking(
        &mut self,
        read_timeout: Option<std::time::Duration>,
    ) -> Result<Option<pipewright::Interrupter>, SessionError> {
        match &mut self.transport {
            Some(t) if self.shm.is_none() => t.make_blocking(read_timeout).await.map_err(map_io),
            _ => Ok(None),
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
        if let Some(shm) = &mut self.shm {
            return Ok(shm.send(header, payload)?);
        }
        let packets = split_message(header, payload, self.negotiated.packet_size as usize)?;
        let transport = self.transport()?;
        for p in packets {
            transport
                .send_packet(&[&p.prefix, p.body])
                .await
                .map_err(map_io)?;
        }
        Ok(())
    }

    /// Receives one message. `deadline` bounds shared-memory waits (baseline
    /// callers wrap the future in a timeout instead).
    async fn recv(
        &mut self,
        mut on_header: impl FnMut(&Header) -> Result<(), SessionError>,
        deadline: Option<Instant>,
    ) -> Result<Message, SessionError> {
        if let Some(shm) = &mut self.shm {
            let header = shm.receive(&mut self.buf, deadline).await?;
            self.limits.check_receive(&header)?;
            on_header(&header)?;
            let mut payload = std::mem::take(&mut self.spare);
            payload.clear();
            payload.extend_from_slice(&self.buf[HEADER_LEN..]);
            return Ok(Message { header, payload });
        }
        let transport = self.transport.as_mut().ok_or(SessionError::Broken)?;
        let n = transport.recv_packet(&mut self.buf).await.map_err(map_io)?;
        let packet = &self.buf[..n];
        let header = Header::decode(packet)?;
        self.limits.check_receive(&header)?;
        on_header(&header)?;
        let mut r = match Reassembler::start(header, packet, self.buf.len())? {
            Progress::Complete(m) => return Ok(m),
            Progress::Partial(r) => r,
        };
        loop {
            let n = transport.recv_packet(&mut self.buf).await.map_err(map_io)?;
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

/// Where a session's shared-memory region lives (the names derive from it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShmSite {
    run_dir: String,
    service: String,
}

impl ShmSite {
    fn new(run_dir: &Path, service: &str) -> Option<ShmSite> {
        Some(ShmSite {
            run_dir: crate::transport::endpoint::run_dir_str(run_dir)
                .ok()?
                .to_owned(),
            service: service.to_owned(),
        })
    }

    fn params(&self, session_id: u64, cfg: &EndpointConfig) -> RegionParams {
        RegionParams {
            run_dir: self.run_dir.clone(),
            service: self.service.clone(),
            session_id,
            auth_token: cfg.auth_token,
            max_request_payload: cfg.max_request_payload_bytes,
            max_response_payload: cfg.max_response_payload_bytes,
        }
    }
}

impl Session<DefaultTransport> {
    /// Connects to the service over the platform's baseline transport
    /// (`{run_dir}/{service}.sock` on Linux, the service's named pipe on
    /// Windows) and performs the handshake. When the configuration offers
    /// shared-memory profiles and the server selects one, the session runs
    /// over the server's region; a region that cannot be attached is
    /// [`SessionError::ShmAttach`] (reconnect without the SHM bits).
    pub async fn connect(
        run_dir: &Path,
        service: &str,
        config: &EndpointConfig,
    ) -> Result<Self, SessionError> {
        Session::connect_with(run_dir, service, config, false).await
    }

    /// [`connect`](Self::connect); `inline_shm` makes shared-memory waits
    /// block the calling thread instead of hopping to the blocking pool (for
    /// callers that own their thread, like the blocking client).
    pub(crate) async fn connect_with(
        run_dir: &Path,
        service: &str,
        config: &EndpointConfig,
        inline_shm: bool,
    ) -> Result<Self, SessionError> {
        let transport =
            crate::transport::endpoint::connect(run_dir, service, config.packet_size).await?;
        let site = ShmSite::new(run_dir, service);
        Session::handshake_at(transport, config, site.as_ref(), inline_shm).await
    }
}

impl<T: PacketTransport + 'static> Session<T> {
    /// Runs the client handshake on a connected transport. The advertised
    /// packet size is the configured one (or the transport's automatic size),
    /// capped at what the transport can send. Without a run directory and
    /// service there is no region to attach, so only the baseline profile is
    /// offered (use [`Session::connect`] for shared memory).
    pub async fn handshake(transport: T, config: &EndpointConfig) -> Result<Self, SessionError> {
        Session::handshake_at(transport, config, None, false).await
    }

    async fn handshake_at(
        mut transport: T,
        config: &EndpointConfig,
        site: Option<&ShmSite>,
        inline_shm: bool,
    ) -> Result<Self, SessionError> {
        let mut cfg = effective_config(config, &transport);
        let shm_bits = if site.is_some() {
            platform::SUPPORTED_PROFILES
        } else {
            0
        };
        cfg.supported_profiles &= profile::BASELINE | shm_bits;
        cfg.preferred_profiles &= profile::BASELINE | shm_bits;
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
        let selected = negotiated.selected_profile;
        let link = match site {
            _ if selected == profile::BASELINE => Link::new(transport, negotiated, Role::Client),
            Some(site) if selected & shm_bits != 0 => {
                // The region is checked against what was agreed, not
                // against what this side proposed.
                let params = site.params(negotiated.session_id, &agreed_limits(cfg, &negotiated));
                let attached = tokio::task::spawn_blocking(move || {
                    platform::attach_client(&params, selected, SHM_ATTACH_TIMEOUT)
                })
                .await
                .map_err(|e| io::Error::other(format!("attach task failed: {e}")))?;
                let peer = attached.map_err(|source| SessionError::ShmAttach {
                    profile: selected,
                    source,
                })?;
                let shm = ShmLink::start(peer, transport, inline_shm);
                Link::over_shm(shm, negotiated, Role::Client)
            }
            _ => return Err(SessionError::UnsupportedProfile(selected)),
        };
        Ok(Session {
            link,
            inflight: InFlight::default(),
            next_id: 1,
        })
    }
}

impl<T: PacketTransport> Session<T> {
    /// Makes a baseline session's calls block the calling thread (for a caller that owns
    /// it, like the blocking client); a response that takes longer than `read_timeout`
    /// fails the call with [`SessionError::DeadlineExceeded`]. `false` when the session
    /// runs over shared memory or its transport has no blocking form.
    pub(crate) async fn make_blocking(
        &mut self,
        read_timeout: std::time::Duration,
    ) -> Result<bool, SessionError> {
        Ok(self.link.make_blocking(Some(read_timeout)).await?.is_some())
    }

    /// Whether the session runs over shared memory (and which profile).
    pub fn shm_profile(&self) -> Option<u32> {
        self.link.shm.as_ref().and_then(ShmLink::profile)
    }

    /// The agreed session parameters.
    pub fn negotiated(&self) -> &Negotiated {
        &self.link.negotiated
    }

    /// Hands a response payload back once it has been read, so the next response over shared
    /// memory reuses its allocation.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        self.link.spare = payload;
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
        if self.link.shm.is_some() && !self.inflight.is_empty() {
            return Err(SessionError::ShmOneInFlight);
        }
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
        self.recv_response_until(None).await
    }

    async fn recv_response_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Message, SessionError> {
        self.link.begin()?;
        let inflight = &mut self.inflight;
        let r = self
            .link
            .recv(
                |h| {
                    if h.kind != Kind::Response {
                        return Err(SessionError::UnexpectedKind {
                            expected: Kind::Response,
                            got: h.kind,
                        });
                    }
                    inflight.complete(h.message_id)?;
                    Ok(())
                },
                deadline,
            )
            .await;
        if r.is_err() {
            self.inflight.fail_all();
        }
        self.link.end(r)
    }

    async fn expect_response(
        &mut self,
        code: u16,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<Message, SessionError> {
        let m = self.recv_response_until(deadline).await?;
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
        self.call_until(code, payload, None).await
    }

    /// [`call`](Self::call) whose shared-memory wait gives up at `deadline`
    /// ([`SessionError::DeadlineExceeded`]).
    pub(crate) async fn call_until(
        &mut self,
        code: u16,
        payload: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, SessionError> {
        let id = self.send_request(code, payload).await?;
        Ok(self.expect_response(code, id, deadline).await?.payload)
    }

    /// Sends a batch and returns the response items (correlated by position).
    pub async fn call_batch(
        &mut self,
        code: u16,
        items: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        let id = self.send_batch_request(code, items).await?;
        let m = self.expect_response(code, id, None).await?;
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

impl<T: PacketTransport + 'static> ServerSession<T> {
    /// Runs the server handshake on a freshly accepted transport. Without a
    /// run directory and service there is no region to create, so only the
    /// baseline profile is offered (sessions accepted by a [`Server`] made
    /// with [`Server::bind`] also offer shared memory).
    pub async fn handshake(
        transport: T,
        config: &ServerConfig,
        session_id: u64,
    ) -> Result<Self, SessionError> {
        ServerSession::handshake_at(transport, config, session_id, None, |_| true).await
    }

    /// The handshake with the profile guarantee. The region is created only
    /// for a HELLO the server accepts (right token, a common profile), only
    /// for the selected SHM profile, and only when `admit_shm` allows it
    /// (called once per accepted HELLO, with whether SHM was selected); if
    /// SHM is not admitted or the region cannot be created, the decision is
    /// taken again with the SHM bits withdrawn, before the ACK is sent.
    async fn handshake_at(
        mut transport: T,
        config: &ServerConfig,
        session_id: u64,
        site: Option<&ShmSite>,
        admit_shm: impl FnOnce(bool) -> bool,
    ) -> Result<Self, SessionError> {
        let cfg = effective_config(&config.endpoint, &transport);
        let offered = match site {
            Some(_) => cfg.supported_profiles & platform::SUPPORTED_PROFILES,
            None => 0,
        };
        let with_shm = withdraw_shm(cfg, offered);
        let mut buf = [0u8; HANDSHAKE_RECV_LEN];
        let n =
            match tokio::time::timeout(config.handshake_timeout, transport.recv_packet(&mut buf))
                .await
            {
                Err(_) => return Err(SessionError::HandshakeTimeout(config.handshake_timeout)),
                Ok(r) => r.map_err(map_io)?,
            };
        let hello = &buf[..n];
        let policy = config.reserved_field_policy;
        let mut decision = server_decide(hello, &with_shm, policy, session_id);
        let mut peer = None;
        if let ServerDecision::Accept { negotiated, .. } = &decision {
            let selected = negotiated.selected_profile;
            let shm = selected != profile::BASELINE;
            if admit_shm(shm) && shm {
                // Sized by the agreed limits (the request area fits the
                // client's proposal, the response area the server's limit).
                let sized = agreed_limits(cfg, negotiated);
                peer = site.and_then(|site| {
                    platform::ServerRegions::create(&site.params(session_id, &sized), selected)
                        .ok()
                        .and_then(|r| r.select(selected))
                });
            }
            if shm && peer.is_none() {
                decision = server_decide(hello, &withdraw_shm(cfg, 0), policy, session_id);
            }
        }
        match decision {
            ServerDecision::Accept { ack, negotiated } => {
                transport.send_packet(&[&ack]).await.map_err(map_io)?;
                let selected = negotiated.selected_profile;
                if selected == profile::BASELINE {
                    return Ok(ServerSession {
                        link: Link::new(transport, negotiated, Role::Server),
                    });
                }
                let peer = peer.ok_or(SessionError::UnsupportedProfile(selected))?;
                let shm = ShmLink::start(peer, transport, false);
                Ok(ServerSession {
                    link: Link::over_shm(shm, negotiated, Role::Server),
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
}

/// `cfg` with the payload limits of `negotiated` (what sizes and bounds a
/// region).
fn agreed_limits(cfg: EndpointConfig, negotiated: &Negotiated) -> EndpointConfig {
    EndpointConfig {
        max_request_payload_bytes: negotiated.max_request_payload_bytes,
        max_response_payload_bytes: negotiated.max_response_payload_bytes,
        ..cfg
    }
}

/// `cfg` offering only the SHM profile bits in `available` (plus the rest).
fn withdraw_shm(mut cfg: EndpointConfig, available: u32) -> EndpointConfig {
    cfg.supported_profiles = (cfg.supported_profiles & !ALL_SHM_PROFILES) | available;
    cfg.preferred_profiles &= !ALL_SHM_PROFILES | available;
    cfg
}

impl<T: PacketTransport> ServerSession<T> {
    /// Makes a baseline session's receives and sends block the calling thread, for a server
    /// that serves it on a thread of its own; returns what stops that thread's blocked call,
    /// or `None` (over shared memory, or a transport with no blocking form).
    pub(crate) async fn make_blocking(
        &mut self,
    ) -> Result<Option<pipewright::Interrupter>, SessionError> {
        self.link.make_blocking(None).await
    }

    /// The agreed session parameters.
    pub fn negotiated(&self) -> &Negotiated {
        &self.link.negotiated
    }

    /// Whether the session runs over shared memory (and which profile).
    pub fn shm_profile(&self) -> Option<u32> {
        self.link.shm.as_ref().and_then(ShmLink::profile)
    }

    /// Takes a shared-memory session's region link and limits out (for a
    /// server that serves the region on its own thread); `None` for a
    /// baseline session. The session is unusable afterwards.
    pub(crate) fn take_shm(&mut self) -> Option<(ShmLink, Limits)> {
        let shm = self.link.shm.take()?;
        self.link.broken = true;
        Some((shm, self.link.limits))
    }

    /// Sends a complete response message as built by the caller.
    pub(crate) async fn send_reply(
        &mut self,
        header: &Header,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        self.link.begin()?;
        let r = self.link.send(header, payload).await;
        self.link.end(r)
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
            .recv(
                |h| {
                    if h.kind != Kind::Request {
                        return Err(SessionError::UnexpectedKind {
                            expected: Kind::Request,
                            got: h.kind,
                        });
                    }
                    Ok(())
                },
                None,
            )
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
                let h = Header::batch_response(
                    request.code,
                    request.message_id,
                    items.len() as u32,
                    payload.len() as u32,
                );
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
    shm_site: Option<ShmSite>,
}

/// An accepted connection whose handshake has not run yet.
#[derive(Debug)]
pub struct PendingSession<T = DefaultTransport> {
    transport: T,
    config: ServerConfig,
    session_id: u64,
    shm_site: Option<ShmSite>,
}

impl<T: PacketTransport + 'static> PendingSession<T> {
    /// The session id this connection was given.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Runs the handshake (creating the session's shared-memory region once
    /// the client's HELLO is accepted and selects SHM, when the server offers
    /// SHM and knows its run directory).
    pub async fn handshake(self) -> Result<ServerSession<T>, SessionError> {
        self.handshake_admitting(|_| true).await
    }

    /// [`handshake`](Self::handshake) where `admit_shm` decides, once the
    /// HELLO is accepted, whether this session may have a region (it is told
    /// whether SHM was selected); a refused session gets the baseline.
    pub(crate) async fn handshake_admitting(
        self,
        admit_shm: impl FnOnce(bool) -> bool,
    ) -> Result<ServerSession<T>, SessionError> {
        ServerSession::handshake_at(
            self.transport,
            &self.config,
            self.session_id,
            self.shm_site.as_ref(),
            admit_shm,
        )
        .await
    }
}

impl Server<DefaultListener> {
    /// Binds the service on the platform's baseline transport (Linux: stale
    /// recovery, mode 0600; Windows: a message-mode pipe sized for the
    /// configured packet size), then removes the stale shared-memory regions
    /// of dead servers of this service. Sessions offer the platform's SHM
    /// profiles when `config` supports them.
    pub fn bind(
        run_dir: &Path,
        service: &str,
        config: ServerConfig,
    ) -> Result<Server, SessionError> {
        let listener =
            crate::transport::endpoint::bind(run_dir, service, config.endpoint.packet_size)?;
        let shm_site = ShmSite::new(run_dir, service);
        if let Some(site) = &shm_site {
            // Best effort: a file that cannot be removed only costs its name
            // (its session id is then served without SHM).
            let _ = platform::remove_stale_regions(&site.run_dir, &site.service);
        }
        Ok(Server {
            shm_site,
            ..Server::with_listener(listener, config)
        })
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
            shm_site: None,
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
            shm_site: self.shm_site.clone(),
        })
    }

    /// Accepts a connection and runs its handshake. A failed handshake is
    /// returned as an error; the server stays usable.
    pub async fn accept(&self) -> Result<ServerSession<L::Transport>, SessionError> {
        self.accept_connection().await?.handshake().await
    }
}
