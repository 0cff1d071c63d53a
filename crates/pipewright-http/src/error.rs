//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;

use crate::url::UrlError;

/// Anything that can fail in this crate.
///
/// Each message is complete on its own: it names the pipe, what happened and, where there
/// is one, the fix, and says each cause once. [`source`](StdError::source) still leads to
/// the hyper, hyper-util and transport errors behind it, for code that inspects them (see
/// [`transport_kind`](Error::transport_kind) and [`is_peer_error`](Error::is_peer_error)); a
/// report that prints the whole chain should skip causes whose text a message already holds.
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
    #[error("HTTP: {}", ChainText(.0))]
    Http(#[from] hyper::Error),
    /// The pooled client failed: connecting (`cannot connect to PIPE: ...`, with the
    /// transport's reason and fix) or on the connection (`HTTP: ...`).
    #[error("{}", ClientText(.0))]
    Client(#[from] hyper_util::client::legacy::Error),
    /// The WebSocket handshake or protocol failed.
    #[error("WebSocket: {}", ChainText(.0))]
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

/// The errors of a chain, from `err` down to its root cause.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

impl Error {
    /// The transport error kind, when a pipe error is the cause anywhere in the chain.
    pub fn transport_kind(&self) -> Option<pipewright::ErrorKind> {
        chain(self).find_map(|e| e.downcast_ref::<pipewright::Error>().map(|p| p.kind()))
    }

    /// Whether the peer broke the connection or the HTTP protocol after the connection was
    /// made: a malformed or unexpected response (an HTTP/1 server answering HTTP/2's
    /// preface, say), a connection closed or reset in the middle of an exchange, an HTTP/2
    /// protocol error. Failing to connect, a timeout and a request this side could not send
    /// (hyper's user errors) are not peer errors.
    ///
    /// ```
    /// let err = pipewright_http::Error::NotWebSocket;
    /// assert!(!err.is_peer_error());
    /// ```
    pub fn is_peer_error(&self) -> bool {
        match self {
            Error::Client(e) if e.is_connect() => false,
            Error::Client(_) | Error::Http(_) => {
                for cause in chain(self) {
                    if let Some(h) = cause.downcast_ref::<hyper::Error>() {
                        return !(h.is_user() || h.is_timeout());
                    }
                    if let Some(p) = cause.downcast_ref::<pipewright::Error>() {
                        return matches!(
                            p.kind(),
                            pipewright::ErrorKind::Disconnected
                                | pipewright::ErrorKind::MessageTooLarge
                                | pipewright::ErrorKind::Other
                        );
                    }
                }
                false
            }
            _ => false,
        }
    }
}

/// Writes an error and its causes joined by `: `, each cause once: a cause whose text an
/// earlier message already holds (hyper's and the transport's messages include their own
/// causes) is skipped, with every cause between.
struct ChainText<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for ChainText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors: Vec<_> = chain(self.0).collect();
        let mut i = 0;
        while i < errors.len() {
            let text = errors[i].to_string();
            if i > 0 {
                f.write_str(": ")?;
            }
            f.write_str(&text)?;
            // Skip every cause up to the deepest one this message already tells.
            let told = (i + 1..errors.len())
                .rev()
                .find(|&j| text.contains(&errors[j].to_string()));
            i = told.unwrap_or(i) + 1;
        }
        Ok(())
    }
}

/// hyper-util's error in one sentence: its own text (`client error (Connect)`) says only
/// which step failed, so the causes speak instead.
struct ClientText<'a>(&'a hyper_util::client::legacy::Error);

impl fmt::Display for ClientText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = self.0;
        let pipe_error = chain(err).find_map(|e| e.downcast_ref::<pipewright::Error>());
        match (err.is_connect(), pipe_error, err.source()) {
            (true, Some(p), _) => write!(f, "cannot connect to {}", ConnectText(p)),
            (true, None, Some(cause)) => write!(f, "cannot connect: {}", ChainText(cause)),
            (false, _, Some(cause)) => write!(f, "HTTP: {}", ChainText(cause)),
            (_, _, None) => write!(f, "HTTP: {err}"),
        }
    }
}

/// A transport error from a connect: `PIPE: connect: REASON; FIX (OS ERROR)` becomes
/// `PIPE: REASON; FIX (OS ERROR)`, to follow "cannot connect to".
struct ConnectText<'a>(&'a pipewright::Error);

impl fmt::Display for ConnectText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let Some(pipe) = self.0.pipe() else {
            return f.write_str(&text);
        };
        let rest = text.strip_prefix(pipe).and_then(|r| r.strip_prefix(": "));
        match rest {
            Some(rest) => write!(
                f,
                "{pipe}: {}",
                rest.strip_prefix("connect: ").unwrap_or(rest)
            ),
            None => f.write_str(&text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<dyn StdError + 'static>>);

    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref()
        }
    }

    #[test]
    fn chain_text_says_each_cause_once() {
        let os = io::Error::new(io::ErrorKind::NotFound, "no such file (os error 2)");
        let pipe = pipewright::Error::new(pipewright::ErrorKind::NotFound, "connect: no server")
            .with_pipe("p")
            .with_source(os);
        let outer = Wrap("client error (Connect)", Some(Box::new(pipe)));
        assert_eq!(
            ChainText(&outer).to_string(),
            "client error (Connect): p: connect: no server (no such file (os error 2))"
        );
        let plain = Wrap("a", Some(Box::new(Wrap("b", None))));
        assert_eq!(ChainText(&plain).to_string(), "a: b");
    }

    #[test]
    fn connect_text_drops_the_repeated_step() {
        let pipe = pipewright::Error::new(pipewright::ErrorKind::NotFound, "connect: no server")
            .with_pipe(r"\\.\pipe\x");
        assert_eq!(ConnectText(&pipe).to_string(), r"\\.\pipe\x: no server");
        let bare = pipewright::Error::new(pipewright::ErrorKind::Other, "odd");
        assert_eq!(ConnectText(&bare).to_string(), "odd");
    }
}
