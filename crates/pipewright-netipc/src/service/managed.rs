//! The L2 managed server: accepts clients, runs each session in its own task
//! up to a worker limit, dispatches requests to a [`Service`] and learns
//! larger limits from overflows.
//!
//! Per session: a request for another method gets UNSUPPORTED and the session
//! goes on; a request the codec rejects gets BAD_ENVELOPE, a failed handler
//! INTERNAL_ERROR, and an answer over the negotiated response limit
//! LIMIT_EXCEEDED, each followed by closing the session. A request over the
//! request limit is answered LIMIT_EXCEEDED and the session closes. A
//! response overflow raises the response limit offered to later sessions
//! (next power of two, up to the ceiling). The request limit agreed in a
//! handshake is the client's proposal, so a client that grows its requests
//! is accepted up to the server's request cap. Over the worker limit a client
//! completes the handshake and is then closed at once, as upstream does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pipewright_netipc::session::SessionError> {
//! use pipewright_netipc::handshake::EndpointConfig;
//! use pipewright_netipc::managed::{ManagedConfig, ManagedServer};
//! use pipewright_netipc::service::Increment;
//! let config = ManagedConfig::new(EndpointConfig { auth_token: 42, ..Default::default() });
//! let server = ManagedServer::bind("/run/netdata".as_ref(), "increment", config, Increment)?;
//! let stop = server.stopper();
//! tokio::spawn(async move { tokio::time::sleep(std::time::Duration::from_secs(60)).await; stop.stop() });
//! server.run().await
//! # }
//! ```

use crate::service::Service;
use crate::session::handshake::EndpointConfig;
use crate::session::{Server, ServerConfig, ServerSession, SessionError};
use crate::transport::endpoint::DefaultListener;
use crate::transport::shm::link::{receive_message, send_message, EndFlag};
use crate::transport::shm::ShmPeer;
use crate::transport::{PacketListener, PacketTransport};
use crate::wire::batch::{decode_batch, encode_batch};
use crate::wire::header::{Header, Kind, TransportStatus, HEADER_LEN};
use crate::wire::limits::Limits;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Auto-growth ceiling for a limit configured as 0 (`NIPC_MAX_PAYLOAD_CAP`).
pub const MAX_PAYLOAD_CAP: u32 = 1 << 20;
/// Default request limit a typed-service client proposes.
pub const SERVICE_REQUEST_DEFAULT: u32 = 1024;
/// Default response ceiling of a typed service
/// (`NIPC_SERVICE_RESPONSE_BUF_DEFAULT`).
pub const SERVICE_RESPONSE_DEFAULT: u32 = 65536;
/// Default number of concurrent sessions.
pub const DEFAULT_WORKERS: usize = 8;
/// Default number of handshakes in progress at once
/// ([`ManagedConfig::max_handshakes`]).
pub const DEFAULT_MAX_HANDSHAKES: usize = 16;
/// Default number of shared-memory sessions at once
/// ([`ManagedConfig::max_shm_sessions`]).
pub const DEFAULT_MAX_SHM_SESSIONS: usize = 64;
/// Default number of baseline sessions served on threads of their own
/// ([`ManagedConfig::max_session_threads`]).
pub const DEFAULT_MAX_SESSION_THREADS: usize = 64;
/// Request batch items a managed server allows when its configuration says 0
/// (the handshake agrees on `min(client, server)`).
pub const SERVICE_BATCH_ITEMS_DEFAULT: u32 = 1024;

/// Managed-server configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedConfig {
    /// Handshake configuration of the first session (limits grow from here).
    pub server: ServerConfig,
    /// Concurrent sessions; more clients are closed after the handshake
    /// (which then never offers shared memory).
    pub workers: usize,
    /// Handshakes in progress at once (at least 1). The server accepts a
    /// connection only while fewer are in progress: more clients wait in the
    /// listener's queue (each handshake ends within
    /// `server.handshake_timeout`), so a flood of connections that never
    /// finish their handshake holds at most this many descriptors.
    pub max_handshakes: usize,
    /// Shared-memory sessions at once (each runs on a thread of its own,
    /// not on tokio's blocking pool). A session over the limit, or over
    /// `workers`, is offered the baseline only: its HELLO_ACK selects
    /// BASELINE and it is served over the connection.
    pub max_shm_sessions: usize,
    /// Baseline sessions served on a thread of their own at once, when the
    /// transport has a blocking form (named pipes: each request is awaited
    /// on the session's thread, on the read's own event, the way a blocking
    /// server does, with no hop through a completion thread or the runtime).
    /// Further sessions, and every UDS session, are served as tasks. 0 serves
    /// every session as a task.
    pub max_session_threads: usize,
    /// How far the response limit may grow.
    pub max_response_ceiling: u32,
}

impl ManagedConfig {
    /// From an endpoint configuration: a request cap configured as 0 is
    /// 1 MiB; a response limit configured as 0 starts at 65536 and may grow
    /// to 1 MiB; a request batch limit configured as 0 is
    /// [`SERVICE_BATCH_ITEMS_DEFAULT`]; configured limits are fixed.
    pub fn new(endpoint: EndpointConfig) -> ManagedConfig {
        let req = match endpoint.max_request_payload_bytes {
            0 => MAX_PAYLOAD_CAP,
            v => v,
        };
        let (resp, resp_ceiling) = match endpoint.max_response_payload_bytes {
            0 => (SERVICE_RESPONSE_DEFAULT, MAX_PAYLOAD_CAP),
            v => (v, v),
        };
        let batch = match endpoint.max_request_batch_items {
            0 => SERVICE_BATCH_ITEMS_DEFAULT,
            v => v,
        };
        ManagedConfig {
            server: ServerConfig {
                endpoint: EndpointConfig {
                    max_request_payload_bytes: req,
                    max_request_batch_items: batch,
                    max_response_payload_bytes: resp,
                    ..endpoint
                },
                ..ServerConfig::default()
            },
            workers: DEFAULT_WORKERS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_shm_sessions: DEFAULT_MAX_SHM_SESSIONS,
            max_session_threads: DEFAULT_MAX_SESSION_THREADS,
            max_response_ceiling: resp_ceiling,
        }
    }
}

/// The limit to offer after a message of `needed` bytes overflowed `current`:
/// the next power of two (at least 16), at most `ceiling`, never lower than
/// `current`.
///
/// ```
/// use pipewright_netipc::managed::learned_limit;
/// assert_eq!(learned_limit(1024, 1500, 1 << 20), 2048);
/// assert_eq!(learned_limit(1024, 5_000_000, 1 << 20), 1 << 20);
/// assert_eq!(learned_limit(1024, 10, 1 << 20), 1024);
/// ```
pub fn learned_limit(current: u32, needed: u64, ceiling: u32) -> u32 {
    if needed <= u64::from(current) {
        return current;
    }
    let grown = needed
        .max(16)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX);
    let grown = u32::try_from(grown).unwrap_or(u32::MAX).min(ceiling);
    grown.max(current)
}

/// Stops a running [`ManagedServer`] (sessions in progress are cut).
#[derive(Debug, Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    /// Asks the server to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A managed server over a listener (the platform's baseline by default).
pub struct ManagedServer<L = DefaultListener> {
    shared: Arc<Shared<L>>,
    stop: watch::Sender<bool>,
}

struct Shared<L> {
    server: Server<L>,
    service: Arc<dyn Service>,
    config: ManagedConfig,
}

impl<L> std::fmt::Debug for ManagedServer<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedServer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl ManagedServer<DefaultListener> {
    /// Binds `service_name` in `run_dir` on the platform's baseline transport.
    pub fn bind(
        run_dir: &Path,
        service_name: &str,
        config: ManagedConfig,
        service: impl Service,
    ) -> Result<Self, SessionError> {
        let server = Server::bind(run_dir, service_name, config.server)?;
        Ok(ManagedServer::with_server(server, config, service))
    }
}

impl<L: PacketListener> ManagedServer<L> {
    /// A managed server over an existing [`Server`] (its configuration is
    /// replaced by `config.server`).
    pub fn with_server(server: Server<L>, config: ManagedConfig, service: impl Service) -> Self {
        server.update_config(|c| *c = config.server);
        ManagedServer {
            shared: Arc::new(Shared {
                server,
                service: Arc::new(service),
                config,
            }),
            stop: watch::channel(false).0,
        }
    }

    /// The underlying server (its current, possibly learned, configuration).
    pub fn server(&self) -> &Server<L> {
        &self.shared.server
    }

    /// A handle that stops [`run`](Self::run).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Serves until stopped. Fails only if the listener fails for good.
    ///
    /// Admission, in order: a connection is accepted only while fewer than
    /// `max_handshakes` handshakes are in progress; its HELLO is read and
    /// checked (token, profiles, limits) before anything is allocated for
    /// it; an accepted HELLO then takes a worker slot (none free: the
    /// handshake completes on the baseline and the connection is closed, as
    /// upstream does) and, if it selected shared memory, a shared-memory
    /// slot (none free: it is served on the baseline); only then is its
    /// region created.
    pub async fn run(&self) -> Result<(), SessionError> {
        let mut stopped = self.stop.subscribe();
        let config = &self.shared.config;
        let workers = Arc::new(Semaphore::new(config.workers.max(1)));
        let handshakes = Arc::new(Semaphore::new(config.max_handshakes.max(1)));
        let shm_slots = Arc::new(Semaphore::new(config.max_shm_sessions));
        let thread_slots = Arc::new(Semaphore::new(config.max_session_threads));
        let mut sessions = JoinSet::new();
        // Every session thread (shared memory, or a blocking baseline) holds a
        // clone until its region or pipe is gone.
        let (shm_done, mut shm_all_done) = mpsc::channel::<()>(1);
        let result = loop {
            while sessions.try_join_next().is_some() {}
            if *stopped.borrow_and_update() {
                break Ok(());
            }
            let handshake = tokio::select! {
                _ = stopped.changed() => continue,
                p = handshakes.clone().acquire_owned() => p,
            };
            let Ok(handshake) = handshake else {
                break Ok(());
            };
            let pending = tokio::select! {
                _ = stopped.changed() => continue,
                p = self.shared.server.accept_connection() => p,
            };
            let pending = match pending {
                Ok(p) => p,
                Err(SessionError::Io(e)) if is_fatal_accept(&e) => break Err(SessionError::Io(e)),
                Err(_) => {
                    // Transient (e.g. out of descriptors): back off briefly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let shared = self.shared.clone();
            let done = shm_done.clone();
            let workers = workers.clone();
            let shm_slots = shm_slots.clone();
            let thread_slots = thread_slots.clone();
            sessions.spawn(async move {
                let mut permit = None;
                let mut shm_permit = None;
                let admitted = pending
                    .handshake_admitting(|shm| {
                        permit = workers.try_acquire_owned().ok();
                        if shm && permit.is_some() {
                            shm_permit = shm_slots.try_acquire_owned().ok();
                        }
                        shm_permit.is_some()
                    })
                    .await;
                drop(handshake);
                let Ok(session) = admitted else {
                    return;
                };
                if permit.is_some() {
                    match (session.shm_profile(), shm_permit) {
                        (Some(_), Some(slot)) => {
                            serve_shm_session(session, shared, done, slot).await
                        }
                        _ => match thread_slots.try_acquire_owned() {
                            Ok(slot) => serve_on_thread(session, shared, done, slot).await,
                            Err(_) => serve_session(session, &shared).await,
                        },
                    }
                }
                drop(permit);
            });
        };
        sessions.shutdown().await;
        drop(shm_done);
        while shm_all_done.recv().await.is_some() {}
        result
    }
}

fn is_fatal_accept(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

/// A response's header (its payload is in the caller's buffer) and whether the session
/// ends after it.
struct Reply {
    header: Header,
    close: bool,
}

impl Reply {
    fn status(request: &Header, status: TransportStatus, close: bool, out: &mut Vec<u8>) -> Reply {
        out.clear();
        Reply {
            header: Header::response(request.code, request.message_id, status, 0),
            close,
        }
    }
}

/// Dispatches one request to the service and builds the answer, its payload in `out` (learning
/// a larger response limit when the answer overflows `max_response`).
fn reply_to<L: PacketListener>(
    request: &Header,
    payload: &[u8],
    shared: &Shared<L>,
    max_response: u64,
    out: &mut Vec<u8>,
) -> Reply {
    let service = &shared.service;
    if service.method().is_some_and(|m| m != request.code) {
        return Reply::status(request, TransportStatus::UNSUPPORTED, false, out);
    }
    let answered = if request.is_batch() {
        answer_batch(request, payload, service.as_ref()).map(|(header, encoded)| {
            *out = encoded;
            header
        })
    } else {
        // A single request is answered into the reused buffer.
        service
            .handle_into(request.code, payload, out)
            .map(|()| {
                let len = out.len() as u32;
                Header::response(request.code, request.message_id, TransportStatus::OK, len)
            })
            .map_err(|e| e.status())
    };
    match answered {
        Ok(header) if out.len() as u64 <= max_response => Reply {
            header,
            close: false,
        },
        Ok(_) => {
            learn(shared, out.len() as u64);
            Reply::status(request, TransportStatus::LIMIT_EXCEEDED, true, out)
        }
        Err(status) if status == TransportStatus::LIMIT_EXCEEDED => {
            // Only a batch too large to encode at all gets here.
            learn(shared, u64::MAX);
            Reply::status(request, status, true, out)
        }
        Err(status) => Reply::status(request, status, true, out),
    }
}

/// Answers every item of a batch request; the response is a batch of as many items.
fn answer_batch(
    request: &Header,
    payload: &[u8],
    service: &dyn Service,
) -> Result<(Header, Vec<u8>), TransportStatus> {
    let items =
        decode_batch(payload, request.item_count).map_err(|_| TransportStatus::BAD_ENVELOPE)?;
    let answers = items
        .into_iter()
        .map(|item| service.handle(request.code, item))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.status())?;
    let refs: Vec<&[u8]> = answers.iter().map(Vec::as_slice).collect();
    // An envelope too large to encode is over any limit: LIMIT_EXCEEDED.
    let encoded = encode_batch(&refs).map_err(|_| TransportStatus::LIMIT_EXCEEDED)?;
    let header = Header::batch_response(
        request.code,
        request.message_id,
        refs.len() as u32,
        encoded.len() as u32,
    );
    Ok((header, encoded))
}

async fn serve_session<T: PacketTransport, L: PacketListener>(
    mut session: ServerSession<T>,
    shared: &Shared<L>,
) {
    let max_response = u64::from(session.negotiated().max_response_payload_bytes);
    let mut answer = Vec::new();
    loop {
        let req = match session.recv_request().await {
            Ok(Some(req)) => req,
            // Over the request limit: already answered LIMIT_EXCEEDED.
            Ok(None) | Err(_) => return,
        };
        let reply = reply_to(&req.header, &req.payload, shared, max_response, &mut answer);
        let sent = session.send_reply(&reply.header, &answer).await;
        if reply.close || sent.is_err() {
            return;
        }
    }
}

/// Serves a baseline session on a thread of its own when its transport has a
/// blocking form (named pipes), else as this task. The thread holds `done` and
/// `slot` until the session and its pipe are gone; cancelling this task (the
/// server stops) interrupts the thread's blocked receive.
async fn serve_on_thread<T: PacketTransport + 'static, L: PacketListener>(
    mut session: ServerSession<T>,
    shared: Arc<Shared<L>>,
    done: mpsc::Sender<()>,
    slot: OwnedSemaphorePermit,
) {
    let stop = match session.make_blocking().await {
        Ok(Some(stop)) => stop,
        Ok(None) => return serve_session(session, &shared).await,
        Err(_) => return,
    };
    let session_id = session.negotiated().session_id;
    let (finished, thread_done) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(format!("netipc-session-{session_id}"))
        .spawn(move || {
            super::on_thread::run(serve_session(session, &shared));
            drop(shared);
            drop(slot);
            drop(finished);
            drop(done);
        });
    if spawned.is_ok() {
        let mut guard = InterruptOnDrop(Some(stop));
        let _ = thread_done.await;
        guard.0 = None;
    }
}

/// Interrupts a session thread's blocked call if the task waiting for it is
/// dropped before the thread is done.
struct InterruptOnDrop(Option<pipewright::Interrupter>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            stop.interrupt();
        }
    }
}

/// Serves a shared-memory session on a thread of its own (not tokio's
/// blocking pool, whose size would otherwise cap the sessions silently): the
/// region is waited on in 100 ms slices; the session ends when the client's
/// baseline connection closes or the server stops (the link's end flag).
/// `done` and the session's `slot` are held until the region is released
/// (unmapped and removed).
async fn serve_shm_session<T: PacketTransport + 'static, L: PacketListener>(
    mut session: ServerSession<T>,
    shared: Arc<Shared<L>>,
    done: mpsc::Sender<()>,
    slot: OwnedSemaphorePermit,
) {
    let max_response = u64::from(session.negotiated().max_response_payload_bytes);
    let session_id = session.negotiated().session_id;
    let Some((mut link, limits)) = session.take_shm() else {
        return;
    };
    let Some(mut peer) = link.peer.take() else {
        return;
    };
    let ended = link.ended.clone();
    let (finished, thread_done) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(format!("netipc-shm-{session_id}"))
        .spawn(move || {
            serve_region(&mut *peer, &ended, &limits, &shared, max_response);
            // Release the region and the server before reporting done: `run`
            // returns once every `done` is gone, and its caller may then
            // expect the region file and the listener to be gone too.
            drop(peer);
            drop(shared);
            drop(slot);
            drop(finished);
            drop(done);
        });
    if spawned.is_ok() {
        // Dropping `link` (here, or when this task is aborted on stop) sets
        // the end flag, which ends the thread within one wait slice; the
        // channel closes when the thread is done.
        let _ = thread_done.await;
    }
    drop(link);
}

/// The synchronous loop of one shared-memory session: wait on the region,
/// dispatch, publish the answer; returns when the session ends.
fn serve_region<L: PacketListener>(
    peer: &mut dyn ShmPeer,
    ended: &EndFlag,
    limits: &Limits,
    shared: &Shared<L>,
    max_response: u64,
) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut answer = Vec::new();
    loop {
        let Ok(header) = receive_message(peer, &mut buf, ended, None) else {
            return;
        };
        if header.kind != Kind::Request {
            return;
        }
        if limits.check_receive(&header).is_err() {
            let resp = Header::response(
                header.code,
                header.message_id,
                TransportStatus::LIMIT_EXCEEDED,
                0,
            );
            let _ = send_message(peer, &mut out, &resp, &[]);
            return;
        }
        let reply = reply_to(
            &header,
            &buf[HEADER_LEN..],
            shared,
            max_response,
            &mut answer,
        );
        if limits.check_send(&reply.header).is_err()
            || send_message(peer, &mut out, &reply.header, &answer).is_err()
            || reply.close
        {
            return;
        }
    }
}

fn learn<L: PacketListener>(shared: &Shared<L>, needed: u64) {
    let ceiling = shared.config.max_response_ceiling;
    shared.server.update_config(|c| {
        let e = &mut c.endpoint;
        e.max_response_payload_bytes = learned_limit(e.max_response_payload_bytes, needed, ceiling);
    });
}
