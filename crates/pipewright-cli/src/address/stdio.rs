//! The process's stdin and stdout as async streams that read and write in large blocks.
//!
//! Each end has a thread of its own doing plain blocking reads or writes of up to
//! [`STDIO_BLOCK`] bytes on a duplicate of the handle, so the console, a pipe, a file or
//! a socket all work, nothing is buffered line by line, and a thread blocked in a read never
//! keeps the process from exiting.
//!
//! ```ignore
//! use tokio::io::AsyncWriteExt;
//! let mut out = stdio::stdout()?;
//! out.write_all(b"hello\n").await?;
//! out.shutdown().await?;
//! ```

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// The largest read from stdin and the most a single write to stdout carries.
pub const STDIO_BLOCK: usize = 256 * 1024;

/// The first stdin block. A read that fills its block doubles the next one, up to
/// [`STDIO_BLOCK`], so an idle or chatty relay holds 16 KiB and a bulk one reaches large reads.
const FIRST_STDIN_BLOCK: usize = 16 * 1024;

/// Stack of each stdio thread: it only reads or writes and hands blocks over a channel.
const STDIO_THREAD_STACK: usize = 256 * 1024;

/// Blocks queued between a stdio thread and the async side.
const QUEUE: usize = 4;

/// Stdin as [`AsyncRead`]. Reads reach the caller in blocks of up to [`STDIO_BLOCK`] bytes;
/// nothing is allocated beyond the first 16 KiB block until data fills it.
#[derive(Debug)]
pub struct Stdin {
    rx: mpsc::Receiver<io::Result<(Vec<u8>, usize)>>,
    /// Consumed blocks go back to the thread, so reads never allocate or zero memory.
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
    done: bool,
}

/// Opens stdin. Only one reader may exist per process (the thread consumes the handle).
pub fn stdin() -> io::Result<Stdin> {
    let file = File::from(duplicate_stdin()?);
    let (tx, rx) = mpsc::channel(QUEUE);
    // Spare blocks coming back: never more than the blocks in circulation, which the bounded
    // data channel limits.
    let (recycle, spare) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(STDIO_THREAD_STACK)
        .spawn(move || read_loop(file, tx, spare))?;
    Ok(Stdin {
        rx,
        recycle,
        current: Vec::new(),
        len: 0,
        pos: 0,
        done: false,
    })
}

fn read_loop(
    mut file: File,
    tx: mpsc::Sender<io::Result<(Vec<u8>, usize)>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut size = FIRST_STDIN_BLOCK;
    loop {
        let mut block = match spare.try_recv() {
            Ok(block) if block.len() >= size => block,
            _ => vec![0u8; size],
        };
        let result = match file.read(&mut block) {
            Ok(n) => {
                if n == block.len() {
                    size = (size * 2).min(STDIO_BLOCK);
                }
                Ok((block, n))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A closed pipe on stdin is the end of input, as on Windows for ERROR_BROKEN_PIPE.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok((Vec::new(), 0)),
            Err(e) => Err(e),
        };
        let last = !matches!(&result, Ok((_, n)) if *n > 0);
        if tx.blocking_send(result).is_err() || last {
            return;
        }
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.len {
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok((block, n))) if n > 0 => {
                    let used = std::mem::replace(&mut this.current, block);
                    if !used.is_empty() {
                        let _ = this.recycle.send(used);
                    }
                    this.len = n;
                    this.pos = 0;
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
                Some(Ok(_)) | None => {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let n = (this.len - this.pos).min(buf.remaining());
        buf.put_slice(&this.current[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

enum Job {
    Data(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

type Permit = Pin<Box<dyn Future<Output = Option<mpsc::OwnedPermit<Job>>> + Send>>;

/// Stdout as [`AsyncWrite`]. `poll_write` hands the bytes to the writer thread; `flush` waits
/// until they are written; `shutdown` flushes, stops the thread and, when stdout is a socket
/// (on Unix), shuts its write half so the reader sees end of stream. The thread starts at the
/// first write: an idle relay does not pay for it.
pub struct Stdout {
    /// The duplicated handle until the writer thread takes it.
    idle: Option<File>,
    tx: Option<mpsc::Sender<Job>>,
    permit: Option<Permit>,
    flushed: Option<oneshot::Receiver<()>>,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl std::fmt::Debug for Stdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stdout")
            .field("open", &(self.idle.is_some() || self.tx.is_some()))
            .finish()
    }
}

/// Opens stdout.
pub fn stdout() -> io::Result<Stdout> {
    Ok(Stdout {
        idle: Some(File::from(duplicate_stdout()?)),
        tx: None,
        permit: None,
        flushed: None,
        error: Arc::new(Mutex::new(None)),
    })
}

fn write_loop(mut file: File, mut rx: mpsc::Receiver<Job>, error: Arc<Mutex<Option<io::Error>>>) {
    while let Some(job) = rx.blocking_recv() {
        match job {
            Job::Data(block) => {
                if let Err(e) = file.write_all(&block) {
                    *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
            Job::Flush(done) => {
                let _ = file.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = file.flush();
    shut_write_if_socket(&file);
}

#[cfg(unix)]
fn shut_write_if_socket(file: &File) {
    // Not a socket: ENOTSOCK, nothing to do.
    let _ = socket2::SockRef::from(file).shutdown(std::net::Shutdown::Write);
}

#[cfg(not(unix))]
fn shut_write_if_socket(_file: &File) {}

impl Stdout {
    /// Starts the writer thread if it has not started yet.
    fn start(&mut self) -> io::Result<()> {
        let Some(file) = self.idle.take() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread_error = self.error.clone();
        std::thread::Builder::new()
            .name("stdout".into())
            .stack_size(STDIO_THREAD_STACK)
            .spawn(move || write_loop(file, rx, thread_error))?;
        self.tx = Some(tx);
        Ok(())
    }

    fn failure(&self) -> io::Error {
        match self
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(e) => io::Error::new(e.kind(), format!("write to stdout: {e}")),
            None => io::Error::new(io::ErrorKind::BrokenPipe, "stdout is closed"),
        }
    }

    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<mpsc::OwnedPermit<Job>>> {
        if self.permit.is_none() {
            let Some(tx) = self.tx.clone() else {
                return Poll::Ready(Err(self.failure()));
            };
            self.permit = Some(Box::pin(async move { tx.reserve_owned().await.ok() }));
        }
        let permit = self.permit.as_mut().expect("set above");
        let got = ready!(permit.as_mut().poll(cx));
        self.permit = None;
        Poll::Ready(got.ok_or_else(|| self.failure()))
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.start()?;
        let permit = ready!(self.poll_permit(cx))?;
        let n = buf.len().min(STDIO_BLOCK);
        permit.send(Job::Data(buf[..n].to_vec()));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing written yet (idle), or the thread has finished.
        if self.tx.is_none() {
            return Poll::Ready(Ok(()));
        }
        if self.flushed.is_none() {
            let permit = ready!(self.poll_permit(cx))?;
            let (done, flushed) = oneshot::channel();
            permit.send(Job::Flush(done));
            self.flushed = Some(flushed);
        }
        let flushed = self.flushed.as_mut().expect("set above");
        let result = ready!(Pin::new(flushed).poll(cx));
        self.flushed = None;
        Poll::Ready(result.map_err(|_| self.failure()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(file) = self.idle.take() {
            // Never written to: no thread to stop, only the end of stream to pass on.
            shut_write_if_socket(&file);
            return Poll::Ready(Ok(()));
        }
        ready!(self.as_mut().poll_flush(cx))?;
        // Dropping the sender ends the thread, which flushes and shuts a socket's write half.
        self.tx = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(unix)]
fn duplicate_stdin() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    io::stdin().as_fd().try_clone_to_owned()
}

#[cfg(unix)]
fn duplicate_stdout() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    io::stdout().as_fd().try_clone_to_owned()
}

#[cfg(windows)]
fn duplicate_stdin() -> io::Result<std::os::windows::io::OwnedHandle> {
    use std::os::windows::io::AsHandle;
    io::stdin().as_handle().try_clone_to_owned()
}

#[cfg(windows)]
fn duplicate_stdout() -> io::Result<std::os::windows::io::OwnedHandle> {
    use std::os::windows::io::AsHandle;
    io::stdout().as_handle().try_clone_to_owned()
}
