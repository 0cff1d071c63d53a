//! The client side: a hyper-util connector for `npipe://` and `unix://` URIs, and a pooled
//! keep-alive client built on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Body;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::{Builder, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pipewright::{ConnectOptions, ErrorKind, PipeStream};

use crate::url::Endpoint;

/// How long an idle pooled connection is kept open by [`client_builder`].
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Opens pipes for hyper-util's pooled [`Client`]. The URI must come from
/// [`Endpoint::uri`] or [`PipeUrl::uri`](crate::PipeUrl::uri) (scheme `npipe` or `unix`, the
/// pipe name hex-encoded in the host). Connecting retries a busy or missing server until the
/// connect timeout (default 5 s), then fails with the core's error kind.
///
/// ```no_run
/// use http_body_util::{BodyExt, Empty};
/// use bytes::Bytes;
/// use pipewright_http::{client_builder, PipeConnector, PipeUrl};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = client_builder().build::<_, Empty<Bytes>>(PipeConnector::new());
/// let url = PipeUrl::parse("npipe:////./pipe/docker_engine/_ping")?;
/// let resp = client.get(url.uri()?).await?;
/// let body = resp.into_body().collect().await?.to_bytes();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PipeConnector {
    options: ConnectOptions,
}

impl PipeConnector {
    /// A connector with the core's default options (5 s timeout, busy and missing retried).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to keep retrying a busy or missing pipe before giving up.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.timeout(timeout);
        self
    }

    /// Replaces every connect option.
    pub fn with_options(mut self, options: ConnectOptions) -> Self {
        self.options = options;
        self
    }

    /// Opens the pipe a request URI names.
    pub async fn connect_uri(&self, uri: &Uri) -> pipewright::Result<PipeConnection> {
        let endpoint = Endpoint::from_uri(uri)
            .map_err(|e| pipewright::Error::new(ErrorKind::InvalidName, e.to_string()))?;
        let stream = pipewright::connect_with(endpoint.pipe_name(), &self.options).await?;
        Ok(PipeConnection { stream })
    }
}

impl tower_service::Service<Uri> for PipeConnector {
    type Response = TokioIo<PipeConnection>;
    type Error = pipewright::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<TokioIo<PipeConnection>, pipewright::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.connect_uri(&uri).await.map(TokioIo::new) })
    }
}

/// A connected pipe as the pooled client holds it. Responses on it carry the server's
/// [`pipewright::Peer`] as an extension.
#[derive(Debug)]
pub struct PipeConnection {
    stream: PipeStream,
}

impl PipeConnection {
    /// The underlying stream.
    pub fn stream(&self) -> &PipeStream {
        &self.stream
    }
}

impl Connection for PipeConnection {
    fn connected(&self) -> Connected {
        match self.stream.peer() {
            Ok(peer) => Connected::new().extra(peer),
            Err(_) => Connected::new(),
        }
    }
}

/// Implements tokio's `AsyncRead` and `AsyncWrite` for `$ty` by passing every call to its
/// `$field`, an `Unpin` stream.
macro_rules! delegate_async_io {
    ($ty:ty, $field:ident) => {
        impl ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::tokio::io::AsyncRead::poll_read(::std::pin::Pin::new(&mut self.$field), cx, buf)
            }
        }

        impl ::tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::tokio::io::AsyncWrite::poll_write(::std::pin::Pin::new(&mut self.$field), cx, buf)
            }

            fn poll_flush(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::tokio::io::AsyncWrite::poll_flush(::std::pin::Pin::new(&mut self.$field), cx)
            }

            fn poll_shutdown(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::tokio::io::AsyncWrite::poll_shutdown(::std::pin::Pin::new(&mut self.$field), cx)
            }
        }
    };
}
#[allow(unused_imports)] // used by the `grpc` feature
pub(crate) use delegate_async_io;

delegate_async_io!(PipeConnection, stream);

/// A hyper-util client builder with the tokio executor and timer, keep-alive pooling and a
/// 90 s idle timeout. Call `.http2_only(true)` for HTTP/2 over the pipe.
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use pipewright_http::{client_builder, PipeConnector};
/// let h2 = client_builder().http2_only(true).build::<_, Full<Bytes>>(PipeConnector::new());
/// ```
pub fn client_builder() -> Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(DEFAULT_POOL_IDLE_TIMEOUT);
    builder
}

/// A pooled keep-alive client over pipes with the defaults of [`client_builder`].
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// let client = pipewright_http::client::<Empty<Bytes>>();
/// ```
pub fn client<B>() -> Client<PipeConnector, B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    client_builder().build(PipeConnector::new())
}
