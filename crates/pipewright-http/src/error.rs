//! The crate's error type.

use crate::url::UrlError;

/// Anything that can fail in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipe could not be opened or served (see [`pipewright::ErrorKind`]).
    #[error(transparent)]
    Transport(#[from] pipewright::Error),
    /// A malformed pipe URL or endpoint.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// HTTP failed on an open connection.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The pooled client failed (connecting or sending).
    #[error("HTTP client: {0}")]
    Client(#[from] hyper_util::client::legacy::Error),
    /// The WebSocket handshake or protocol failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A request that should have been a WebSocket upgrade was not (wrong or missing
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version: 13`).
    #[error("not a WebSocket upgrade request; send Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key and Sec-WebSocket-Version: 13")]
    NotWebSocket,
    /// Local I/O (files, processes).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

impl Error {
    /// The transport error kind, when a pipe error is the cause anywhere in the chain.
    pub fn transport_kind(&self) -> Option<pipewright::ErrorKind> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = cause {
            if let Some(e) = err.downcast_ref::<pipewright::Error>() {
                return Some(e.kind());
            }
            cause = err.source();
        }
        None
    }
}
