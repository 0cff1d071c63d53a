//! POSIX baseline transport: `AF_UNIX` / `SOCK_SEQPACKET` on tokio (Linux).
//!
//! * [`UdsListener::bind`] recovers a stale socket (connect probe; only a dead
//!   socket is unlinked, never a non-socket), creates the socket with mode
//!   0600 and removes it on drop.
//! * [`UdsTransport`] sends and receives one packet per call and advertises
//!   `SO_SNDBUF - 32` as its packet size: Linux refuses SEQPACKET datagrams
//!   larger than that, so advertising the raw `SO_SNDBUF` (as upstream does)
//!   breaks full-size packets.
//! * A zero-length packet is received as `Ok(0)`, not as the end: `recv`
//!   returns 0 for both, so a 0 counts as the end only when the socket's
//!   receive side is shut down and no packet with a payload is queued
//!   (`transport::sys::seqpacket_zero_is_end`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use pipewright_netipc::uds::{UdsListener, UdsTransport};
//! use pipewright_netipc::transport::PacketTransport;
//! let listener = UdsListener::bind("/tmp/demo.sock".as_ref()).expect("bind");
//! let mut client = UdsTransport::connect("/tmp/demo.sock".as_ref()).await?;
//! let mut server = listener.accept().await?;
//! client.send_packet(&[b"hello"]).await?;
//! let mut buf = [0u8; 16];
//! assert_eq!(server.recv_packet(&mut buf).await?, 5);
//! # Ok(()) }
//! ```

use crate::transport::sys;
use crate::transport::PacketTransport;
use socket2::{Domain, SockAddr, Socket, Type};
use std::fs::{File, Permissions};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Listen backlog.
pub const BACKLOG: i32 = 16;
/// Packet size used when `SO_SNDBUF` cannot be read.
pub const FALLBACK_PACKET_SIZE: usize = 65536;
/// How long `connect` retries while the listener's backlog is full.
pub const CONNECT_BACKLOG_RETRY: Duration = Duration::from_secs(5);

/// Why a listener could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live listener owns the path.
    #[error("{path:?} is in use by a live listener ({detail})")]
    AddrInUse {
        /// The socket path.
        path: PathBuf,
        /// What the probe saw.
        detail: String,
    },
    /// Something other than a socket is at the path; it is left alone.
    #[error("{path:?} exists and is not a socket; refusing to remove it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BindError + 'a {
    move |source| BindError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Makes `path` free for binding: nothing there, or a dead socket that is
/// removed. A live socket or a non-socket is an error.
fn recover_stale(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_owned(),
        });
    }
    let probe = match Socket::new(Domain::UNIX, Type::SEQPACKET, None) {
        Ok(s) => s,
        // Cannot even create a probe (EMFILE/ENFILE...): assume in use.
        Err(e) => {
            return Err(BindError::AddrInUse {
                path: path.to_owned(),
                detail: format!("probe socket unavailable: {e}"),
            })
        }
    };
    probe.set_nonblocking(true).map_err(io_err("probe", path))?;
    let addr = SockAddr::unix(path).map_err(io_err("address", path))?;
    match probe.connect(&addr) {
        Ok(()) => Err(BindError::AddrInUse {
            path: path.to_owned(),
            detail: "a listener accepted the probe connection".into(),
        }),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            // Dead socket file: nobody listens. Remove it (only it).
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("unlink stale socket", path)(e)),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(BindError::AddrInUse {
            path: path.to_owned(),
            detail: format!("probe connect failed: {e}"),
        }),
    }
}

/// A bound, listening SEQPACKET socket; the socket file is removed on drop
/// (only if it is still the one this listener created).
#[derive(Debug)]
pub struct UdsListener {
    io: AsyncFd<Socket>,
    path: PathBuf,
    identity: (u64, u64),
}

impl UdsListener {
    /// Binds `path` with mode 0600 after stale-socket recovery, and listens
    /// with a backlog of 16. Must be called within a tokio runtime.
    pub fn bind(path: &Path) -> Result<UdsListener, BindError> {
        recover_stale(path)?;
        let sock =
            Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(io_err("socket", path))?;
        // Linux creates the socket file with the socket inode's mode (minus
        // umask): setting 0600 on the descriptor before bind makes the file
        // 0600 from the start, without touching the process-wide umask.
        let file = File::from(OwnedFd::from(sock));
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io_err("fchmod socket", path))?;
        let sock = Socket::from(OwnedFd::from(file));
        let addr = SockAddr::unix(path).map_err(io_err("address", path))?;
        sock.bind(&addr).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                BindError::AddrInUse {
                    path: path.to_owned(),
                    detail: "bind raced with another listener".into(),
                }
            } else {
                io_err("bind", path)(e)
            }
        })?;
        let meta = std::fs::symlink_metadata(path).map_err(io_err("stat bound socket", path))?;
        let identity = (meta.dev(), meta.ino());
        let cleanup = |e: BindError| {
            let _ = std::fs::remove_file(path);
            e
        };
        // Belt and braces on file systems that ignore the inode mode.
        std::fs::set_permissions(path, Permissions::from_mode(0o600))
            .map_err(io_err("chmod", path))
            .map_err(cleanup)?;
        sock.listen(BACKLOG)
            .map_err(io_err("listen", path))
            .map_err(cleanup)?;
        sock.set_nonblocking(true)
            .map_err(io_err("set nonblocking", path))
            .map_err(cleanup)?;
        let io = sys::register_socket(sock)
            .map_err(io_err("register", path))
            .map_err(cleanup)?;
        Ok(UdsListener {
            io,
            path: path.to_owned(),
            identity,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one connection.
    pub async fn accept(&self) -> io::Result<UdsTransport> {
        loop {
            let mut guard = self.io.readable().await?;
            match guard.try_io(|io| io.get_ref().accept()) {
                Ok(Ok((sock, _))) => return UdsTransport::from_socket(sock),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

impl crate::transport::PacketListener for UdsListener {
    type Transport = UdsTransport;

    async fn accept(&self) -> io::Result<UdsTransport> {
        UdsListener::accept(self).await
    }
}

impl Drop for UdsListener {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.file_type().is_socket() && (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// One connected SEQPACKET socket.
#[derive(Debug)]
pub struct UdsTransport {
    io: AsyncFd<Socket>,
    max_packet: usize,
}

/// `SO_SNDBUF - 32`, the largest datagram Linux accepts on this socket
/// (fallback 65536 when the option cannot be read).
fn safe_packet_size(sock: &Socket) -> usize {
    match sock.send_buffer_size() {
        Ok(n) if n > 64 => n - 32,
        _ => FALLBACK_PACKET_SIZE,
    }
}

impl UdsTransport {
    fn from_socket(sock: Socket) -> io::Result<UdsTransport> {
        sock.set_nonblocking(true)?;
        let max_packet = safe_packet_size(&sock);
        Ok(UdsTransport {
            io: sys::register_socket(sock)?,
            max_packet,
        })
    }

    /// Connects to a listener at `path`, retrying for up to
    /// [`CONNECT_BACKLOG_RETRY`] while its backlog is full.
    pub async fn connect(path: &Path) -> io::Result<UdsTransport> {
        let sock = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
        sock.set_nonblocking(true)?;
        let addr = SockAddr::unix(path)?;
        let deadline = Instant::now() + CONNECT_BACKLOG_RETRY;
        loop {
            match sock.connect(&addr) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(e),
            }
        }
        UdsTransport::from_socket(sock)
    }

    /// A connected pair (`socketpair`), useful for tests.
    pub fn pair() -> io::Result<(UdsTransport, UdsTransport)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)?;
        Ok((UdsTransport::from_socket(a)?, UdsTransport::from_socket(b)?))
    }
}

impl PacketTransport for UdsTransport {
    fn max_packet_size(&self) -> usize {
        self.max_packet
    }

    async fn send_packet(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        loop {
            let mut guard = self.io.writable().await?;
            match guard.try_io(|io| {
                io.get_ref()
                    .send_vectored_with_flags(&slices, libc::MSG_NOSIGNAL)
            }) {
                Ok(Ok(n)) if n == total => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short SEQPACKET send: {n} of {total} bytes"),
                    ))
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    async fn recv_packet(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.io.readable().await?;
            let res =
                guard.try_io(|io| sys::recv_packet_reporting_truncation(io.get_ref().as_fd(), buf));
            match res {
                // 0 is either a zero-length packet (legal on SEQPACKET; the
                // session layer then sees a truncated header) or the end.
                Ok(Ok(0)) => {
                    if sys::seqpacket_zero_is_end(self.io.get_ref().as_fd())? {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed the connection",
                        ));
                    }
                    return Ok(0);
                }
                Ok(Ok(n)) if n > buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "received a {n}-byte packet, larger than the {}-byte buffer",
                            buf.len()
                        ),
                    ))
                }
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}
