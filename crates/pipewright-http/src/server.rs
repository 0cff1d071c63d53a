//! The server side: any hyper service on a [`pipewright::Listener`], HTTP/1.1 with upgrades and
//! HTTP/2, a connection limit, and graceful shutdown.

use std::error::Error as StdError;
use std::future::{pending, Future};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pipewright::{ErrorKind, Listener, Peer, PipeStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// What the server tells its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish in-flight requests, then close.
    Draining,
    /// The drain timeout passed: close now.
    Closing,
}

/// Serves HTTP on a pipe listener.
///
/// Every request carries the client's [`Peer`] (process id and user) as an extension. HTTP/1.1
/// (with upgrades, e.g. WebSocket) and HTTP/2 (prior knowledge) are both served on the same
/// pipe.
///
/// ```no_run
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{body::Incoming, service::service_fn, Request, Response};
/// use pipewright::{Listener, Peer};
/// use pipewright_http::Server;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("my-api")?;
/// let service = service_fn(|req: Request<Incoming>| async move {
///     let pid = req.extensions().get::<Peer>().and_then(|p| p.pid);
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("hello {pid:?}\n")))))
/// });
/// Server::new()
///     .max_connections(256)
///     .serve_with_shutdown(listener, service, async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    builder: auto::Builder<TokioExecutor>,
    max_connections: Option<usize>,
    drain_timeout: Option<Duration>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server for HTTP/1.1 and HTTP/2, without a connection limit or drain timeout.
    pub fn new() -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        Server {
            builder,
            max_connections: None,
            drain_timeout: None,
        }
    }

    /// The most connections served at once. Further clients wait in the listener's backlog
    /// until a connection ends.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max.max(1));
        self
    }

    /// On shutdown, how long in-flight requests may take before their connections are
    /// dropped (default: wait for them all).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// Serve HTTP/1.1 only (with upgrades): a client that opens with the HTTP/2 preface gets
    /// an error and a closed connection. Settings made with [`Server::builder_mut`] for
    /// HTTP/1 do not apply in this mode; the connection uses hyper's HTTP/1 defaults.
    pub fn http1_only(mut self) -> Self {
        self.builder = self.builder.http1_only();
        self
    }

    /// Serve HTTP/2 (prior knowledge) only: an HTTP/1 request is refused.
    pub fn http2_only(mut self) -> Self {
        self.builder = self.builder.http2_only();
        self
    }

    /// hyper-util's connection builder, for protocol settings.
    pub fn builder_mut(&mut self) -> &mut auto::Builder<TokioExecutor> {
        &mut self.builder
    }

    /// Serves until the listener is closed (then waits for open connections to finish).
    pub async fn serve<S, B>(&self, listener: Listener, service: S) -> pipewright::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.serve_with_shutdown(listener, service, pending()).await
    }

    /// Serves until `signal` completes, then shuts down gracefully: stops accepting, lets
    /// in-flight requests finish (HTTP/1 connections close after their current response,
    /// HTTP/2 connections send GOAWAY), and returns when every connection has ended (or the
    /// drain timeout passed).
    pub async fn serve_with_shutdown<S, B, F>(
        &self,
        listener: Listener,
        service: S,
        signal: F,
    ) -> pipewright::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        F: Future<Output = ()> + Send,
    {
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        // Every connection task holds a sender; `recv` returns `None` once all have ended.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let limit = self.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let mut signal = std::pin::pin!(signal);
        let result = loop {
            let permit = match &limit {
                Some(sem) => tokio::select! {
                    permit = sem.clone().acquire_owned() => Some(permit.expect("semaphore stays open")),
                    _ = &mut signal => break Ok(()),
                },
                None => None,
            };
            let stream = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut signal => break Ok(()),
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) if e.kind() == ErrorKind::Closed => break Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; continuing");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let builder = self.builder.clone();
            let service = service.clone();
            let phase = phase_rx.clone();
            let alive = alive_tx.clone();
            tokio::spawn(async move {
                serve_connection(&builder, stream, service, phase).await;
                drop(permit);
                drop(alive);
            });
        };
        listener.close();
        drop(alive_tx);
        let _ = phase_tx.send(Phase::Draining);
        match self.drain_timeout {
            Some(timeout) => {
                if tokio::time::timeout(timeout, alive_rx.recv())
                    .await
                    .is_err()
                {
                    let _ = phase_tx.send(Phase::Closing);
                    alive_rx.recv().await;
                }
            }
            None => {
                alive_rx.recv().await;
            }
        }
        result
    }
}

/// Serves one connection, draining it when the server shuts down.
async fn serve_connection<S, B>(
    builder: &auto::Builder<TokioExecutor>,
    stream: PipeStream,
    service: S,
    phase: watch::Receiver<Phase>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let peer = stream.peer().ok();
    let service = WithPeer {
        inner: service,
        peer,
    };
    let io = TokioIo::new(stream);
    // hyper-util's upgradeable connection serves whichever protocol the client opens with,
    // whatever the builder allows; a server limited to one protocol uses a connection that
    // refuses the other.
    if !builder.is_http2_available() {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.timer(TokioTimer::new());
        drive(http1.serve_connection(io, service).with_upgrades(), phase).await;
    } else if !builder.is_http1_available() {
        drive(builder.serve_connection(io, service), phase).await;
    } else {
        drive(builder.serve_connection_with_upgrades(io, service), phase).await;
    }
}

/// Serves a connection until it ends, draining it when the server shuts down.
async fn drive<C: Drainable>(conn: C, mut phase: watch::Receiver<Phase>) {
    let mut conn = std::pin::pin!(conn);
    // Serve until the connection ends or the server starts draining.
    let drain = async {
        // A dropped server (its future cancelled) drains as well.
        let _ = phase.wait_for(|p| *p != Phase::Serving).await;
    };
    tokio::select! {
        result = conn.as_mut() => return log_end(result.map_err(Into::into)),
        _ = drain => {}
    }
    conn.as_mut().drain();
    let closing = async {
        if phase.wait_for(|p| *p == Phase::Closing).await.is_err() {
            pending::<()>().await;
        }
    };
    tokio::select! {
        result = conn.as_mut() => log_end(result.map_err(Into::into)),
        _ = closing => tracing::debug!("drain timeout passed; dropping the connection"),
    }
}

/// A served connection that can finish its in-flight requests and close (hyper's and
/// hyper-util's connection types each have their own `graceful_shutdown`).
trait Drainable: Future<Output = Result<(), Self::Error>> {
    type Error: Into<Box<dyn StdError + Send + Sync>>;
    fn drain(self: std::pin::Pin<&mut Self>);
}

macro_rules! drainable {
    ($conn:ty, $err:ty, [$($gen:tt)*]) => {
        impl<$($gen)*, S, B> Drainable for $conn
        where
            S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
            S::Future: Send + 'static,
            S::Error: Into<Box<dyn StdError + Send + Sync>>,
            B: Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<Box<dyn StdError + Send + Sync>>,
        {
            type Error = $err;
            fn drain(self: std::pin::Pin<&mut Self>) {
                self.graceful_shutdown();
            }
        }
    };
}

type Io = TokioIo<PipeStream>;
drainable!(hyper::server::conn::http1::UpgradeableConnection<Io, S>, hyper::Error, ['a]);
drainable!(auto::Connection<'a, Io, S, TokioExecutor>, Box<dyn StdError + Send + Sync>, ['a]);
drainable!(
    auto::UpgradeableConnection<'a, Io, S, TokioExecutor>,
    Box<dyn StdError + Send + Sync>,
    ['a]
);

fn log_end(result: Result<(), Box<dyn StdError + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Puts the client's [`Peer`] into each request's extensions.
#[derive(Debug, Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Option<Peer>,
}

impl<S, B> Service<Request<B>> for WithPeer<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            req.extensions_mut().insert(peer.clone());
        }
        self.inner.call(req)
    }
}
