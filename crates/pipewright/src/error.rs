//! The one error type of the crate, with kinds callers can match.

use std::fmt;
use std::io;

/// What went wrong, in a form callers can match on.
///
/// ```
/// use pipewright::{ErrorKind, PipeName};
/// let err = PipeName::parse("").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidName);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No server is listening on that name.
    NotFound,
    /// A server exists but every instance is in use.
    Busy,
    /// The pipe's security (or the socket file's mode) does not let this user in.
    AccessDenied,
    /// Another server already serves this name.
    AlreadyInUse,
    /// The operation did not finish within its deadline.
    TimedOut,
    /// The peer went away.
    Disconnected,
    /// The pipe name or socket path is not valid.
    InvalidName,
    /// An option has a value that cannot work.
    InvalidOption,
    /// A message is larger than the configured limit.
    MessageTooLarge,
    /// The listener was closed, or the stream's write half was closed with `close_write`.
    Closed,
    /// The platform does not support this operation.
    Unsupported,
    /// A blocking stream's [`Interrupter`](crate::Interrupter) stopped it.
    Stopped,
    /// Any other operating-system error.
    Other,
}

impl ErrorKind {
    /// A short lower-case description, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Busy => "busy",
            ErrorKind::AccessDenied => "access denied",
            ErrorKind::AlreadyInUse => "already in use",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::InvalidName => "invalid name",
            ErrorKind::InvalidOption => "invalid option",
            ErrorKind::MessageTooLarge => "message too large",
            ErrorKind::Closed => "closed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Other => "error",
        }
    }

    fn io_kind(self) -> io::ErrorKind {
        match self {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::Busy => io::ErrorKind::ResourceBusy,
            ErrorKind::AccessDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::AlreadyInUse => io::ErrorKind::AddrInUse,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::Disconnected => io::ErrorKind::BrokenPipe,
            ErrorKind::InvalidName | ErrorKind::InvalidOption => io::ErrorKind::InvalidInput,
            ErrorKind::MessageTooLarge => io::ErrorKind::InvalidData,
            ErrorKind::Closed => io::ErrorKind::NotConnected,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::Stopped => io::ErrorKind::ConnectionAborted,
            ErrorKind::Other => io::ErrorKind::Other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from pipewright: a kind, the pipe it concerns, what happened and, where
/// there is one, how to fix it.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    pipe: Option<String>,
    detail: String,
    source: Option<io::Error>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human-readable `detail` (what happened, and the fix).
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            kind,
            pipe: None,
            detail: detail.into(),
            source: None,
        }
    }

    /// Attaches the pipe name or socket path the error concerns.
    pub fn with_pipe(mut self, pipe: impl Into<String>) -> Self {
        self.pipe = Some(pipe.into());
        self
    }

    /// Attaches the operating-system error behind this one.
    pub fn with_source(mut self, source: io::Error) -> Self {
        self.source = Some(source);
        self
    }

    /// The kind, for matching.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The pipe name or socket path, when the error concerns one.
    pub fn pipe(&self) -> Option<&str> {
        self.pipe.as_deref()
    }

    /// Wraps an I/O error from a stream operation (`action`: "send", "receive") on `pipe`,
    /// keeping a crate error that travelled inside the `io::Error` as it is.
    pub(crate) fn from_stream(err: io::Error, pipe: &str, action: &str) -> Self {
        let err = Error::from(err);
        if err.pipe.is_some() {
            return err;
        }
        if err.kind == ErrorKind::MessageTooLarge {
            return err.with_pipe(pipe);
        }
        let kind = err.kind;
        Error::new(kind, format!("{action}: {}", kind.as_str()))
            .with_pipe(pipe)
            .with_source(io::Error::from(err))
    }

    /// A message of `len` bytes over the limit `max`, as the `io::Error` streams return.
    pub(crate) fn message_too_large(len: usize, max: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Error::new(
                ErrorKind::MessageTooLarge,
                format!("message of {len} bytes exceeds the limit of {max}; raise max_message_size on both ends"),
            ),
        )
    }

    pub(crate) fn detail_text(&self) -> &str {
        &self.detail
    }

    pub(crate) fn with_detail(mut self, detail: String) -> Self {
        self.detail = detail;
        self
    }

    /// The operating-system error code, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref().and_then(|e| e.raw_os_error())
    }

    /// Classifies an operating-system error for `pipe` during `action` (e.g. "connect").
    pub(crate) fn from_io(err: io::Error, pipe: &str, action: &str) -> Self {
        let kind = crate::sys::classify(&err);
        let detail = match kind {
            ErrorKind::NotFound => format!("{action}: no server is listening; start the server first, or check the name"),
            ErrorKind::Busy => format!("{action}: all instances are busy; retry later, or raise the server's backlog"),
            ErrorKind::AccessDenied => format!("{action}: access denied; the server's security (SDDL or socket file mode) must grant this user"),
            ErrorKind::AlreadyInUse => format!("{action}: another server already serves this name; stop it or pick another name"),
            ErrorKind::Disconnected => format!("{action}: the peer closed the connection"),
            ErrorKind::TimedOut => format!("{action}: timed out"),
            _ => format!("{action} failed"),
        };
        Error::new(kind, detail).with_pipe(pipe).with_source(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pipe) = &self.pipe {
            write!(f, "{pipe}: ")?;
        }
        f.write_str(&self.detail)?;
        if let Some(src) = &self.source {
            write!(f, " ({src})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.kind.io_kind(), err)
    }
}

impl From<io::Error> for Error {
    /// Wraps an I/O error that does not concern a named pipe; an error that came from
    /// this crate through `io::Error` is unwrapped back to the original.
    fn from(err: io::Error) -> Error {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let os_kind = err.kind();
            return match err.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(inner)) => *inner,
                _ => Error::new(ErrorKind::Other, os_kind.to_string()),
            };
        }
        let kind = crate::sys::classify(&err);
        Error::new(kind, kind.as_str()).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_pipe_detail_and_cause() {
        let err = Error::new(ErrorKind::NotFound, "connect: no server")
            .with_pipe(r"\\.\pipe\x")
            .with_source(io::Error::other("os says no"));
        assert_eq!(
            err.to_string(),
            r"\\.\pipe\x: connect: no server (os says no)"
        );
    }

    #[test]
    fn round_trips_through_io_error() {
        let err = Error::new(ErrorKind::Busy, "all busy").with_pipe("p");
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::ResourceBusy);
        let back = Error::from(io);
        assert_eq!(back.kind(), ErrorKind::Busy);
        assert_eq!(back.pipe(), Some("p"));
    }
}
