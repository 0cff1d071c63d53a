//! The write side of a connection, shared by every task that sends on it.
//!
//! [`SharedWriter::send`] is synchronous: it either writes the bytes to the stream at once
//! (when nothing is queued and the stream takes them without blocking) or queues what the
//! stream did not take, in order, for the connection's writer task ([`SharedWriter::drive`]).
//! Once bytes are queued, later sends append behind them, so concurrent senders' frames
//! leave together in one write. Because `send` never waits, a caller cannot be cancelled
//! in the middle of it: a frame is either not sent at all or entirely committed to the
//! connection, and the stream never carries half a frame followed by another.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;

/// A stream's write half behind a lock, with the bytes it has not taken yet.
pub(crate) struct SharedWriter<W> {
    state: Mutex<WriteState<W>>,
}

struct WriteState<W> {
    io: W,
    /// Bytes committed to the connection that the stream has not taken yet.
    queued: Vec<u8>,
    /// How much of `queued` has been written.
    written: usize,
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
                handed_over: false,
                closing: false,
                failed: None,
                task: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, WriteState<W>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `bytes` (whole frames) to the stream: writes them now if the stream takes
    /// them, else queues the rest for the writer task. Fails only when the stream has failed
    /// or is closing; then nothing of `bytes` was sent.
    pub(crate) fn send(&self, bytes: &[u8]) -> Result<(), String> {
        let mut st = self.lock();
        if let Some(reason) = &st.failed {
            return Err(reason.clone());
        }
        if st.closing {
            return Err("the connection is closing".to_owned());
        }
        if st.handed_over {
            st.queued.extend_from_slice(bytes);
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
        if sent < bytes.len() {
            st.queued.extend_from_slice(&bytes[sent..]);
            st.hand_over();
        }
        Ok(())
    }

    /// Ends sending: the writer task writes what is queued, shuts the stream's write side
    /// and returns.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        st.hand_over();
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
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => {
                        st.fail(0, format!("sending failed: {e}"));
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            st.queued.clear();
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

impl<W> WriteState<W> {
    /// Records a failure (after `sent` bytes of the current frame went out) and wakes the
    /// writer task so it ends; returns the reason.
    fn fail(&mut self, sent: usize, reason: String) -> String {
        let reason = if sent > 0 {
            format!("{reason} (after {sent} bytes of a frame)")
        } else {
            reason
        };
        self.failed = Some(reason.clone());
        self.queued = Vec::new();
        self.written = 0;
        self.wake_task();
        reason
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
