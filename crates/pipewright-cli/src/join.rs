//! Joining two connected ends: two copy loops with large buffers, end-of-stream propagation
//! where the transport has a half-close, and a bounded linger once one direction has ended.
//!
//! ```ignore
//! let policy = Policy::bridge(Duration::from_secs(1));
//! let totals = join(left_side, right_side, &policy).await?;
//! println!("{} bytes left to right", totals.left_to_right);
//! ```

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// A boxed reading half.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writing half.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The largest read a copy loop issues.
pub const COPY_BLOCK: usize = 256 * 1024;

/// A copy loop's first buffer. A read that fills the buffer doubles it, up to
/// [`COPY_BLOCK`], so an idle or chatty connection holds 4 KiB per direction and a bulk one
/// reaches large reads after a few blocks (docs/bench.md, `pipewright wsl`: memory).
const FIRST_COPY_BLOCK: usize = 4 * 1024;

/// One connected end of a join: its two halves and what its transport can signal.
pub struct Side {
    /// What to call this end in messages, e.g. `\\.\pipe\x` or `127.0.0.1:5000`.
    pub label: String,
    /// Data from the peer.
    pub reader: BoxRead,
    /// Data to the peer.
    pub writer: BoxWrite,
    /// `shutdown()` on the writer tells the peer "no more data" and keeps the reading half
    /// open (TCP, Unix sockets, message pipes, a child's stdin). Without it, shutting down
    /// would close the whole connection, so the join only flushes.
    pub half_close: bool,
    /// End of stream on the reader means the peer is gone entirely (Windows byte pipes, where
    /// there is no half-close), so nothing written afterwards can arrive.
    pub eof_is_close: bool,
    /// Whatever must live as long as the connection (a child process, say).
    pub keep_alive: Option<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("label", &self.label)
            .field("half_close", &self.half_close)
            .field("eof_is_close", &self.eof_is_close)
            .finish()
    }
}

impl Side {
    /// A side from any stream, split in two halves.
    pub fn from_stream<S>(
        label: impl Into<String>,
        stream: S,
        half_close: bool,
        eof_is_close: bool,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        Side {
            label: label.into(),
            reader: Box::new(reader),
            writer: Box::new(writer),
            half_close,
            eof_is_close,
            keep_alive: None,
        }
    }

    /// A side from a pipewright stream: half-close on message pipes and Unix sockets; on a
    /// Windows byte pipe end of stream means the peer closed.
    pub fn from_pipe(label: impl Into<String>, stream: pipewright::PipeStream) -> Self {
        let message = stream.mode() == pipewright::PipeMode::Message;
        let half_close = message || cfg!(unix);
        let eof_is_close = cfg!(windows) && !message;
        Side::from_stream(label, stream, half_close, eof_is_close)
    }

    /// A side from a TCP connection (half-close with `shutdown(SD_SEND)`).
    pub fn from_tcp(label: impl Into<String>, stream: tokio::net::TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Side {
            label: label.into(),
            reader: Box::new(reader),
            writer: Box::new(writer),
            half_close: true,
            eof_is_close: false,
            keep_alive: None,
        }
    }
}

/// What the join does once one direction has reached end of stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEof {
    /// Keep copying the other direction until it ends too.
    Wait,
    /// Keep copying the other direction while data moves; stop once it has been idle this long.
    Linger(Duration),
    /// Stop the other direction at once: deliver what is already read, flush, and end. Used
    /// when the end of stream means the peer is gone.
    Finish,
    /// Return at once.
    Exit,
}

/// How a join propagates ends of stream.
#[derive(Debug, Clone)]
pub struct Policy {
    /// When the left side ends, shut the right side's write half (if it has one).
    pub half_close_right: bool,
    /// When the right side ends, shut the left side's write half (if it has one).
    pub half_close_left: bool,
    /// What to do after the left side's end of stream.
    pub after_left_eof: AfterEof,
    /// What to do after the right side's end of stream.
    pub after_right_eof: AfterEof,
}

impl Policy {
    /// socat's behaviour: propagate every end of stream, then linger while data moves.
    pub fn bridge(linger: Duration) -> Self {
        Policy {
            half_close_right: true,
            half_close_left: true,
            after_left_eof: AfterEof::Linger(linger),
            after_right_eof: AfterEof::Linger(linger),
        }
    }
}

/// Bytes moved by a join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Left to right.
    pub left_to_right: u64,
    /// Right to left.
    pub right_to_left: u64,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Reading from a side failed.
    #[error("read from {side}: {source}")]
    Read {
        /// The side's label.
        side: String,
        /// The failure.
        source: io::Error,
    },
    /// Writing to a side failed.
    #[error("write to {side}: {source}")]
    Write {
        /// The side's label.
        side: String,
        /// The failure.
        source: io::Error,
    },
}

impl JoinError {
    /// The underlying I/O error.
    pub fn io(&self) -> &io::Error {
        match self {
            JoinError::Read { source, .. } | JoinError::Write { source, .. } => source,
        }
    }
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    Stopped,
}

struct Direction {
    from: String,
    to: String,
    half_close: bool,
    progress: Arc<AtomicU64>,
    stop: Arc<Notify>,
}

async fn copy(mut reader: BoxRead, mut writer: BoxWrite, dir: Direction) -> Result<End, JoinError> {
    let read_err = |e| JoinError::Read {
        side: dir.from.clone(),
        source: e,
    };
    let write_err = |e| JoinError::Write {
        side: dir.to.clone(),
        source: e,
    };
    let mut buf = vec![0u8; FIRST_COPY_BLOCK];
    loop {
        let n = tokio::select! {
            biased;
            _ = dir.stop.notified() => {
                // Deliver what has already arrived, without waiting for more.
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::ZERO, reader.read(&mut buf)).await {
                    if n > 0 {
                        writer.write_all(&buf[..n]).await.map_err(write_err)?;
                        dir.progress.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                writer.flush().await.map_err(write_err)?;
                return Ok(End::Stopped);
            }
            read = reader.read(&mut buf) => read.map_err(read_err)?,
        };
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await.map_err(write_err)?;
        dir.progress.fetch_add(n as u64, Ordering::Relaxed);
        if n == buf.len() && buf.len() < COPY_BLOCK {
            buf.resize(buf.len() * 2, 0);
        }
    }
    tracing::debug!(from = %dir.from, to = %dir.to, "end of stream");
    if dir.half_close {
        writer.shutdown().await.map_err(write_err)?;
    } else {
        writer.flush().await.map_err(write_err)?;
    }
    Ok(End::Eof)
}

/// Copies left to right and right to left at once until both directions have ended, or
/// the policy says to stop. The first failure ends the join.
pub async fn join(left: Side, right: Side, policy: &Policy) -> Result<Totals, JoinError> {
    let progress = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let stops = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    let ltr = copy(
        left.reader,
        right.writer,
        Direction {
            from: left.label.clone(),
            to: right.label.clone(),
            half_close: policy.half_close_right && right.half_close,
            progress: progress[0].clone(),
            stop: stops[0].clone(),
        },
    );
    let rtl = copy(
        right.reader,
        left.writer,
        Direction {
            from: right.label.clone(),
            to: left.label.clone(),
            half_close: policy.half_close_left && left.half_close,
            progress: progress[1].clone(),
            stop: stops[1].clone(),
        },
    );
    let _keep = (left.keep_alive, right.keep_alive);
    let mut dirs = [Box::pin(ltr), Box::pin(rtl)];
    let [a, b] = &mut dirs;
    let (first, ended) = tokio::select! {
        r = a.as_mut() => (0usize, r),
        r = b.as_mut() => (1usize, r),
    };
    ended?;
    let other = 1 - first;
    let after = if first == 0 {
        policy.after_left_eof
    } else {
        policy.after_right_eof
    };
    let totals = |p: &[Arc<AtomicU64>; 2]| Totals {
        left_to_right: p[0].load(Ordering::Relaxed),
        right_to_left: p[1].load(Ordering::Relaxed),
    };
    let rest = dirs[other].as_mut();
    match after {
        AfterEof::Exit => {}
        AfterEof::Wait => {
            rest.await?;
        }
        AfterEof::Finish => {
            stops[other].notify_one();
            rest.await?;
        }
        AfterEof::Linger(idle) => {
            let mut rest = rest;
            loop {
                let before = progress[other].load(Ordering::Relaxed);
                tokio::select! {
                    r = rest.as_mut() => { r?; break; }
                    _ = tokio::time::sleep(idle) => {
                        if progress[other].load(Ordering::Relaxed) == before {
                            tracing::debug!(?idle, "linger over: the other direction stayed idle");
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(totals(&progress))
}
