//! Blocking streams, for a connection that owns a thread: each call blocks the calling
//! thread until it is done, with no runtime and no hop to another thread.
//!
//! On Windows a blocking read waits on its own event (the completion thread and the task
//! wake-up of the async path are skipped), which is what a request/response loop spends its
//! time on; writes keep the async path's in-flight writes and linger. On Unix the socket is
//! taken off tokio's reactor and used as a plain blocking socket. The message framing, the
//! end-of-stream marker and the bytes-written-arrive guarantee are those of [`PipeStream`].

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::options::PipeMode;
use crate::peer::Peer;
use crate::stream::PipeStream;
use crate::sys;

/// A connected pipe (Windows) or Unix socket whose calls block the calling thread, from
/// [`PipeStream::into_blocking`].
///
/// It is [`io::Read`] + [`io::Write`] and sends and receives whole messages like
/// [`PipeStream`]. A read waits until data arrives, the [read
/// timeout](Self::set_read_timeout) passes (nothing is lost; the stream stays usable) or an
/// [`Interrupter`] stops the stream (every later call fails with
/// [`Stopped`](ErrorKind::Stopped)). Dropping it ends the stream as dropping a `PipeStream`
/// does: written bytes still arrive, and the peer reads the orderly end in message mode.
///
/// ```no_run
/// use pipewright::{Listener, ListenerOptions, PipeMode};
/// # async fn demo() -> pipewright::Result<()> {
/// let listener = Listener::bind_with("echo", &ListenerOptions::new().mode(PipeMode::Message))?;
/// let conn = listener.accept().await?.into_blocking().await?;
/// std::thread::spawn(move || {
///     let mut conn = conn;
///     while let Ok(Some(msg)) = conn.recv_message() {
///         if conn.send_message(&msg).is_err() {
///             break;
///         }
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BlockingPipeStream {
    inner: sys::Stream,
    interrupter: Interrupter,
}

/// Stops a [`BlockingPipeStream`] from another thread: the call in progress returns an
/// error of kind [`Stopped`](ErrorKind::Stopped), and so does every later one. On Unix the
/// socket is also shut down both ways (the peer reads end of stream).
///
/// ```no_run
/// # fn demo(mut conn: pipewright::BlockingPipeStream) {
/// let stop = conn.interrupter();
/// std::thread::spawn(move || stop.interrupt());
/// assert!(conn.recv_message().is_err());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Interrupter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sys: Arc<sys::Interrupt>,
    /// The thread parked in a call, woken by `interrupt`.
    parked: Mutex<Option<Thread>>,
}

impl Interrupter {
    /// Stops the stream: the blocked call (if any) and all later ones fail with
    /// [`Stopped`](ErrorKind::Stopped).
    pub fn interrupt(&self) {
        self.shared.sys.interrupt();
        let parked = self
            .shared
            .parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = parked {
            thread.unpark();
        }
    }

    /// Whether [`interrupt`](Self::interrupt) was called.
    pub fn is_interrupted(&self) -> bool {
        self.shared.sys.is_set()
    }

    fn stopped(&self) -> Error {
        Error::new(
            ErrorKind::Stopped,
            "the blocking stream was stopped by its Interrupter; drop it",
        )
    }

    fn set_parked(&self, thread: Option<Thread>) {
        *self.shared.parked.lock().unwrap_or_else(|p| p.into_inner()) = thread;
    }

    /// Runs one call unless the stream was stopped; a call that failed, or (on Unix, where
    /// the interrupter shuts the socket down) saw the end of stream because of the
    /// interrupter, reports `Stopped`.
    fn guard<T>(&self, call: impl FnOnce() -> Result<T>, ended: impl Fn(&T) -> bool) -> Result<T> {
        if self.is_interrupted() {
            return Err(self.stopped());
        }
        match call() {
            Err(e) if self.is_interrupted() && e.kind() != ErrorKind::Stopped => {
                Err(self.stopped())
            }
            Ok(v) if ended(&v) && self.is_interrupted() => Err(self.stopped()),
            r => r,
        }
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs one stream operation on the calling thread. The first poll needs no waker (a
/// blocking read waits in place, a write the pipe takes at once finishes in place); only
/// an operation that has to wait for the completion thread (a write into a full pipe)
/// parks the thread until it is woken or interrupted.
fn block_on<T>(interrupter: &Interrupter, future: impl Future<Output = Result<T>>) -> Result<T> {
    let mut future = pin!(future);
    if let Poll::Ready(v) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return v;
    }
    let me = std::thread::current();
    let waker = Waker::from(Arc::new(ThreadWaker(me.clone())));
    let mut cx = Context::from_waker(&waker);
    interrupter.set_parked(Some(me));
    let result = loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            break v;
        }
        if interrupter.is_interrupted() {
            break Err(interrupter.stopped());
        }
        std::thread::park();
    };
    interrupter.set_parked(None);
    result
}

impl PipeStream {
    /// Turns this stream into a [`BlockingPipeStream`] for a thread of its own. What was
    /// written is still delivered and what has arrived is still read first; a read this
    /// stream had in flight is cancelled without losing data.
    ///
    /// ```no_run
    /// # async fn demo() -> pipewright::Result<()> {
    /// let conn = pipewright::connect("svc").await?.into_blocking().await?;
    /// std::thread::spawn(move || {
    ///     let mut conn = conn;
    ///     conn.send_message(b"ping")
    /// });
    /// # Ok(()) }
    /// ```
    pub async fn into_blocking(self) -> Result<BlockingPipeStream> {
        let mut inner = self.into_sys();
        let sys = inner.make_blocking().await?;
        Ok(BlockingPipeStream {
            inner,
            interrupter: Interrupter {
                shared: Arc::new(Shared {
                    sys,
                    parked: Mutex::new(None),
                }),
            },
        })
    }
}

impl BlockingPipeStream {
    /// Byte or message mode.
    pub fn mode(&self) -> PipeMode {
        self.inner.mode()
    }

    /// Whether this is the server end.
    pub fn is_server(&self) -> bool {
        self.inner.is_server()
    }

    /// The peer's process id and user.
    pub fn peer(&self) -> Result<Peer> {
        self.inner.peer()
    }

    /// A handle that stops this stream from another thread.
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// The longest a read waits for data; past it the read fails with
    /// [`TimedOut`](ErrorKind::TimedOut), nothing read is lost and the stream stays usable.
    /// `None` (the default) waits for ever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.set_read_timeout(timeout);
    }

    /// Sends one whole message (see [`PipeStream::send_message`]) and waits until it is
    /// written.
    pub fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        let (inner, stop) = (&mut self.inner, &self.interrupter);
        stop.guard(|| block_on(stop, inner.send_message(msg)), |_| false)
    }

    /// Receives one whole message; `Ok(None)` at the peer's orderly end (see
    /// [`PipeStream::recv_message`]).
    pub fn recv_message(&mut self) -> Result<Option<Vec<u8>>> {
        let (inner, stop) = (&mut self.inner, &self.interrupter);
        stop.guard(|| block_on(stop, inner.recv_message()), Option::is_none)
    }

    /// Writes what the stream takes now, without waiting: the bytes taken (they arrive as
    /// any written bytes do), or an error of kind [`io::ErrorKind::WouldBlock`] when it
    /// takes none because the peer is not reading. Byte mode only (a message is sent whole
    /// with [`send_message`](Self::send_message)).
    ///
    /// ```no_run
    /// # fn demo(mut conn: pipewright::BlockingPipeStream) -> std::io::Result<()> {
    /// match conn.try_write(b"answer") {
    ///     Ok(n) => println!("{n} bytes on their way"),
    ///     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => println!("peer not reading"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.inner.mode() != PipeMode::Byte {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "try_write: a message-mode stream sends whole messages; use send_message",
            )
            .into());
        }
        if self.interrupter.is_interrupted() {
            let stopped = "try_write: the stream was interrupted (Interrupter::interrupt); drop it";
            return Err(Error::new(ErrorKind::Stopped, stopped).into());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.inner.try_write(buf)
    }

    /// Turns this stream back into an async [`PipeStream`] (inside a tokio runtime), for a
    /// connection a task serves from here on. Nothing is lost: what was written still
    /// arrives and what has arrived is still read first. The stream's [`Interrupter`]s no
    /// longer stop it (on Unix one still shuts the socket down: drop them).
    ///
    /// ```no_run
    /// # async fn demo(conn: pipewright::BlockingPipeStream) -> pipewright::Result<()> {
    /// let mut conn = conn.into_async()?;
    /// conn.send_message(b"served by a task now").await
    /// # }
    /// ```
    pub fn into_async(self) -> Result<PipeStream> {
        let mut inner = self.inner;
        #[cfg(unix)]
        inner.make_async()?;
        #[cfg(windows)]
        inner.make_async();
        Ok(PipeStream::from_sys(inner))
    }

    /// Ends our direction and keeps reading (see [`PipeStream::close_write`]).
    pub fn close_write(&mut self) -> Result<()> {
        let (inner, stop) = (&mut self.inner, &self.interrupter);
        stop.guard(|| block_on(stop, inner.close_write()), |_| false)
    }
}

fn io_result<T>(r: io::Result<T>) -> Result<T> {
    r.map_err(Error::from)
}

impl io::Read for BlockingPipeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        let empty = buf.is_empty();
        let (inner, stop) = (&mut self.inner, &self.interrupter);
        let read = || match inner.read_direct(buf) {
            // A large read with nothing buffered goes straight into `buf` (Windows).
            Some(r) => io_result(r),
            None => block_on(stop, async { io_result(inner.read(buf).await) }),
        };
        stop.guard(read, |&n| n == 0 && !empty)
            .map_err(io::Error::from)
    }
}

impl io::Write for BlockingPipeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use tokio::io::AsyncWriteExt;
        let (inner, stop) = (&mut self.inner, &self.interrupter);
        let write = || match inner.write_direct(buf) {
            // A large write with none in flight goes straight from `buf` (Windows).
            Some(r) => io_result(r),
            None => block_on(stop, async { io_result(inner.write(buf).await) }),
        };
        stop.guard(write, |_| false).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let (inner, stop) = (&mut self.inner, &self.interrupter);
        stop.guard(
            || block_on(stop, async { io_result(inner.flush().await) }),
            |_| false,
        )
        .map_err(io::Error::from)
    }
}
