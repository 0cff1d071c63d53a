//! The socket under a Unix stream: registered with tokio's reactor, or, once the stream was
//! made blocking, a plain blocking socket whose `AsyncRead`/`AsyncWrite` calls block the
//! calling thread and are always ready (so the framing code serves both).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use crate::error::{Error, ErrorKind};

/// No SIGPIPE from a send to a peer that is gone (Apple systems have no such flag; Rust
/// programs ignore SIGPIPE there by default).
#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

#[derive(Debug)]
pub(crate) enum Socket {
    Async(UnixStream),
    Blocking(StdUnixStream),
}

/// Shared by a blocking stream and its interrupters: shutting the socket down ends a
/// blocked read or write at once; the flag tells the stream why.
#[derive(Debug)]
pub(crate) struct Interrupt {
    socket: StdUnixStream,
    set: AtomicBool,
}

impl Interrupt {
    /// Ends the wait in progress and every later one (the socket is shut down both ways).
    pub(crate) fn interrupt(&self) {
        self.set.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }
}

impl Socket {
    /// Switches to a blocking socket (the same open socket, taken off the reactor).
    pub(crate) fn make_blocking(&mut self) -> io::Result<Arc<Interrupt>> {
        let blocking = match self {
            Socket::Async(io) => {
                let fd = io.as_fd().try_clone_to_owned()?;
                let std = StdUnixStream::from(fd);
                std.set_nonblocking(false)?;
                std
            }
            Socket::Blocking(std) => std.try_clone()?,
        };
        let interrupt = Arc::new(Interrupt {
            socket: blocking.try_clone()?,
            set: AtomicBool::new(false),
        });
        // Dropping the tokio socket takes it off the reactor and closes its descriptor;
        // the socket stays open through ours.
        *self = Socket::Blocking(blocking);
        Ok(interrupt)
    }

    /// Switches back to a socket on tokio's reactor; inside a tokio runtime only.
    pub(crate) fn make_async(&mut self) -> io::Result<()> {
        let Socket::Blocking(std) = self else {
            return Ok(());
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "a stream can be made async only inside a tokio runtime; call it from a task \
                 or inside Runtime::enter",
            ));
        }
        let std = std.try_clone()?;
        std.set_nonblocking(true)?;
        *self = Socket::Async(UnixStream::from_std(std)?);
        Ok(())
    }

    /// One send that never waits: what the socket takes now, or `WouldBlock`.
    pub(crate) fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Async(s) => s.try_write(buf),
            Socket::Blocking(s) => loop {
                let flags = SEND_FLAGS | libc::MSG_DONTWAIT;
                match socket2::SockRef::from(s).send_with_flags(buf, flags) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            },
        }
    }

    /// The longest a blocking read waits (`None`: no limit).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Async(_) => Ok(()),
            Socket::Blocking(s) => {
                s.set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))
            }
        }
    }

    pub(crate) fn peer_cred(&self) -> io::Result<(Option<i32>, u32)> {
        match self {
            Socket::Async(s) => s.peer_cred().map(|c| (c.pid(), c.uid())),
            Socket::Blocking(s) => peer_cred_of(s.as_fd()),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_cred_of(fd: BorrowedFd<'_>) -> io::Result<(Option<i32>, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor; `cred` and `len` are valid for writes of the
    // sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((Some(cred.pid), cred.uid))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn peer_cred_of(fd: BorrowedFd<'_>) -> io::Result<(Option<i32>, u32)> {
    use std::os::fd::AsRawFd;
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: a valid socket descriptor; `uid` and `gid` are valid out pointers.
    if unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((None, uid))
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Async(s) => s.as_fd(),
            Socket::Blocking(s) => s.as_fd(),
        }
    }
}

/// A blocking read that ran into the socket's read timeout.
fn timed_out(timeout: Option<Duration>) -> io::Error {
    Error::new(
        ErrorKind::TimedOut,
        format!("receive: nothing arrived within the read timeout of {timeout:?}; the stream is still usable"),
    )
    .into()
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Async(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Blocking(s) => loop {
                match (&*s).read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Poll::Ready(Err(timed_out(s.read_timeout().ok().flatten())))
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Async(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Blocking(s) => loop {
                match socket2::SockRef::from(&*s).send_with_flags(buf, SEND_FLAGS) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return Poll::Ready(r),
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Async(s) => Pin::new(s).poll_flush(cx),
            Socket::Blocking(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Async(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Blocking(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
        }
    }
}
