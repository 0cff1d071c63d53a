//! An HTTP-aware reverse proxy from a pipe to an upstream: TCP (e.g. a WSL service on
//! localhost), a Unix socket, another pipe, or a helper process per connection
//! (`exec:wsl.exe -d Distro -- socat - UNIX-CONNECT:/run/agent.sock`).
//!
//! Requests go upstream over pooled keep-alive connections; WebSocket (and other) upgrades are
//! passed through; hop-by-hop headers are dropped and the standard forwarding headers added
//! (optional). An upstream that is down gets a `502`, one that is slow a `504`, each with a
//! plain-text message.
//!
//! ```no_run
//! use pipewright_http::forward::{Forwarder, Upstream};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = pipewright::Listener::bind("agent")?;
//! let forwarder = Forwarder::new(Upstream::parse("tcp:127.0.0.1:8080")?)
//!     .health_path("/healthz")
//!     .access_log(true);
//! pipewright_http::Server::new().serve(listener, forwarder.service()).await?;
//! # Ok(()) }
//! ```

mod address;
mod proxy;
mod upstream;

use std::time::Duration;

pub use address::{parse_listen, AddressError, CommandLine, Upstream};
pub use proxy::{ProxyBody, ProxyService, DEFAULT_RESPONSE_TIMEOUT};

/// Default time to open an upstream connection before answering `504`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The forwarder's settings; [`Forwarder::service`] makes the hyper service.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstream: Upstream,
    forwarding_headers: bool,
    health_path: Option<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    access_log: bool,
    max_idle_upstream: usize,
}

impl Forwarder {
    /// Forwards to `upstream` with forwarding headers on, no health path, a 5 s connect
    /// timeout, a 60 s response timeout, and no access log.
    pub fn new(upstream: Upstream) -> Self {
        Forwarder {
            upstream,
            forwarding_headers: true,
            health_path: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            access_log: false,
            max_idle_upstream: 32,
        }
    }

    /// Add `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`
    /// (default on).
    pub fn forwarding_headers(mut self, on: bool) -> Self {
        self.forwarding_headers = on;
        self
    }

    /// Answer `GET path` with `200 ok` locally, without asking the upstream.
    pub fn health_path(mut self, path: impl Into<String>) -> Self {
        self.health_path = Some(path.into());
        self
    }

    /// How long opening an upstream connection may take (then `504`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the upstream may take to send response headers (then `504`).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Log one line per request at info level, target `pipewright::access`: method, path,
    /// status, body bytes, duration and the client's pid.
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// The most idle keep-alive connections kept to the upstream (default 32).
    pub fn max_idle_upstream(mut self, max: usize) -> Self {
        self.max_idle_upstream = max;
        self
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The proxy as a hyper service (cheap to clone; clones share the upstream pool).
    pub fn service(&self) -> ProxyService {
        ProxyService::new(self.clone())
    }
}
