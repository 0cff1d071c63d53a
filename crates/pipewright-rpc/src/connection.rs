//! One client connection: calls in flight, matched to their answers by id.
//!
//! Sending goes through a [`SharedWriter`]: the calling task writes its frame itself when
//! the stream is idle, and the connection's writer task takes over only when a write would
//! block.
//!
//! Reading is done by whoever holds the read turn. Normally that is the connection's
//! reader task, which hands each answer to its call and wakes it. A call that is the only
//! one in flight takes the turn and reads its answer itself, which saves waking a second
//! task per call; answers to other calls it comes across are handed on the same way. When
//! it has its answer, or is dropped, it gives the turn back to the reader task. Bytes read
//! are kept in the connection, never in a call, so dropping a call at any point loses
//! nothing and leaves the stream in step.
//!
//! A call reads only while its future is polled, and a caller may keep a future without
//! polling it (a `select!` branch that lost). So the turn is the reading call's only while
//! it is alone: when another call registers, the turn goes back to the reader task at once,
//! and the first call, when polled again, finds its answer delivered like any other.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pipewright::PipeStream;
use tokio::io::{AsyncRead, ReadBuf, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use crate::frame_buffer::{FrameBuffer, Front};
use crate::wire::{self, Answer};
use crate::writer::SharedWriter;

/// A connection to a server.
pub(crate) struct Connection {
    reading: Arc<Reading>,
    writer: Arc<SharedWriter<WriteHalf<PipeStream>>>,
    reader_task: JoinHandle<()>,
}

impl Connection {
    pub(crate) fn start(stream: PipeStream, max_frame_size: usize) -> Connection {
        let (read_half, write_half) = tokio::io::split(stream);
        let reading = Arc::new(Reading {
            state: Mutex::new(ReadState {
                io: read_half,
                frames: FrameBuffer::new(max_frame_size),
                calls: HashMap::default(),
                turn: Turn::ReaderTask,
                reader_task: None,
                timer_at: None,
                rearm: false,
                ids_seen: false,
                closed: None,
            }),
        });
        let writer = SharedWriter::new(write_half);
        let drive = writer.clone().drive();
        let on_failure = reading.clone();
        tokio::spawn(async move {
            if let Some(reason) = drive.await {
                on_failure.close(&reason);
            }
        });
        let reader_task = tokio::spawn(reading.clone().run());
        Connection {
            reading,
            writer,
            reader_task,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.reading.lock().closed.is_none()
    }

    /// Ends the connection: calls in flight fail with `reason`.
    pub(crate) fn close(&self, reason: &str) {
        self.reading.close(reason);
    }

    /// Registers call `id` (before its request is sent, so the answer cannot come first),
    /// to time out after `timeout`. The returned future waits for the outcome; dropping it
    /// abandons the call.
    pub(crate) fn register(&self, id: u64, timeout: Duration) -> Result<PendingCall<'_>, String> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.reading.lock();
        if let Some(reason) = &st.closed {
            return Err(reason.clone());
        }
        st.calls.insert(
            id,
            Call {
                answer: None,
                waker: None,
                deadline,
                timed_out: false,
                abandoned: false,
            },
        );
        if let Turn::Call(_) = st.turn {
            // The reading call may not be polled again for a long time: the reader task
            // reads for both from now on.
            st.turn = Turn::ReaderTask;
            st.wake_reader_task();
        }
        if let Some(deadline) = deadline {
            // The reader task's timer is set to the earliest deadline; it only needs
            // setting again when this one is earlier still.
            if !st.rearm && st.timer_at.is_none_or(|at| deadline < at) {
                st.rearm = true;
                st.wake_reader_task();
            }
        }
        Ok(PendingCall {
            reading: &self.reading,
            id,
            finished: false,
        })
    }

    /// Sends a whole request frame (see [`SharedWriter::send`]); a failure ends the
    /// connection.
    pub(crate) fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.writer
            .send(frame)
            .inspect_err(|reason| self.reading.close(reason))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader_task.abort();
        self.writer.close();
    }
}

/// A call waiting for its answer. Dropping it abandons the call: its answer, if it comes,
/// is thrown away, and a read turn it held goes back to the reader task.
pub(crate) struct PendingCall<'a> {
    reading: &'a Reading,
    id: u64,
    finished: bool,
}

/// How a call ended.
pub(crate) enum Outcome {
    /// Its answer came.
    Answered(Answer),
    /// Its deadline passed first.
    TimedOut,
    /// The connection ended first, for this reason.
    Disconnected(String),
}

impl std::future::Future for PendingCall<'_> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let outcome = std::task::ready!(self.reading.poll_outcome(self.id, cx));
        self.finished = true;
        Poll::Ready(outcome)
    }
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.reading.abandon(self.id);
        }
    }
}

/// Who reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The connection's reader task.
    ReaderTask,
    /// The call with this id, while it waits for its answer.
    Call(u64),
}

struct Call {
    answer: Option<Answer>,
    /// The waiting task (also while it reads, so a deadline or the end of the connection
    /// can wake it).
    waker: Option<Waker>,
    /// `None` when the timeout is too large to matter.
    deadline: Option<Instant>,
    timed_out: bool,
    /// Dropped or timed out before its answer came, on a connection that may answer in
    /// order without ids: kept so that answer, when it comes, is not taken for another's.
    abandoned: bool,
}

impl Call {
    fn is_waiting(&self) -> bool {
        self.answer.is_none() && !self.timed_out && !self.abandoned
    }
}

struct Reading {
    state: Mutex<ReadState>,
}

struct ReadState {
    io: ReadHalf<PipeStream>,
    /// Bytes read and not handled yet.
    frames: FrameBuffer,
    calls: HashMap<u64, Call, BuildHasherDefault<IdHasher>>,
    turn: Turn,
    reader_task: Option<Waker>,
    /// The deadline the reader task's timer is set to.
    timer_at: Option<Instant>,
    /// The timer must be set again (to the earliest deadline of the calls waiting).
    rearm: bool,
    /// An answer with an id has come.
    ids_seen: bool,
    closed: Option<String>,
}

impl Reading {
    fn lock(&self) -> MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self, reason: &str) {
        self.lock().close(reason.to_owned());
    }

    /// The reader task: reads whenever it has the turn, and times out calls whose deadline
    /// passes, until the connection ends.
    async fn run(self: Arc<Self>) {
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            if !st
                .reader_task
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                st.reader_task = Some(cx.waker().clone());
            }
            if st.closed.is_some() {
                return Poll::Ready(());
            }
            st.watch_deadlines(&mut timer, cx);
            if st.turn != Turn::ReaderTask {
                // A call reads; it gives the turn back when it is done.
                return Poll::Pending;
            }
            st.pump(cx, Turn::ReaderTask)
        })
        .await;
        let reason = self.lock().closed.clone().unwrap_or_default();
        tracing::debug!(%reason, "rpc connection ended");
    }

    fn poll_outcome(&self, id: u64, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut guard = self.lock();
        let st = &mut *guard;
        loop {
            let only_call = st.calls.len() == 1;
            let Some(call) = st.calls.get_mut(&id) else {
                return Poll::Ready(Outcome::Disconnected(st.reason()));
            };
            let outcome = if let Some(answer) = call.answer.take() {
                Some(Outcome::Answered(answer))
            } else if call.timed_out {
                Some(Outcome::TimedOut)
            } else {
                st.closed
                    .as_ref()
                    .map(|reason| Outcome::Disconnected(reason.clone()))
            };
            if let Some(outcome) = outcome {
                if matches!(outcome, Outcome::TimedOut) {
                    st.retire(id);
                } else {
                    st.calls.remove(&id);
                }
                if st.turn == Turn::Call(id) {
                    st.give_turn_back();
                }
                return Poll::Ready(outcome);
            }
            if !call.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                call.waker = Some(cx.waker().clone());
            }
            let reads = match st.turn {
                Turn::Call(reader) => reader == id,
                Turn::ReaderTask => only_call,
            };
            if !reads {
                return Poll::Pending;
            }
            st.turn = Turn::Call(id);
            if st.pump(cx, Turn::Call(id)).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn abandon(&self, id: u64) {
        let mut st = self.lock();
        st.retire(id);
        if st.turn == Turn::Call(id) {
            st.turn = Turn::ReaderTask;
            st.wake_reader_task();
        }
    }
}

impl ReadState {
    fn reason(&self) -> String {
        self.closed
            .clone()
            .unwrap_or_else(|| "the connection ended".to_owned())
    }

    /// Marks the connection ended; every call in flight sees it.
    fn close(&mut self, reason: String) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        for call in self.calls.values_mut() {
            if let Some(waker) = call.waker.take() {
                waker.wake();
            }
        }
        self.wake_reader_task();
    }

    /// Forgets a call that ends without its answer. Until the server has shown that it
    /// sends ids, the call stays as a placeholder that its in-order answer will clear.
    fn retire(&mut self, id: u64) {
        match self.calls.get_mut(&id) {
            Some(call) if !self.ids_seen && call.answer.is_none() => {
                call.abandoned = true;
                call.waker = None;
            }
            _ => {
                self.calls.remove(&id);
            }
        }
    }

    fn wake_reader_task(&self) {
        if let Some(task) = &self.reader_task {
            task.wake_by_ref();
        }
    }

    /// Keeps `timer` set to the earliest deadline of the calls waiting, and times out the
    /// calls whose deadline has passed when it fires.
    fn watch_deadlines(&mut self, timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) {
        loop {
            if self.rearm {
                self.rearm = false;
                self.timer_at = self
                    .calls
                    .values()
                    .filter(|call| call.is_waiting())
                    .filter_map(|call| call.deadline)
                    .min();
                if let Some(at) = self.timer_at {
                    match timer {
                        Some(timer) => timer.as_mut().reset(at),
                        None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
            }
            let Some(sleep) = timer.as_mut().filter(|_| self.timer_at.is_some()) else {
                return;
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return;
            }
            let now = Instant::now();
            for call in self.calls.values_mut() {
                if call.is_waiting() && call.deadline.is_some_and(|d| d <= now) {
                    call.timed_out = true;
                    if let Some(waker) = call.waker.take() {
                        waker.wake();
                    }
                }
            }
            self.rearm = true;
        }
    }

    /// Hands the read turn from a call that has its answer back to the reader task, and
    /// reads on the reader task's behalf until the stream has nothing more, so the stream
    /// wakes the reader task when data comes.
    fn give_turn_back(&mut self) {
        self.turn = Turn::ReaderTask;
        let Some(task) = self.reader_task.clone() else {
            // The reader task has not run yet; it reads when it does.
            return;
        };
        let _ = self.pump(&mut Context::from_waker(&task), Turn::ReaderTask);
    }

    /// Reads and hands out answers until the stream has nothing more to give (`Pending`,
    /// with `cx` woken when it has), the connection ends, or (for a call reading) the
    /// call's own answer is there (both `Ready`).
    fn pump(&mut self, cx: &mut Context<'_>, me: Turn) -> Poll<()> {
        loop {
            while self.closed.is_none() && self.next_frame(me) {}
            if self.closed.is_some() {
                return Poll::Ready(());
            }
            if let Turn::Call(id) = me {
                if self.calls.get(&id).is_none_or(|c| c.answer.is_some()) {
                    return Poll::Ready(());
                }
            }
            let mut read_buf = ReadBuf::new(self.frames.spare());
            match Pin::new(&mut self.io).poll_read(cx, &mut read_buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {
                    let n = read_buf.filled().len();
                    if n == 0 {
                        let reason = match self.frames.unhandled_len() {
                            0 => "the server closed the connection".to_owned(),
                            got => format!(
                                "truncated frame: the server closed the connection after {got} bytes of a frame"
                            ),
                        };
                        self.close(reason);
                        return Poll::Ready(());
                    }
                    self.frames.filled(n);
                }
                Poll::Ready(Err(e)) => {
                    self.close(format!("reading a frame: {e}"));
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Handles the next whole frame in the buffer, if there is one: gives the answer to its
    /// call (waking it unless it is `me`). Ends the connection on a bad frame.
    fn next_frame(&mut self, me: Turn) -> bool {
        let (id, answer, len) = match self.frames.front() {
            Front::Partial => return false,
            Front::Oversize(len) => {
                let max = self.frames.max_frame();
                self.close(format!(
                    "the server sent a {len}-byte answer, over the {max}-byte frame limit; raise the client's max_frame_size"
                ));
                return false;
            }
            Front::Whole(body) => match wire::decode_answer(body) {
                Ok((id, answer)) => (id, answer, body.len()),
                Err(message) => {
                    self.close(message);
                    return false;
                }
            },
        };
        self.frames.consume_frame(len);
        if id.is_some() && !self.ids_seen {
            // Answers carry ids: none can be taken for another call's, so placeholders of
            // abandoned calls are not needed.
            self.ids_seen = true;
            self.calls.retain(|_, call| !call.abandoned);
        }
        let id = match id {
            Some(id) => id,
            // A server without ids (pipe-rpc's own) answers in order: the oldest call.
            None => match self
                .calls
                .iter()
                .filter(|(_, call)| call.answer.is_none())
                .map(|(&id, _)| id)
                .min()
            {
                Some(oldest) => oldest,
                None => return true,
            },
        };
        let Some(call) = self.calls.get_mut(&id) else {
            // An abandoned call's answer.
            return true;
        };
        if call.abandoned {
            self.calls.remove(&id);
        } else if call.answer.is_none() {
            call.answer = Some(answer);
            if me != Turn::Call(id) {
                if let Some(waker) = call.waker.take() {
                    waker.wake();
                }
            }
        }
        true
    }
}

/// Hashes call ids (sequential numbers) with one multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
