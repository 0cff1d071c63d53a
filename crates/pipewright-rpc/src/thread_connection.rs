//! Serving one connection on a thread of its own (see
//! [`Server::connection_threads`](crate::Server::connection_threads)).
//!
//! The thread reads requests through the core's blocking stream and answers them one at a
//! time, in the order they came: a handler that finishes at once is answered in place, one
//! that waits is run to the end on this thread with the server's runtime driving its I/O
//! and timers. Answers to requests that arrived together leave in one write.
//!
//! Answers are written without waiting. When the stream takes no more because the client
//! is not reading, the thread does not block in the write (a client that sends more
//! requests before it reads would then wait on us while we wait on it): it hands the
//! connection, with the requests read and the answers not yet written, to a task that
//! serves it as every other connection is served, with the server's queue limits and
//! backpressure. A client that calls one request at a time stays on the thread unless an
//! answer is larger than the pipe's buffers take at once (then the task form serves it).
//!
//! Stopping: the server marks the connection stopping. A thread waiting for a request is
//! interrupted at once; a thread running a handler finishes it, writes its answer and ends.
//! After the grace, a handler still running is dropped and a write still blocked is
//! interrupted.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pipewright::{BlockingPipeStream, Interrupter};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use crate::frame::HEADER_LEN;
use crate::frame_buffer::{FrameBuffer, Front, READ_BUFFER};
use crate::router::{Dispatch, ReplyFuture, Router};
use crate::server::{oversize_answer, Stop};

/// The connection's thread, seen from the server.
pub(crate) struct ConnectionThread {
    control: Arc<Control>,
    /// Completes with an error when the thread has ended and dropped its stream, or with
    /// the connection when the thread hands it over.
    done: oneshot::Receiver<HandOff>,
}

/// A connection a thread gives up because the client does not take its answers: to be
/// served by a task from here on.
pub(crate) struct HandOff {
    pub(crate) stream: BlockingPipeStream,
    /// Bytes read and not handled yet.
    pub(crate) read: Vec<u8>,
    /// Answers not written yet, in order.
    pub(crate) answers: Vec<u8>,
}

/// How the thread's loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// The connection is done: closed, failed or stopped.
    Ended,
    /// The stream took no more answers: the connection goes on elsewhere with these.
    HandOff { read: Vec<u8>, answers: Vec<u8> },
}

/// A stream the thread serves: reads and writes block, and a write can be tried without
/// waiting.
pub(crate) trait TryWrite: Read + Write {
    /// Writes what the stream takes now; `WouldBlock` when it takes nothing.
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;
}

impl TryWrite for BlockingPipeStream {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BlockingPipeStream::try_write(self, buf)
    }
}

impl<T: TryWrite + ?Sized> TryWrite for &mut T {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (**self).try_write(buf)
    }
}

/// What the server and the thread share.
pub(crate) struct Control {
    phase: Mutex<Phase>,
    /// Ends the thread's blocked read or write (none for a stream that never blocks).
    interrupter: Option<Interrupter>,
    /// Set once the shutdown grace is over: a handler still running is dropped.
    grace_over: watch::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for requests: safe to interrupt, nothing read is unanswered.
    Reading,
    /// Running a handler or writing answers.
    Answering,
    /// The server has stopped: no further request is taken.
    Stopping,
    /// The thread gave the connection to a task: nothing here may interrupt its stream.
    HandedOff,
}

impl Control {
    /// The control of a connection whose stream `interrupter` stops.
    pub(crate) fn new(interrupter: Option<Interrupter>) -> Control {
        Control {
            phase: Mutex::new(Phase::Answering),
            interrupter,
            grace_over: watch::channel(false).0,
        }
    }

    /// Moves to `next` unless the server has stopped; false when it has.
    fn enter(&self, next: Phase) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if *phase == Phase::Stopping {
            return false;
        }
        *phase = next;
        true
    }

    fn stop(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match *phase {
            Phase::HandedOff => return,
            Phase::Reading => self.interrupt(),
            Phase::Answering | Phase::Stopping => {}
        }
        *phase = Phase::Stopping;
    }

    fn end_grace(&self) {
        self.grace_over.send_replace(true);
        let phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if *phase != Phase::HandedOff {
            self.interrupt();
        }
    }

    fn hand_off(&self) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Phase::HandedOff;
    }

    fn interrupt(&self) {
        if let Some(interrupter) = &self.interrupter {
            interrupter.interrupt();
        }
    }
}

impl ConnectionThread {
    /// Starts serving `stream` on a thread named `name`; `on_exit` runs when that thread
    /// ends (also when it unwinds), or here when it cannot be started.
    pub(crate) fn spawn(
        stream: BlockingPipeStream,
        router: Arc<Router>,
        max_frame: usize,
        name: String,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<ConnectionThread> {
        let control = Arc::new(Control::new(Some(stream.interrupter())));
        let (done_tx, done) = oneshot::channel::<HandOff>();
        let runtime = Handle::current();
        let shared = control.clone();
        let on_exit = OnDrop(Some(on_exit));
        std::thread::Builder::new().name(name).spawn(move || {
            let _on_exit = on_exit;
            let mut stream = stream;
            match serve(&mut stream, &router, max_frame, &shared, &runtime) {
                Served::HandOff { read, answers } => {
                    let _ = done_tx.send(HandOff {
                        stream,
                        read,
                        answers,
                    });
                }
                Served::Ended => {
                    // The stream first: the server sees the end only once it is closed.
                    drop(stream);
                    drop(done_tx);
                }
            }
        })?;
        Ok(ConnectionThread { control, done })
    }

    /// Waits for the thread to end or hand its connection over (returned); when `stop` says
    /// the server has stopped, lets it finish what it has read until the grace deadline,
    /// then cuts it short.
    pub(crate) async fn watch(
        mut self,
        mut stop: watch::Receiver<Option<Stop>>,
    ) -> Option<HandOff> {
        let deadline = tokio::select! {
            ended = &mut self.done => return ended.ok(),
            stopped = stop.wait_for(Option::is_some) => match stopped {
                Ok(stop) => stop.and_then(|s| s.deadline),
                Err(_) => None,
            },
        };
        self.control.stop();
        match deadline {
            Some(deadline) => {
                if let Ok(ended) = tokio::time::timeout_at(deadline, &mut self.done).await {
                    return ended.ok();
                }
            }
            None => return (&mut self.done).await.ok(),
        }
        tracing::debug!("shutdown grace over: stopping a connection thread");
        self.control.end_grace();
        (&mut self.done).await.ok()
    }
}

impl Drop for ConnectionThread {
    /// The server went away (its future dropped, or the connection finished): nothing more
    /// is read or awaited on this connection.
    fn drop(&mut self) {
        self.control.stop();
        self.control.end_grace();
    }
}

struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// The thread's loop: until the peer ends, the framing breaks, a write fails or the server
/// stops ([`Served::Ended`]), or the stream takes no more answers ([`Served::HandOff`]).
pub(crate) fn serve<S: TryWrite>(
    mut stream: S,
    router: &Router,
    max_frame: usize,
    control: &Control,
    runtime: &Handle,
) -> Served {
    // Handlers find the server's runtime as theirs (to spawn, sleep or do I/O) on this thread.
    let _context = runtime.enter();
    let mut frames = FrameBuffer::new(max_frame);
    let mut answers = Vec::new();
    loop {
        let answer = match frames.front() {
            Front::Whole(body) => {
                if !control.enter(Phase::Answering) {
                    break;
                }
                let len = body.len();
                let (_, dispatch) = router.dispatch(body, max_frame);
                frames.consume_frame(len);
                match dispatch {
                    Dispatch::Ready(frame) => frame,
                    Dispatch::Run(fut) => match run_handler(fut, runtime, control) {
                        Some(frame) => frame,
                        None => break,
                    },
                }
            }
            Front::Oversize(len) => {
                if !control.enter(Phase::Answering) || !skip(&mut stream, &mut frames, len) {
                    break;
                }
                oversize_answer(len, max_frame)
            }
            Front::Partial => {
                // No whole request left: send what was answered, then read more.
                match send(&mut stream, &mut answers) {
                    Sent::All => {}
                    Sent::Blocked => return hand_off(control, &mut frames, answers),
                    Sent::Failed => break,
                }
                if !control.enter(Phase::Reading) {
                    break;
                }
                match frames.read_from(&mut stream) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "closing the connection");
                        break;
                    }
                }
            }
        };
        answers.extend_from_slice(&answer);
        if answers.len() >= READ_BUFFER {
            match send(&mut stream, &mut answers) {
                Sent::All => {}
                Sent::Blocked => return hand_off(control, &mut frames, answers),
                Sent::Failed => break,
            }
        }
    }
    // Answers of requests taken before the server stopped still go out (the write ends at
    // the grace deadline at the latest: the server interrupts it then).
    if !answers.is_empty() {
        let _ = stream.write_all(&answers);
    }
    Served::Ended
}

/// What [`send`] did with the answers.
enum Sent {
    /// Written, all of them.
    All,
    /// The stream takes no more now; the answers left are still in the buffer.
    Blocked,
    /// The stream failed: the connection is over.
    Failed,
}

/// Writes `answers` without waiting; what the stream does not take stays in `answers`.
fn send(stream: &mut impl TryWrite, answers: &mut Vec<u8>) -> Sent {
    let mut written = 0;
    let sent = loop {
        if written == answers.len() {
            break Sent::All;
        }
        match stream.try_write(&answers[written..]) {
            Ok(0) => break Sent::Failed,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Sent::Blocked,
            Err(e) => {
                tracing::debug!(error = %e, "closing the connection: writing answers");
                break Sent::Failed;
            }
        }
    };
    answers.drain(..written);
    sent
}

/// Gives the connection up: what was read and not handled, and the answers not written.
fn hand_off(control: &Control, frames: &mut FrameBuffer, answers: Vec<u8>) -> Served {
    tracing::debug!(
        queued = answers.len(),
        "the client does not take its answers: serving its connection in a task"
    );
    control.hand_off();
    Served::HandOff {
        read: frames.take_unhandled(),
        answers,
    }
}

/// Reads and drops the body of an oversize frame (`len` bytes after the header at the
/// front); false when the stream ends or fails first.
fn skip(stream: &mut impl Read, frames: &mut FrameBuffer, len: usize) -> bool {
    let whole = HEADER_LEN + len;
    let mut left = whole - frames.discard(whole);
    while left > 0 {
        // The buffer is empty while anything is left: its free space is scratch.
        let scratch = frames.spare();
        let want = left.min(scratch.len());
        match stream.read(&mut scratch[..want]) {
            Ok(0) => return false,
            Ok(n) => left -= n,
            Err(e) => {
                tracing::debug!(error = %e, "closing the connection: skipping an oversize request");
                return false;
            }
        }
    }
    true
}

/// Runs a handler to its answer on this thread (inside `runtime`'s context): polled once in
/// place (most finish at once), else driven to the end with `runtime`. `None` when the grace
/// ran out first.
fn run_handler(mut fut: ReplyFuture, runtime: &Handle, control: &Control) -> Option<Vec<u8>> {
    if let Poll::Ready(frame) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return Some(frame);
    }
    let mut grace_over = control.grace_over.subscribe();
    runtime.block_on(async move {
        tokio::select! {
            frame = fut => Some(frame),
            _ = grace_over.wait_for(|&over| over) => None,
        }
    })
}
