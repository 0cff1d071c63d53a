//! axum on pipes (cargo feature `axum`): [`PipeListener`] implements axum's own
//! [`Listener`](::axum::serve::Listener) trait, so `axum::serve` serves a router on
//! `\\.\pipe\NAME` (a Unix socket on Unix), and every connection's address is a [`PipeAddr`]
//! that carries the client's [`Peer`] (process id and user).
//!
//! A handler reads the peer through axum's [`ConnectInfo`](::axum::extract::ConnectInfo) when
//! the router is served with `into_make_service_with_connect_info::<PipeAddr>()`:
//!
//! ```no_run
//! use axum::{extract::ConnectInfo, routing::get, Router};
//! use pipewright_http::axum::{PipeAddr, PipeListener};
//!
//! async fn whoami(ConnectInfo(addr): ConnectInfo<PipeAddr>) -> String {
//!     let pid = addr.peer().and_then(|p| p.pid);
//!     format!("client pid {pid:?} on {}\n", addr.name())
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/whoami", get(whoami));
//! let listener = PipeListener::bind("my-api")?; // \\.\pipe\my-api, or $XDG_RUNTIME_DIR/my-api.sock
//! axum::serve(listener, app.into_make_service_with_connect_info::<PipeAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! For a connection limit and a bounded drain on shutdown, serve the router with
//! [`Server`](crate::Server) instead (through `hyper_util::service::TowerToHyperService`); its
//! requests carry the [`Peer`] as an extension (`axum::Extension<Peer>`).

use std::io;
use std::time::Duration;

use ::axum::extract::connect_info::Connected;
use ::axum::serve::{IncomingStream, Listener as AxumListener};
use pipewright::{ErrorKind, Listener, ListenerOptions, Peer, PipeName, PipeStream, ToPipeName};

/// A pipe listener for `axum::serve`.
///
/// Accept errors are logged and retried after a short pause, as axum's own listeners do; a
/// closed listener accepts nothing more (end serving with `with_graceful_shutdown`).
#[derive(Debug)]
pub struct PipeListener {
    inner: Listener,
}

impl PipeListener {
    /// Binds `name` with the core's default options (see [`Listener::bind`]).
    pub fn bind(name: impl ToPipeName) -> pipewright::Result<Self> {
        Listener::bind(name).map(Self::from)
    }

    /// Binds `name` with `options` (see [`Listener::bind_with`]).
    pub fn bind_with(name: impl ToPipeName, options: &ListenerOptions) -> pipewright::Result<Self> {
        Listener::bind_with(name, options).map(Self::from)
    }

    /// The pipe listener underneath.
    pub fn get_ref(&self) -> &Listener {
        &self.inner
    }

    /// Returns the pipe listener.
    pub fn into_inner(self) -> Listener {
        self.inner
    }
}

impl From<Listener> for PipeListener {
    fn from(inner: Listener) -> Self {
        PipeListener { inner }
    }
}

/// Where an axum connection on a [`PipeListener`] is: the pipe's name and, for an accepted
/// connection, the client's identity. Handlers get it through
/// `ConnectInfo<PipeAddr>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeAddr {
    name: PipeName,
    peer: Option<Peer>,
}

impl PipeAddr {
    /// The pipe the connection came in on.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// The client's process id and user; `None` for the listener's own address, or when the
    /// platform could not tell who the client is.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }
}

impl AxumListener for PipeListener {
    type Io = PipeStream;
    type Addr = PipeAddr;

    async fn accept(&mut self) -> (PipeStream, PipeAddr) {
        loop {
            match self.inner.accept().await {
                Ok(stream) => {
                    let addr = PipeAddr {
                        name: self.inner.name().clone(),
                        peer: stream.peer().ok(),
                    };
                    return (stream, addr);
                }
                Err(e) if e.kind() == ErrorKind::Closed => std::future::pending::<()>().await,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; continuing");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<PipeAddr> {
        Ok(PipeAddr {
            name: self.inner.name().clone(),
            peer: None,
        })
    }
}

impl Connected<IncomingStream<'_, PipeListener>> for PipeAddr {
    fn connect_info(stream: IncomingStream<'_, PipeListener>) -> Self {
        stream.remote_addr().clone()
    }
}
