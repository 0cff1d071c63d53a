//! The L2 client: connects on first use, reconnects after a broken session,
//! and learns larger limits from LIMIT_EXCEEDED.
//!
//! * A connection attempt that finds no server is retried
//!   [`ClientConfig::connect_attempts`] times, [`ClientConfig::connect_interval`]
//!   apart. Handshake rejections are never retried.
//! * A request larger than the negotiated request limit raises the proposal
//!   (next power of two, up to the ceiling) and reconnects.
//! * A LIMIT_EXCEEDED response reconnects and retries while the negotiated
//!   response limit grows (the server learns), at most
//!   [`MAX_OVERFLOW_RECONNECTS`] times.
//! * A broken transport is reconnected once per call and the call retried.
//! * When the server selects a shared-memory profile that cannot be attached,
//!   the client drops the SHM profiles from its configuration and reconnects
//!   on the baseline (no same-session fallback).
//! * Over shared memory a call whose server dies or closes the session fails
//!   within one 100 ms wait slice; a silent server fails at the call timeout.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pipewright_netipc::client::ClientError> {
//! use pipewright_netipc::client::{Client, ClientConfig};
//! use pipewright_netipc::handshake::EndpointConfig;
//! let cfg = ClientConfig::new(EndpointConfig { auth_token: 42, ..Default::default() });
//! let mut client = Client::new("/run/netdata".as_ref(), "increment", cfg);
//! assert_eq!(client.increment(1).await?, 2);
//! # Ok(()) }
//! ```

use crate::codec::cgroups_snapshot::{self, Snapshot};
use crate::codec::{increment, string_reverse, CodecError};
use crate::service::managed::{
    learned_limit, MAX_PAYLOAD_CAP, SERVICE_REQUEST_DEFAULT, SERVICE_RESPONSE_DEFAULT,
};
use crate::session::handshake::{EndpointConfig, HandshakeError, Negotiated};
use crate::session::{Session, SessionError, ALL_SHM_PROFILES};
use crate::transport::endpoint::DefaultTransport;
use crate::wire::header::{method, TransportStatus};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Most reconnects one call makes because of overflows.
pub const MAX_OVERFLOW_RECONNECTS: u32 = 8;
/// Default per-call timeout (`NIPC_CLIENT_CALL_TIMEOUT_DEFAULT_MS`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Client configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Handshake configuration (limits grow from here).
    pub endpoint: EndpointConfig,
    /// How far the request limit may grow.
    pub max_request_ceiling: u32,
    /// How far the response limit may grow.
    pub max_response_ceiling: u32,
    /// Connection attempts while no server is found (at least 1).
    pub connect_attempts: u32,
    /// Pause between attempts.
    pub connect_interval: Duration,
    /// Deadline of one call (connect, send and receive).
    pub call_timeout: Duration,
}

impl ClientConfig {
    /// From an endpoint configuration: a limit configured as 0 starts at the
    /// service default (1024 for requests, 65536 for responses) and may grow
    /// to 1 MiB; a configured limit is fixed. 20 attempts 5 ms apart, 30 s
    /// call timeout.
    pub fn new(endpoint: EndpointConfig) -> ClientConfig {
        let (req, req_ceiling) = match endpoint.max_request_payload_bytes {
            0 => (SERVICE_REQUEST_DEFAULT, MAX_PAYLOAD_CAP),
            v => (v, v),
        };
        let (resp, resp_ceiling) = match endpoint.max_response_payload_bytes {
            0 => (SERVICE_RESPONSE_DEFAULT, MAX_PAYLOAD_CAP),
            v => (v, v),
        };
        ClientConfig {
            endpoint: EndpointConfig {
                max_request_payload_bytes: req,
                max_response_payload_bytes: resp,
                ..endpoint
            },
            max_request_ceiling: req_ceiling,
            max_response_ceiling: resp_ceiling,
            connect_attempts: 20,
            connect_interval: Duration::from_millis(5),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// Why an L2 call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No server answered at the endpoint.
    #[error("no netipc server at {address}: {source}")]
    NotFound {
        /// The socket path or pipe name.
        address: String,
        /// The last connect error.
        source: io::Error,
    },
    /// The server refused the handshake (not retried).
    #[error("{0}")]
    Rejected(HandshakeError),
    /// The server answered with a non-OK status.
    #[error("server answered {}", status_name(*.0))]
    Status(TransportStatus),
    /// The answer stayed over the limits after every allowed reconnect.
    #[error("response exceeds the limits the server offers (LIMIT_EXCEEDED after learning)")]
    LimitExceeded,
    /// The response payload failed to decode.
    #[error("malformed response: {0}")]
    Codec(#[from] CodecError),
    /// The call did not finish in time.
    #[error("call timed out after {0:?}")]
    TimedOut(Duration),
    /// Any other session failure.
    #[error(transparent)]
    Session(SessionError),
}

/// `NAME (n)` for a status, e.g. `UNSUPPORTED (4)`.
pub fn status_name(status: TransportStatus) -> String {
    match status.name() {
        Some(n) => format!("{n} ({})", status.0),
        None => format!("status {}", status.0),
    }
}

impl From<SessionError> for ClientError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Handshake(h) => ClientError::Rejected(h),
            SessionError::Status { status, .. } if status == TransportStatus::LIMIT_EXCEEDED => {
                ClientError::LimitExceeded
            }
            SessionError::Status { status, .. } => ClientError::Status(status),
            other => ClientError::Session(other),
        }
    }
}

/// An L2 client of one service.
#[derive(Debug)]
pub struct Client {
    run_dir: PathBuf,
    service: String,
    config: ClientConfig,
    session: Option<Session<DefaultTransport>>,
    inline_shm: bool,
}

enum Step {
    Done(Vec<u8>),
    Retry,
}

impl Client {
    /// A client of `service` in `run_dir`; nothing is connected yet.
    pub fn new(run_dir: &Path, service: &str, config: ClientConfig) -> Client {
        Client {
            run_dir: run_dir.to_owned(),
            service: service.to_owned(),
            config,
            session: None,
            inline_shm: false,
        }
    }

    /// Makes the calls block the calling thread (the blocking client's fast
    /// path): shared-memory waits run there instead of on the blocking pool,
    /// and a baseline named pipe is made blocking (a response waits on the
    /// calling thread, at most the call timeout).
    pub(crate) fn set_inline_shm(&mut self, inline: bool) {
        self.inline_shm = inline;
    }

    /// The shared-memory profile of the current session, if it runs over SHM.
    pub fn shm_profile(&self) -> Option<u32> {
        self.session.as_ref().and_then(Session::shm_profile)
    }

    /// The values of the current session, if connected.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.session.as_ref().map(Session::negotiated)
    }

    /// The current (possibly learned) handshake configuration.
    pub fn endpoint_config(&self) -> &EndpointConfig {
        &self.config.endpoint
    }

    /// Connects now (if not connected) and returns the negotiated values.
    pub async fn connect(&mut self) -> Result<Negotiated, ClientError> {
        let timeout = self.config.call_timeout;
        match tokio::time::timeout(timeout, self.ensure_session()).await {
            Ok(r) => r.map(|s| *s.negotiated()),
            Err(_) => Err(ClientError::TimedOut(timeout)),
        }
    }

    /// Drops the session; the next call reconnects.
    pub fn disconnect(&mut self) {
        self.session = None;
    }

    async fn ensure_session(&mut self) -> Result<&mut Session<DefaultTransport>, ClientError> {
        if self.session.is_none() {
            let mut last = None;
            for attempt in 0..self.config.connect_attempts.max(1) {
                if attempt > 0 {
                    tokio::time::sleep(self.config.connect_interval).await;
                }
                match self.open_session().await {
                    Ok(s) => {
                        self.session = Some(s);
                        break;
                    }
                    Err(SessionError::Io(e)) if is_absent(&e) => last = Some(e),
                    Err(e) => return Err(e.into()),
                }
            }
            if self.session.is_none() {
                let address = crate::transport::endpoint::address(&self.run_dir, &self.service)
                    .unwrap_or_else(|_| self.service.clone());
                return Err(ClientError::NotFound {
                    address,
                    source: last.unwrap_or_else(|| io::ErrorKind::NotFound.into()),
                });
            }
        }
        Ok(self.session.as_mut().expect("connected above"))
    }

    /// One connection and handshake. A shared-memory region that cannot be
    /// attached closes that session; the SHM profiles are then dropped from
    /// the configuration and the client reconnects on the baseline.
    async fn open_session(&mut self) -> Result<Session<DefaultTransport>, SessionError> {
        let (dir, service, inline) = (&self.run_dir, &self.service, self.inline_shm);
        let mut session =
            match Session::connect_with(dir, service, &self.config.endpoint, inline).await {
                Err(SessionError::ShmAttach { .. }) => {
                    let e = &mut self.config.endpoint;
                    e.supported_profiles &= !ALL_SHM_PROFILES;
                    e.preferred_profiles &= !ALL_SHM_PROFILES;
                    Session::connect_with(dir, service, e, inline).await
                }
                other => other,
            }?;
        if inline {
            session.make_blocking(self.config.call_timeout).await?;
        }
        Ok(session)
    }

    /// Sends one request of method `code` and returns the response payload.
    pub async fn call(&mut self, code: u16, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        let timeout = self.config.call_timeout;
        let deadline = Instant::now() + timeout;
        match timeout_at_lazily(deadline, self.call_inner(code, payload, deadline)).await {
            Ok(Err(ClientError::Session(SessionError::DeadlineExceeded))) | Err(_) => {
                self.session = None;
                Err(ClientError::TimedOut(timeout))
            }
            Ok(r) => r,
        }
    }

    async fn call_inner(
        &mut self,
        code: u16,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, ClientError> {
        let mut overflows = 0;
        let mut reconnected = false;
        loop {
            match self
                .attempt(code, payload, deadline, &mut reconnected)
                .await?
            {
                Step::Done(v) => return Ok(v),
                Step::Retry => {
                    overflows += 1;
                    if overflows > MAX_OVERFLOW_RECONNECTS {
                        return Err(ClientError::LimitExceeded);
                    }
                }
            }
        }
    }

    async fn attempt(
        &mut self,
        code: u16,
        payload: &[u8],
        deadline: Instant,
        reconnected: &mut bool,
    ) -> Result<Step, ClientError> {
        let cfg = self.config;
        let session = self.ensure_session().await?;
        let negotiated = *session.negotiated();
        if payload.len() as u64 > u64::from(negotiated.max_request_payload_bytes) {
            let current = self.config.endpoint.max_request_payload_bytes;
            let grown = learned_limit(current, payload.len() as u64, cfg.max_request_ceiling);
            if grown <= negotiated.max_request_payload_bytes || grown == current {
                return Err(ClientError::LimitExceeded);
            }
            self.config.endpoint.max_request_payload_bytes = grown;
            self.session = None;
            return Ok(Step::Retry);
        }
        match session.call_until(code, payload, Some(deadline)).await {
            Ok(v) => Ok(Step::Done(v)),
            Err(SessionError::Status { status, .. })
                if status == TransportStatus::LIMIT_EXCEEDED =>
            {
                // The server closes after an overflow and learns; so do we.
                let current = self.config.endpoint.max_response_payload_bytes;
                self.config.endpoint.max_response_payload_bytes = learned_limit(
                    current,
                    u64::from(current.max(negotiated.max_response_payload_bytes)) * 2,
                    cfg.max_response_ceiling,
                );
                self.session = None;
                let next = self.ensure_session().await?;
                if next.negotiated().max_response_payload_bytes
                    <= negotiated.max_response_payload_bytes
                {
                    return Err(ClientError::LimitExceeded);
                }
                Ok(Step::Retry)
            }
            Err(e @ SessionError::Status { .. }) => {
                // UNSUPPORTED keeps the session; the others end it.
                if !matches!(e, SessionError::Status { status, .. } if status == TransportStatus::UNSUPPORTED)
                {
                    self.session = None;
                }
                Err(e.into())
            }
            Err(SessionError::Closed | SessionError::Io(_) | SessionError::Broken)
                if !*reconnected =>
            {
                *reconnected = true;
                self.session = None;
                self.ensure_session().await?;
                Box::pin(self.attempt(code, payload, deadline, reconnected)).await
            }
            Err(e) => {
                self.session = None;
                Err(e.into())
            }
        }
    }

    /// INCREMENT: returns `value + 1` as computed by the server.
    pub async fn increment(&mut self, value: u64) -> Result<u64, ClientError> {
        let reply = self
            .call(method::INCREMENT, &increment::encode(value))
            .await?;
        let v = increment::decode(&reply)?;
        if let Some(s) = self.session.as_mut() {
            s.recycle(reply);
        }
        Ok(v)
    }

    /// STRING_REVERSE: returns the server's reversal of `s`.
    pub async fn string_reverse(&mut self, s: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reply = self
            .call(method::STRING_REVERSE, &string_reverse::encode(s)?)
            .await?;
        Ok(string_reverse::decode(&reply)?.to_vec())
    }

    /// CGROUPS_SNAPSHOT: returns the server's snapshot.
    pub async fn cgroups_snapshot(&mut self) -> Result<Snapshot, ClientError> {
        let reply = self
            .call(
                method::CGROUPS_SNAPSHOT,
                &cgroups_snapshot::encode_request(),
            )
            .await?;
        Ok(Snapshot::decode(&reply)?)
    }
}

/// `tokio::time::timeout_at`, with the timer set up only when the first poll
/// of `future` does not finish it. A call answered at once (a shared-memory
/// session's usual case) then costs no timer: creating and dropping one takes
/// the runtime's timer lock even when it never fires.
async fn timeout_at_lazily<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => tokio::time::timeout_at(deadline.into(), future).await,
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::ResourceBusy
    )
}
