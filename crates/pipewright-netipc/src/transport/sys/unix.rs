//! The system calls of the UDS SEQPACKET transport that std, socket2 and
//! tokio do not wrap safely: receiving a packet with its real length, telling
//! a zero-length packet from the end, and registering a socket with the
//! reactor. The only `unsafe` code of the crate.

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

/// Tells what a SEQPACKET receive that returned 0 bytes was: `true` when the
/// connection has ended (the peer closed or shut down its sending side and
/// nothing with a payload is queued), `false` when it was a zero-length packet
/// (a legal datagram that `recv` reports the same way as the end).
///
/// Linux sets `RCV_SHUTDOWN` (poll reports `POLLRDHUP`) before a receive can
/// return the end, and never clears it; while it is not set the 0 was a packet.
/// Once it is set, `FIONREAD` (the bytes queued) tells whether real packets are
/// still waiting behind the zero-length one; when only zero-length packets (or
/// nothing) remain, the connection is over.
pub(crate) fn seqpacket_zero_is_end(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable pollfd for the duration of the
    // call, the count passed is 1, and a 0 timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) == 0 {
        return Ok(false);
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points to
    // `queued`, alive and writable for the call; `fd` is a valid descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued <= 0)
}

/// Registers an owned socket with the current tokio reactor. Fails (instead
/// of panicking) when called outside a tokio runtime.
pub(crate) fn register_socket(
    sock: socket2::Socket,
) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "sockets must be registered inside a tokio runtime",
        ));
    }
    // SAFETY: `socket2::Socket` owns its descriptor: `as_raw_fd()` always
    // returns that same open descriptor, which stays open until the socket is
    // dropped, and the `AsyncFd` takes ownership of the socket, so the
    // descriptor outlives the registration.
    unsafe { tokio::io::unix::AsyncFd::register(sock) }.map_err(io::Error::from)
}
