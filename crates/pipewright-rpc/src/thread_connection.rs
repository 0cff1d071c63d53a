//! Serving one connection on a thread of its own (see
//! [`Server::connection_threads`](crate::Server::connection_threads)).
//!
//! The thread reads requests through the core's blocking stream and answers them one at a
//! time, in the order they came: a handler that finishes at once is answered in place, one
//! that waits is run to the end on this thread with the server's runtime driving its I/O
//! and timers. Answers to requests that arrived together leave in one write. A client that
//! stops reading meets a blocked write (backpressure); nothing queues beyond one read
//! buffer of requests and the answers to them.
//!
//! Stopping: the server marks the connection stopping. A thread waiting for a request is
//! interrupted at once; a thread running a handler finishes it, writes its answer and ends.
//! After the grace, a handler still running is dropped and a write still blocked is
//! interrupted.

use std::io::{Read, Write};
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
    /// Completes (with an error) when the thread has ended and dropped its stream.
    done: oneshot::Receiver<()>,
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
        if *phase == Phase::Reading {
            self.interrupt();
        }
        *phase = Phase::Stopping;
    }

    fn end_grace(&self) {
        self.grace_over.send_replace(true);
        self.interrupt();
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
        let (done_tx, done) = oneshot::channel::<()>();
        let runtime = Handle::current();
        let shared = control.clone();
        let on_exit = OnDrop(Some(on_exit));
        std::thread::Builder::new().name(name).spawn(move || {
            // Dropped after the stream: the server sees the end only once it is closed.
            let _done = done_tx;
            let _on_exit = on_exit;
            serve(stream, &router, max_frame, &shared, &runtime);
        })?;
        Ok(ConnectionThread { control, done })
    }

    /// Waits for the thread to end; when `stop` says the server has stopped, lets it finish
    /// what it has read until the grace deadline, then cuts it short.
    pub(crate) async fn watch(mut self, mut stop: watch::Receiver<Option<Stop>>) {
        let deadline = tokio::select! {
            _ = &mut self.done => return,
            stopped = stop.wait_for(Option::is_some) => match stopped {
                Ok(stop) => stop.and_then(|s| s.deadline),
                Err(_) => None,
            },
        };
        self.control.stop();
        let in_time = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, &mut self.done)
                .await
                .is_ok(),
            None => {
                let _ = (&mut self.done).await;
                true
            }
        };
        if !in_time {
            tracing::debug!("shutdown grace over: stopping a connection thread");
            self.control.end_grace();
            let _ = (&mut self.done).await;
        }
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
/// stops.
pub(crate) fn serve<S: Read + Write>(
    mut stream: S,
    router: &Router,
    max_frame: usize,
    control: &Control,
    runtime: &Handle,
) {
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
                if !answers.is_empty() {
                    if let Err(e) = stream.write_all(&answers) {
                        tracing::debug!(error = %e, "closing the connection: writing answers");
                        break;
                    }
                    answers.clear();
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
            if let Err(e) = stream.write_all(&answers) {
                tracing::debug!(error = %e, "closing the connection: writing answers");
                break;
            }
            answers.clear();
        }
    }
    // Answers of requests taken before the server stopped still go out (the write ends at
    // the grace deadline at the latest: the server interrupts it then).
    if !answers.is_empty() {
        let _ = stream.write_all(&answers);
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
