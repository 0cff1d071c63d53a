//! The write side of a connection, shared by every task that sends on it.
//!
//! [`SharedWriter::send`] is synchronous: it either writes the bytes to the stream at once
//! (when nothing is queued and the stream takes them without blocking) or queues what the
//! stream did not take, in order, for the connection's writer task ([`SharedWriter::drive`]).
//! Once bytes are queued, later sends append behind them, so concurrent senders' frames
//! leave together in one write. Because `send` never waits, a caller cannot be cancelled
//! in the middle of it: a frame is either not sent at all or entirely committed to the
//! connection, and the stream never carries half a frame followed by another.
//!
//! The queue itself has no limit: whoever produces frames bounds it. The writer tells how
//! many bytes are queued ([`backlog`](SharedWriter::backlog)), lets a producer wait until
//! that is at most a mark ([`room`](SharedWriter::room)), and can hold a semaphore permit
//! with a frame ([`send_holding`](SharedWriter::send_holding)) until the stream has taken
//! the whole frame, not just queued it. The server uses both to bound what one connection
//! queues.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;
use tokio::sync::OwnedSemaphorePermit;

/// A stream's write half behind a lock, with the bytes it has not taken yet.
pub(crate) struct SharedWriter<W> {
    state: Mutex<WriteState<W>>,
    /// `queued.len() - written`, readable without the lock.
    backlog: AtomicUsize,
}

struct WriteState<W> {
    io: W,
    /// Bytes committed to the connection that the stream has not taken yet.
    queued: Vec<u8>,
    /// How much of `queued` has been written.
    written: usize,
    /// Bytes the stream has taken since the start.
    taken: u64,
    /// Permits held until the stream has taken this many bytes (in order of position).
    holds: VecDeque<(u64, OwnedSemaphorePermit)>,
    /// A producer waiting until at most this many bytes are queued.
    room: Option<(usize, Waker)>,
    /// The writer task owns the stream until `queued` is empty: a write would block.
    handed_over: bool,
    /// No more sends; the writer task writes what is queued, then shuts the stream.
    closing: bool,
    failed: Option<String>,
    /// The writer task's waker, once it has run.
    task: Option<Waker>,
}

impl<W: AsyncWrite + Unpin> SharedWriter<W> {
    /// A writer over `io`. Run [`drive`](Self::drive) in a task of its own.
    pub(crate) fn new(io: W) -> Arc<Self> {
        Arc::new(SharedWriter {
            state: Mutex::new(WriteState {
                io,
                queued: Vec::new(),
                written: 0,
                taken: 0,
                holds: VecDeque::new(),
                room: None,
                handed_over: false,
                closing: false,
                failed: None,
                task: None,
            }),
            backlog: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, WriteState<W>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `bytes` (whole frames) to the stream: writes them now if the stream takes
    /// them, else queues the rest for the writer task. Fails only when the stream has failed
    /// or is closing; then nothing of `bytes` was sent.
    pub(crate) fn send(&self, bytes: &[u8]) -> Result<(), String> {
        self.send_holding(bytes, None)
    }

    /// Like [`send`](Self::send), and keeps `hold` until the stream has taken the last byte
    /// of `bytes` (or the connection has failed): the permit stands for work whose answer is
    /// still on its way.
    pub(crate) fn send_holding(
        &self,
        bytes: &[u8],
        hold: Option<OwnedSemaphorePermit>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        if let Some(reason) = &st.failed {
            return Err(reason.clone());
        }
        if st.closing {
            return Err("the connection is closing".to_owned());
        }
        if st.handed_over {
            st.queued.extend_from_slice(bytes);
            st.hold_until_taken(hold);
            self.publish_backlog(&st);
            return Ok(());
        }
        let WriteState { io, task, .. } = &mut *st;
        // If the stream is not ready, it wakes the writer task when it is.
        let mut cx = Context::from_waker(task.as_ref().unwrap_or(Waker::noop()));
        let mut sent = 0;
        while sent < bytes.len() {
            match Pin::new(&mut *io).poll_write(&mut cx, &bytes[sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(st.fail(sent, "the stream accepted no more bytes".to_owned()))
                }
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => return Err(st.fail(sent, format!("sending failed: {e}"))),
                Poll::Pending => break,
            }
        }
        st.taken += sent as u64;
        if sent < bytes.len() {
            st.queued.extend_from_slice(&bytes[sent..]);
            st.hold_until_taken(hold);
            st.hand_over();
            self.publish_backlog(&st);
        }
        Ok(())
    }

    /// Bytes committed that the stream has not taken yet.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Acquire)
    }

    /// Waits until at most `mark` bytes are queued. Fails when the stream has failed or the
    /// writer is closing (nothing more will be sent).
    pub(crate) async fn room(&self, mark: usize) -> Result<(), String> {
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            if let Some(reason) = &st.failed {
                return Poll::Ready(Err(reason.clone()));
            }
            if st.closing {
                return Poll::Ready(Err("the connection is closing".to_owned()));
            }
            if st.queued.len() - st.written <= mark {
                st.room = None;
                return Poll::Ready(Ok(()));
            }
            st.room = Some((mark, cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    fn publish_backlog(&self, st: &WriteState<W>) {
        self.backlog
            .store(st.queued.len() - st.written, Ordering::Release);
    }

    /// Ends sending: the writer task writes what is queued, shuts the stream's write side
    /// and returns.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        st.wake_room();
        st.hand_over();
    }

    /// Gives up on what is queued: the bytes the stream has not taken are thrown away, held
    /// permits are released, later sends fail with `reason`, and the writer task ends at
    /// once with it. Bytes the stream has already taken are its own to deliver.
    pub(crate) fn abandon(&self, reason: &str) {
        let mut st = self.lock();
        if st.failed.is_none() {
            st.fail(0, reason.to_owned());
        }
        self.publish_backlog(&st);
    }

    /// The writer task: writes queued bytes whenever a send could not, until
    /// [`close`](Self::close) or a failure. Returns the failure, if any.
    pub(crate) fn drive(self: Arc<Self>) -> impl Future<Output = Option<String>> {
        std::future::poll_fn(move |cx| self.poll_drive(cx))
    }

    fn poll_drive(&self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        let mut st = self.lock();
        if !st.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.task = Some(cx.waker().clone());
        }
        loop {
            if let Some(reason) = &st.failed {
                self.publish_backlog(&st);
                return Poll::Ready(Some(reason.clone()));
            }
            if !st.handed_over {
                return Poll::Pending;
            }
            if st.written < st.queued.len() {
                let WriteState {
                    io,
                    queued,
                    written,
                    ..
                } = &mut *st;
                match Pin::new(io).poll_write(cx, &queued[*written..]) {
                    Poll::Ready(Ok(0)) => {
                        st.fail(0, "the stream accepted no more bytes".to_owned());
                    }
                    Poll::Ready(Ok(n)) => {
                        *written += n;
                        st.taken += n as u64;
                        st.release_taken();
                        self.publish_backlog(&st);
                        if st
                            .room
                            .as_ref()
                            .is_some_and(|(mark, _)| st.queued.len() - st.written <= *mark)
                        {
                            st.wake_room();
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        st.fail(0, format!("sending failed: {e}"));
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            if st.queued.capacity() > SHRINK_OVER {
                // A burst of large answers is over: give its memory back.
                st.queued = Vec::new();
            } else {
                st.queued.clear();
            }
            st.written = 0;
            if !st.closing {
                st.handed_over = false;
                return Poll::Pending;
            }
            return match Pin::new(&mut st.io).poll_shutdown(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(_) => Poll::Ready(None),
            };
        }
    }
}

/// A queue buffer larger than this is freed when it empties, not kept for the next burst.
const SHRINK_OVER: usize = 256 * 1024;

impl<W> WriteState<W> {
    /// Records a failure (after `sent` bytes of the current frame went out) and wakes the
    /// writer task so it ends; returns the reason. Permits held are released: their
    /// answers will never be sent.
    fn fail(&mut self, sent: usize, reason: String) -> String {
        let reason = if sent > 0 {
            format!("{reason} (after {sent} bytes of a frame)")
        } else {
            reason
        };
        self.failed = Some(reason.clone());
        self.queued = Vec::new();
        self.written = 0;
        self.holds.clear();
        self.wake_room();
        self.wake_task();
        reason
    }

    /// Keeps `hold` until the stream has taken every byte queued so far.
    fn hold_until_taken(&mut self, hold: Option<OwnedSemaphorePermit>) {
        if let Some(hold) = hold {
            let at = self.taken + (self.queued.len() - self.written) as u64;
            self.holds.push_back((at, hold));
        }
    }

    /// Releases the permits whose bytes the stream has taken.
    fn release_taken(&mut self) {
        while self.holds.front().is_some_and(|(at, _)| *at <= self.taken) {
            self.holds.pop_front();
        }
    }

    fn hand_over(&mut self) {
        self.handed_over = true;
        self.wake_task();
    }

    fn wake_task(&self) {
        if let Some(task) = &self.task {
            task.wake_by_ref();
        }
    }

    fn wake_room(&mut self) {
        if let Some((_, waker)) = self.room.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{read_frame, Frame, HEADER_LEN};
    use tokio::io::BufReader;

    fn unique_name() -> String {
        format!(
            "pw-rpc-writer-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    }

    /// A frame from `sender`, number `seq`, of `len` body bytes: the ids, then a pattern the
    /// reader checks byte by byte.
    fn frame(sender: u8, seq: u32, len: usize) -> Vec<u8> {
        let mut out = (len as u32).to_le_bytes().to_vec();
        out.push(sender);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend((5..len).map(|i| (i as u8) ^ sender ^ (seq as u8)));
        assert_eq!(out.len(), HEADER_LEN + len);
        out
    }

    async fn connected_pair() -> (pipewright::PipeStream, pipewright::PipeStream) {
        let name = unique_name();
        let listener = pipewright::Listener::bind(name.as_str()).unwrap();
        let (accepted, connected) =
            tokio::join!(listener.accept(), pipewright::connect(name.as_str()));
        (accepted.unwrap(), connected.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn permits_are_held_until_the_stream_takes_the_frame_and_room_waits_for_the_mark() {
        const MARK: usize = 1 << 20;
        let test = async {
            let (peer, stream) = connected_pair().await;
            let writer = SharedWriter::new(stream);
            let driver = tokio::spawn(writer.clone().drive());
            let permits = Arc::new(tokio::sync::Semaphore::new(4));
            let permit = || Some(permits.clone().try_acquire_owned().unwrap());
            // More than any pipe or socket buffer takes while the peer does not read.
            writer
                .send_holding(&frame(1, 0, 16 << 20), permit())
                .unwrap();
            writer.send_holding(&frame(2, 1, 100), permit()).unwrap();
            assert!(
                writer.backlog() > MARK,
                "the peer does not read: bytes are queued"
            );
            assert_eq!(
                permits.available_permits(),
                2,
                "frames queued, not yet taken, keep their permits"
            );
            let mut room = std::pin::pin!(writer.room(MARK));
            let polled = std::future::poll_fn(|cx| Poll::Ready(room.as_mut().poll(cx))).await;
            assert!(polled.is_pending(), "no room while over the mark");

            let reader = tokio::spawn(async move {
                let mut r = BufReader::new(peer);
                let mut got = Vec::new();
                while let Some(Frame::Body(body)) = read_frame(&mut r, 32 << 20).await.unwrap() {
                    got.push((body[0], body.len()));
                }
                got
            });
            room.await.expect("room once the peer reads");
            assert!(writer.backlog() <= MARK);
            writer.room(0).await.expect("everything taken");
            assert_eq!(
                permits.available_permits(),
                4,
                "every permit is back once the stream took every frame"
            );
            writer.close();
            assert_eq!(driver.await.unwrap(), None);
            assert_eq!(reader.await.unwrap(), vec![(1, 16 << 20), (2, 100)]);
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), test)
            .await
            .expect("watchdog: the test hung");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_never_interleave_frames_even_when_writes_block() {
        const SENDERS: u8 = 8;
        const FRAMES: u32 = 150;
        let test = async {
            let name = unique_name();
            let listener = pipewright::Listener::bind(name.as_str()).unwrap();
            let (accepted, connected) =
                tokio::join!(listener.accept(), pipewright::connect(name.as_str()));
            let (server, client) = (accepted.unwrap(), connected.unwrap());
            let writer = SharedWriter::new(client);
            let driver = tokio::spawn(writer.clone().drive());
            // Start reading only later, so the pipe fills up and writes would block.
            let reader = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let mut r = BufReader::new(server);
                let mut next = [0u32; SENDERS as usize];
                while let Some(Frame::Body(body)) = read_frame(&mut r, 1 << 20).await.unwrap() {
                    let sender = body[0];
                    let seq = u32::from_le_bytes(body[1..5].try_into().unwrap());
                    assert_eq!(seq, next[sender as usize], "frames of one sender in order");
                    next[sender as usize] += 1;
                    for (i, b) in body.iter().enumerate().skip(5) {
                        assert_eq!(*b, (i as u8) ^ sender ^ (seq as u8), "frame bytes intact");
                    }
                }
                next
            });
            let senders: Vec<_> = (0..SENDERS)
                .map(|sender| {
                    let writer = writer.clone();
                    tokio::spawn(async move {
                        for seq in 0..FRAMES {
                            let len = if rand::random::<u8>() < 40 {
                                rand::random_range(50_000..300_000)
                            } else {
                                rand::random_range(5..300)
                            };
                            writer.send(&frame(sender, seq, len)).unwrap();
                            if seq % 8 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for s in senders {
                s.await.unwrap();
            }
            writer.close();
            assert_eq!(driver.await.unwrap(), None, "the writer task ends cleanly");
            assert!(writer.send(b"late").is_err(), "no sends after close");
            let counts = reader.await.unwrap();
            assert_eq!(counts, [FRAMES; SENDERS as usize], "every frame arrived");
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), test)
            .await
            .expect("watchdog: the test hung");
    }
}
