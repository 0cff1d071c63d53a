//! A failure with its exit code: what relay and bridge report before they exit.
//!
//! ```ignore
//! let f = Failure::new(exit::NOT_FOUND, "no agent listens on 127.0.0.1:5000");
//! eprintln!("pipewright relay: {f}");
//! return f.code;
//! ```

use std::fmt;
use std::io;

use crate::exit;
use crate::join::JoinError;

/// A message for stderr and the exit code that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of the codes in [`crate::exit`].
    pub code: u8,
    /// What went wrong and, where there is one, the fix.
    pub message: String,
}

impl Failure {
    /// A failure with an explicit code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A bad command line or address (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(exit::USAGE, message)
    }

    /// A transport error, with the code for its kind.
    pub fn from_pipe(err: &pipewright::Error) -> Self {
        Failure::new(exit::for_kind(err.kind()), err.to_string())
    }

    /// An I/O error while opening something (`what` names it).
    pub fn from_io(what: &str, err: &io::Error) -> Self {
        Failure::new(open_code(err), format!("{what}: {err}"))
    }

    /// A failure while moving data: the peer broke the connection (exit 7) unless the
    /// error says something more specific.
    pub fn from_join(err: &JoinError) -> Self {
        Failure::new(transfer_code(err.io()), err.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An error and its causes for stderr, joined by `: `, each cause once. Messages in this
/// workspace are complete (a transport error holds its OS error, an HTTP error its
/// transport error), so a cause whose text an earlier message already holds is skipped,
/// with every cause between.
///
/// ```ignore
/// eprintln!("pipewright http: {}", failure::report(err.as_ref()));
/// ```
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let errors: Vec<String> = std::iter::successors(Some(err), |e| e.source())
        .map(|e| e.to_string())
        .collect();
    let mut parts: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < errors.len() {
        parts.push(&errors[i]);
        let told = (i + 1..errors.len())
            .rev()
            .find(|&j| errors[i].contains(errors[j].as_str()));
        i = told.unwrap_or(i) + 1;
    }
    parts.join(": ")
}

fn pipe_error(err: &io::Error) -> Option<&pipewright::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<pipewright::Error>())
}

/// The exit code for a failure to open or connect.
pub fn open_code(err: &io::Error) -> u8 {
    if let Some(inner) = pipe_error(err) {
        return exit::for_kind(inner.kind());
    }
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => exit::NOT_FOUND,
        io::ErrorKind::PermissionDenied => exit::ACCESS_DENIED,
        io::ErrorKind::TimedOut => exit::TIMED_OUT,
        io::ErrorKind::AddrInUse => exit::ALREADY_IN_USE,
        io::ErrorKind::InvalidInput => exit::USAGE,
        _ => exit::FAILURE,
    }
}

/// The exit code for a failure while data moves.
pub fn transfer_code(err: &io::Error) -> u8 {
    if let Some(inner) = pipe_error(err) {
        return match inner.kind() {
            pipewright::ErrorKind::Other => exit::PEER_ERROR,
            kind => exit::for_kind(kind),
        };
    }
    match err.kind() {
        io::ErrorKind::PermissionDenied => exit::ACCESS_DENIED,
        io::ErrorKind::TimedOut => exit::TIMED_OUT,
        _ => exit::PEER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_failures_are_peer_errors_unless_more_specific() {
        let broken = io::Error::new(io::ErrorKind::BrokenPipe, "gone");
        assert_eq!(transfer_code(&broken), exit::PEER_ERROR);
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(transfer_code(&reset), exit::PEER_ERROR);
        let denied = io::Error::new(io::ErrorKind::PermissionDenied, "no");
        assert_eq!(transfer_code(&denied), exit::ACCESS_DENIED);
        let wrapped: io::Error =
            pipewright::Error::new(pipewright::ErrorKind::Disconnected, "closed").into();
        assert_eq!(transfer_code(&wrapped), exit::PEER_ERROR);
    }

    #[test]
    fn report_says_each_cause_once() {
        let os = io::Error::new(io::ErrorKind::NotFound, "gone (os error 2)");
        let pipe = pipewright::Error::new(pipewright::ErrorKind::NotFound, "connect: nobody")
            .with_pipe("p")
            .with_source(os);
        let err = anyhow::Error::new(pipe).context("request failed");
        assert_eq!(
            report(err.as_ref()),
            "request failed: p: connect: nobody (gone (os error 2))"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(plain.as_ref()), "outer: inner");
    }

    #[test]
    fn open_failures_map_to_their_own_codes() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(open_code(&refused), exit::NOT_FOUND);
        let busy: io::Error = pipewright::Error::new(pipewright::ErrorKind::Busy, "busy").into();
        assert_eq!(open_code(&busy), exit::BUSY);
        let other = io::Error::other("?");
        assert_eq!(open_code(&other), exit::FAILURE);
    }
}
