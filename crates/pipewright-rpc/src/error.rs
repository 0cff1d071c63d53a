//! The client's error type.

use std::time::Duration;

/// Why a call failed.
///
/// ```no_run
/// # async fn demo(client: pipewright_rpc::Client) {
/// match client.call::<_, u64>("Add", &[1, 2]).await {
///     Ok(sum) => println!("{sum}"),
///     Err(pipewright_rpc::RpcError::Remote(msg)) => eprintln!("the server said no: {msg}"),
///     Err(e) => eprintln!("the call failed: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The server answered `{"status":"Err","params":"message"}`.
    #[error("the server answered Err: {0}")]
    Remote(String),
    /// Connecting failed (after the core's retry of busy and missing servers), or the
    /// transport failed while sending.
    #[error("{0}")]
    Transport(#[from] pipewright::Error),
    /// No answer came within the call's timeout. The call is abandoned; a late answer is
    /// dropped.
    #[error("no answer to {method:?} within {timeout:?}; the server may be slow or stuck (raise the call timeout if it is just slow)")]
    TimedOut {
        /// The method called.
        method: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The connection ended before the answer came; the call may or may not have run. The
    /// next call reconnects.
    #[error("the connection closed before the answer to {method:?} came ({reason}); the call may or may not have run, and the next call reconnects")]
    Disconnected {
        /// The method called.
        method: String,
        /// What ended the connection.
        reason: String,
    },
    /// The request could not be encoded, or is larger than the frame limit.
    #[error("cannot send {method:?}: {detail}")]
    Encode {
        /// The method called.
        method: String,
        /// What went wrong.
        detail: String,
    },
    /// The answer was Ok but its params do not decode as the expected type.
    #[error("the answer to {method:?} does not decode as the expected type ({detail}); check that client and server agree on the response type")]
    Decode {
        /// The method called.
        method: String,
        /// The decoder's message.
        detail: String,
    },
}

impl RpcError {
    /// The transport error kind, for errors that come from the transport.
    pub fn transport_kind(&self) -> Option<pipewright::ErrorKind> {
        match self {
            RpcError::Transport(e) => Some(e.kind()),
            _ => None,
        }
    }
}
