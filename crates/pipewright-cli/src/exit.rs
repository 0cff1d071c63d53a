//! The CLI's exit codes, one per kind of failure, documented in `docs/cli.md`.

use pipewright::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// Any failure without a more specific code.
pub const FAILURE: u8 = 1;
/// Bad command line (also clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// No server is listening on the name.
pub const NOT_FOUND: u8 = 3;
/// Every instance of the pipe stayed busy.
pub const BUSY: u8 = 4;
/// The pipe's security does not let this user in.
pub const ACCESS_DENIED: u8 = 5;
/// The operation did not finish in time.
pub const TIMED_OUT: u8 = 6;
/// The peer broke the connection or the protocol.
pub const PEER_ERROR: u8 = 7;
/// Another server already serves the name.
pub const ALREADY_IN_USE: u8 = 8;

/// The exit code for a transport error kind.
pub fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::Busy => BUSY,
        ErrorKind::AccessDenied => ACCESS_DENIED,
        ErrorKind::TimedOut => TIMED_OUT,
        ErrorKind::Disconnected | ErrorKind::MessageTooLarge => PEER_ERROR,
        ErrorKind::AlreadyInUse => ALREADY_IN_USE,
        ErrorKind::InvalidName | ErrorKind::InvalidOption => USAGE,
        _ => FAILURE,
    }
}

/// The exit code for an HTTP failure: the transport's kind when it names one (no such pipe,
/// busy, access denied, timed out, the peer went away), else 7 when the peer broke the
/// connection or the protocol (hyper's parse errors, an HTTP/1 server answering HTTP/2's
/// preface, a response cut short), else 1.
pub fn for_http(err: &pipewright_http::Error) -> u8 {
    let code = err.transport_kind().map(for_kind).unwrap_or(FAILURE);
    if code == FAILURE && err.is_peer_error() {
        PEER_ERROR
    } else {
        code
    }
}

/// The exit code for any error: the first [`pipewright_http::Error`] or
/// [`pipewright::Error`] in the chain decides it.
pub fn for_error(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<pipewright_http::Error>() {
            return for_http(e);
        }
        if let Some(e) = cause.downcast_ref::<pipewright::Error>() {
            return for_kind(e.kind());
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if let Some(inner) = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<pipewright::Error>())
            {
                return for_kind(inner.kind());
            }
        }
    }
    FAILURE
}
