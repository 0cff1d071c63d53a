//! Linux system calls: SEQPACKET receive with truncation reporting and
//! reactor registration.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `recv(fd, buf, len, MSG_TRUNC)` on a SEQPACKET socket: receives one packet
/// into `buf` and returns the packet's real length, which exceeds `buf.len()`
/// when the packet did not fit (Linux reports the full length with MSG_TRUNC).
pub(crate) fn recv_packet_reporting_truncation(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed slice, so the kernel may
    // write up to `buf.len()` bytes at `buf.as_mut_ptr()` (MSG_TRUNC does not
    // make it write more than `len`); `fd` is a valid open descriptor borrowed
    // for the duration of the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n.unsigned_abs())
    }
}

/// Registers an owned socket with the current tokio reactor. Fails (instead
/// of panicking) when called outside a tokio runtime.
pub(crate) fn register_socket(
    sock: socket2::Socket,
) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "netipc sockets must be created inside a tokio runtime",
        ));
    }
    // SAFETY: `socket2::Socket` owns its descriptor: `as_raw_fd()` always
    // returns that same open descriptor, which stays open until the socket is
    // dropped, and the `AsyncFd` takes ownership of the socket, so the
    // descriptor outlives the registration.
    unsafe { tokio::io::unix::AsyncFd::register(sock) }.map_err(io::Error::from)
}
