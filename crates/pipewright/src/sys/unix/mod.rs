//! Unix: the same API over Unix domain stream sockets.

mod framing;
mod listener;
#[cfg(target_os = "linux")]
pub(crate) mod os;
mod stream;

use std::io;

pub(crate) use listener::Listener;
pub(crate) use stream::{connect_once, Stream};

use crate::error::{ErrorKind, Result};
use crate::peer::PeerUser;

/// Maps an OS error to the crate's kinds.
pub(crate) fn classify(err: &io::Error) -> ErrorKind {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => ErrorKind::NotFound,
        Some(libc::EAGAIN) => ErrorKind::Busy,
        Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::AccessDenied,
        Some(libc::EADDRINUSE) => ErrorKind::AlreadyInUse,
        Some(libc::ETIMEDOUT) => ErrorKind::TimedOut,
        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => {
            ErrorKind::Disconnected
        }
        Some(libc::ENAMETOOLONG) => ErrorKind::InvalidName,
        _ => match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::AccessDenied,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => ErrorKind::Disconnected,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        },
    }
}

pub(crate) fn is_wine() -> bool {
    false
}

pub(crate) fn wine_version() -> Option<String> {
    None
}

pub(crate) fn current_user() -> Result<PeerUser> {
    // SAFETY: getuid has no preconditions and cannot fail.
    Ok(PeerUser::Uid(unsafe { libc::getuid() }))
}
