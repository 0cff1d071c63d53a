//! WebSocket over pipes: the server upgrade inside a hyper service, and the client handshake.

use hyper::header::{self, HeaderValue};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pipewright::{ConnectOptions, PipeStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::error::Error;
use crate::url::PipeUrl;

pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The server's end of a WebSocket, on the connection hyper upgraded.
pub type ServerWebSocket = WebSocketStream<TokioIo<Upgraded>>;
/// The client's end of a WebSocket, straight on the pipe.
pub type ClientWebSocket = WebSocketStream<PipeStream>;

/// Whether `req` asks to upgrade to WebSocket (`Upgrade: websocket` and a key).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
        && req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Accepts a WebSocket upgrade inside a hyper service: returns the `101 Switching Protocols`
/// response to send back, and a future that yields the socket once hyper has switched the
/// connection over. Spawn the future; it only completes after the response is sent.
///
/// ```no_run
/// use bytes::Bytes;
/// use futures_util::{SinkExt, StreamExt};
/// use http_body_util::Empty;
/// use hyper::{body::Incoming, Request, Response};
///
/// async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, pipewright_http::Error> {
///     let (response, socket) = pipewright_http::ws::accept(&mut req, None)?;
///     tokio::spawn(async move {
///         let mut ws = socket.await?;
///         while let Some(msg) = ws.next().await {
///             let msg = msg?;
///             if msg.is_binary() || msg.is_text() {
///                 ws.send(msg).await?;
///             }
///         }
///         Ok::<_, pipewright_http::Error>(())
///     });
///     Ok(response)
/// }
/// ```
pub fn accept<B, R: Default>(
    req: &mut Request<B>,
    config: Option<WebSocketConfig>,
) -> Result<
    (
        Response<R>,
        impl std::future::Future<Output = Result<ServerWebSocket, Error>> + Send + 'static,
    ),
    Error,
> {
    if !is_upgrade_request(req) {
        return Err(Error::NotWebSocket);
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes() == b"13")
        .unwrap_or(false);
    if !version_ok {
        return Err(Error::NotWebSocket);
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
        .ok_or(Error::NotWebSocket)?;
    let on_upgrade = hyper::upgrade::on(req);
    let mut response = Response::new(R::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&key).map_err(|_| Error::NotWebSocket)?,
    );
    let socket = async move {
        let upgraded = on_upgrade.await.map_err(Error::Http)?;
        Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, config).await)
    };
    Ok((response, socket))
}

/// Opens the pipe a URL names and performs the WebSocket client handshake on it.
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// use pipewright_http::{ws, PipeUrl};
/// # async fn demo() -> Result<(), pipewright_http::Error> {
/// let url = PipeUrl::parse("npipe:////./pipe/events/ws")?;
/// let mut socket = ws::connect(&url, &Default::default(), None).await?;
/// socket.send(ws::Message::text("hi")).await?;
/// let reply = socket.next().await;
/// # Ok(()) }
/// ```
pub async fn connect(
    url: &PipeUrl,
    options: &ConnectOptions,
    config: Option<WebSocketConfig>,
) -> Result<ClientWebSocket, Error> {
    let stream = pipewright::connect_with(url.endpoint().pipe_name(), options).await?;
    handshake(stream, url.path_and_query(), config).await
}

/// Performs the WebSocket client handshake on an open stream for `path_and_query`.
pub async fn handshake<S>(
    stream: S,
    path_and_query: &str,
    config: Option<WebSocketConfig>,
) -> Result<WebSocketStream<S>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("ws://localhost{path_and_query}");
    let (socket, _response) = tokio_tungstenite::client_async_with_config(request, stream, config)
        .await
        .map_err(Box::new)?;
    Ok(socket)
}
