//! The server: accepts connections and answers each one's requests, in order for requests
//! without an id and as soon as ready for requests with one.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use pipewright::{ErrorKind, Listener, PipeStream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, WriteHalf};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::frame::{read_frame, whole_frame_len, Frame, DEFAULT_MAX_FRAME_SIZE, HEADER_LEN};
use crate::router::{Dispatch, ReplyFuture, ReplyTo, Router};
use crate::thread_connection::{ConnectionThread, HandOff};
use crate::writer::SharedWriter;

/// The default number of requests one connection may have in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// The default high-water mark of a connection's answer queue: 4 MiB.
pub const DEFAULT_MAX_QUEUED_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The default time each connection has to finish its work at shutdown: 10 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The read buffer of a connection, and the most answers collected before they are sent.
const READ_BUFFER: usize = 64 * 1024;

/// Serves a [`Router`] on a [`Listener`]: many connections, each with its own limit of
/// requests in flight, and a graceful shutdown that answers every request already read
/// within a bounded grace.
///
/// A client that sends requests faster than it reads the answers is slowed down, never
/// buffered without limit: a request holds one of the connection's
/// [`max_in_flight`](Self::max_in_flight) permits until the stream has taken its whole
/// answer, and the server stops reading a connection's requests while more than
/// [`max_queued_answer_bytes`](Self::max_queued_answer_bytes) of its answers wait to be
/// written. The client's own writes then block, as they would over TCP, and the other
/// connections are served as usual.
///
/// Shutdown is bounded too: a connection gets at most
/// [`shutdown_grace`](Self::shutdown_grace) to answer what it has read and hand its answers
/// to the stream, so a client that never reads cannot keep the server from returning.
///
/// ```no_run
/// use pipewright_rpc::{demo, Server};
/// # async fn run() -> pipewright::Result<()> {
/// let listener = pipewright::Listener::bind("rpc_demo")?;
/// Server::new(demo::router())
///     .max_in_flight(32)
///     .serve_with_shutdown(listener, async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    router: Arc<Router>,
    max_in_flight: usize,
    max_frame_size: usize,
    max_queued_answer_bytes: usize,
    shutdown_grace: Duration,
    connection_threads: usize,
}

#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_in_flight: usize,
    max_frame_size: usize,
    max_queued: usize,
}

impl Server {
    /// A server for `router` with the default limits: 64 requests in flight per connection,
    /// 16 MiB frames, 4 MiB of queued answers per connection, 10 s of grace at shutdown.
    pub fn new(router: Router) -> Self {
        Server {
            router: Arc::new(router),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_queued_answer_bytes: DEFAULT_MAX_QUEUED_ANSWER_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            connection_threads: 0,
        }
    }

    /// How many requests one connection may have in flight (default 64; at least 1). A
    /// request is in flight from when it is read until the stream has taken its whole
    /// answer (not merely queued it). When the limit is reached the server stops reading
    /// that connection until an answer has gone out.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The high-water mark of one connection's answer queue (default 4 MiB): answers the
    /// stream has not taken yet because the client does not read them. While more than
    /// this waits, the server reads no further request from that connection; it goes on
    /// when the client has read enough. Handlers already running still add their answers,
    /// so a connection queues at most about this mark plus
    /// [`max_in_flight`](Self::max_in_flight) answers. 0 means: read the next request only
    /// when every answer has been taken.
    ///
    /// ```
    /// use pipewright_rpc::{demo, Server};
    /// let server = Server::new(demo::router()).max_queued_answer_bytes(1 << 20);
    /// ```
    pub fn max_queued_answer_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_answer_bytes = bytes;
        self
    }

    /// How long a graceful shutdown waits for each connection (default 10 s): from the
    /// shutdown signal, a connection reads no new request, lets the handlers already
    /// running finish and its answers go out, and is closed when that is done or this
    /// grace has passed, whichever comes first. Past the grace, handlers still running are
    /// dropped and answers the client has not taken are thrown away (bytes already handed
    /// to the stream are still delivered under the transport's linger). A connection whose
    /// client has gone (its answers fail to send) is closed at once. `Duration::ZERO`
    /// closes every connection as soon as the server stops.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pipewright_rpc::{demo, Server};
    /// # async fn run() -> pipewright::Result<()> {
    /// let listener = pipewright::Listener::bind("rpc_demo")?;
    /// // Returns at most about 2 s after Ctrl-C, whatever the clients do.
    /// Server::new(demo::router())
    ///     .shutdown_grace(Duration::from_secs(2))
    ///     .serve_with_shutdown(listener, async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await
    /// # }
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves up to `n` connections each on a thread of its own (default 0: every
    /// connection is a task). Such a connection reads with the core's blocking stream and
    /// answers its requests one at a time, in the order they came; a handler that waits is
    /// run to its end on that thread (the server's runtime drives its I/O and timers) and
    /// holds up that connection's next request. That is the fastest form for clients that
    /// make one call at a time, such as [`blocking::Client`](crate::blocking::Client): a
    /// call costs a write and a read on each side, no task wake-up. Connections beyond `n`
    /// are served as tasks, with many requests in flight. Answers are written without
    /// waiting: when the stream takes no more because the client is not reading (it
    /// pipelines requests, or has stopped reading), or because an answer is larger than the
    /// pipe's buffers take at once, the thread hands the connection, with what it has read
    /// and not yet written, to a task, which goes on under the limits and backpressure of
    /// [`max_queued_answer_bytes`](Self::max_queued_answer_bytes) and
    /// [`max_in_flight`](Self::max_in_flight); the thread is then free for the next
    /// connection. Shutdown is as for tasks: a thread waiting for a request ends at once, one
    /// answering finishes within the [`shutdown_grace`](Self::shutdown_grace).
    ///
    /// ```no_run
    /// use pipewright_rpc::{demo, Server};
    /// # async fn run() -> pipewright::Result<()> {
    /// let listener = pipewright::Listener::bind("rpc_demo")?;
    /// Server::new(demo::router()).connection_threads(16).serve(listener).await
    /// # }
    /// ```
    pub fn connection_threads(mut self, n: usize) -> Self {
        self.connection_threads = n;
        self
    }

    /// The largest request body accepted, and answer body sent (default 16 MiB). A larger
    /// request is skipped unread and answered with an Err.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes.min(u32::MAX as usize);
        self
    }

    /// Serves until the listener fails for good.
    pub async fn serve(self, listener: Listener) -> pipewright::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves until `signal` completes, then shuts down gracefully: stops accepting, stops
    /// reading new requests, answers every request already read, closes every connection,
    /// and returns. Each connection has at most [`shutdown_grace`](Self::shutdown_grace)
    /// from the signal to do so; then it is closed with what is left unanswered or unsent.
    pub async fn serve_with_shutdown(
        self,
        listener: Listener,
        signal: impl Future<Output = ()>,
    ) -> pipewright::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut connections = JoinSet::new();
        let limits = ConnectionLimits {
            max_in_flight: self.max_in_flight,
            max_frame_size: self.max_frame_size,
            max_queued: self.max_queued_answer_bytes,
        };
        let threads = Arc::new(AtomicUsize::new(0));
        let mut thread_number = 0u64;
        tokio::pin!(signal);
        let result = loop {
            tokio::select! {
                _ = &mut signal => break Ok(()),
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok(stream) => {
                        let router = self.router.clone();
                        if threads.load(Ordering::Acquire) < self.connection_threads {
                            thread_number += 1;
                            let name = format!("rpc-connection-{thread_number}");
                            if let Some(thread) = on_thread(stream, router.clone(), limits.max_frame_size, name, &threads).await {
                                let stop = stop_rx.clone();
                                connections.spawn(async move {
                                    if let Some(handed) = thread.watch(stop.clone()).await {
                                        serve_handed_off(handed, router, limits, stop).await;
                                    }
                                });
                            }
                        } else {
                            let connection = Connection { stream, read: Vec::new(), answers: Vec::new() };
                            connections.spawn(serve_connection(connection, router, limits, stop_rx.clone()));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Closed => break Ok(()),
                    Err(e) if matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::Other | ErrorKind::Disconnected | ErrorKind::Busy) => {
                        tracing::warn!(pipe = %listener.name(), error = %e, "accept failed; going on");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => break Err(e),
                },
            }
        };
        listener.close();
        // `None` (no deadline) when the grace is too long to matter.
        let _ = stop_tx.send(Some(Stop {
            deadline: Instant::now().checked_add(self.shutdown_grace),
        }));
        while connections.join_next().await.is_some() {}
        result
    }
}

/// Starts serving `stream` on a thread of its own, counted in `threads`; `None` (the
/// connection dropped, with a warning) when the stream cannot be made blocking or no thread
/// can be started.
async fn on_thread(
    stream: PipeStream,
    router: Arc<Router>,
    max_frame: usize,
    name: String,
    threads: &Arc<AtomicUsize>,
) -> Option<ConnectionThread> {
    let stream = match stream.into_blocking().await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve a connection on a thread; closing it");
            return None;
        }
    };
    threads.fetch_add(1, Ordering::AcqRel);
    let count = threads.clone();
    let on_exit = move || {
        count.fetch_sub(1, Ordering::AcqRel);
    };
    match ConnectionThread::spawn(stream, router, max_frame, name, on_exit) {
        Ok(thread) => Some(thread),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a connection thread; closing the connection");
            None
        }
    }
}

/// Serves in a task a connection its thread gave up (the client was not taking its answers).
async fn serve_handed_off(
    handed: HandOff,
    router: Arc<Router>,
    limits: ConnectionLimits,
    stop: watch::Receiver<Option<Stop>>,
) {
    let stream = match handed.stream.into_async() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve a connection in a task; closing it");
            return;
        }
    };
    let connection = Connection {
        stream,
        read: handed.read,
        answers: handed.answers,
    };
    serve_connection(connection, router, limits, stop).await;
}

/// A connection for [`serve_connection`]: its stream, and, for one a thread handed over, the
/// bytes read and not handled yet and the answers not written yet.
struct Connection {
    stream: PipeStream,
    read: Vec<u8>,
    answers: Vec<u8>,
}

/// The server has stopped: connections end by `deadline`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stop {
    pub(crate) deadline: Option<Instant>,
}

/// Serves one connection until the peer ends it, the framing breaks, or the server stops.
///
/// Requests already in the read buffer are handled one after another without reading, and
/// the answers of handlers that finish at once are collected and sent together, in one
/// write, when the buffer holds no further whole request. Slower handlers run in tasks of
/// their own and send their answers when done. Each request's permit goes to the writer
/// with its answer and is released when the stream has taken it; no request is read while
/// the answers queued are over the high-water mark.
///
/// Once the connection stops reading (the server stopping, the peer ending or a broken
/// frame), it waits for its handlers and its writer, and closes; see [`drain`].
async fn serve_connection(
    connection: Connection,
    router: Arc<Router>,
    limits: ConnectionLimits,
    stop: watch::Receiver<Option<Stop>>,
) {
    let (read_half, write_half) = tokio::io::split(connection.stream);
    let read_first = std::io::Cursor::new(connection.read);
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_first.chain(read_half));
    let writer = SharedWriter::new(write_half);
    if !connection.answers.is_empty() {
        let _ = writer.send_holding(&connection.answers, None);
    }
    let writer_task = tokio::spawn(writer.clone().drive());
    // Bounded by the permits: every entry holds one of `max_in_flight` until its answer is
    // written, and no request is read without a permit.
    let (ordered_tx, ordered_rx) = mpsc::unbounded_channel::<OrderedAnswer>();
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    // The handlers running in tasks of their own, and the sequencer of id-less requests.
    let mut tasks = JoinSet::new();
    tasks.spawn(answer_in_order(ordered_rx, writer.clone()));
    let mut ready_answers = Vec::new();
    // The permits of the requests answered in `ready_answers`, merged into one.
    let mut ready_permits: Option<OwnedSemaphorePermit> = None;
    let send_ready = |answers: &mut Vec<u8>, permits: &mut Option<OwnedSemaphorePermit>| {
        if !answers.is_empty() {
            let _ = writer.send_holding(answers, permits.take());
            answers.clear();
        }
    };
    let stop_now = stop.clone();
    let mut stop_wait = stop.clone();
    let stopped = async move {
        let _ = stop_wait.wait_for(Option::is_some).await;
    };
    tokio::pin!(stopped);
    loop {
        if stop_now.borrow().is_some() {
            break;
        }
        let whole_frame = |reader: &BufReader<_>| {
            whole_frame_len(reader.buffer()).filter(|&len| len <= limits.max_frame_size)
        };
        let mut buffered = whole_frame(&reader);
        if buffered.is_none() || ready_answers.len() >= READ_BUFFER {
            send_ready(&mut ready_answers, &mut ready_permits);
        }
        if writer.backlog() > limits.max_queued {
            // The client does not read its answers: read no more requests until it has.
            send_ready(&mut ready_answers, &mut ready_permits);
            let room = tokio::select! {
                biased;
                _ = &mut stopped => break,
                room = writer.room(limits.max_queued) => room,
            };
            if let Err(reason) = room {
                tracing::debug!(%reason, "closing the connection");
                break;
            }
        }
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                send_ready(&mut ready_answers, &mut ready_permits);
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    p = in_flight.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        if reader.buffer().is_empty() {
            let filled = tokio::select! {
                biased;
                _ = &mut stopped => break,
                filled = reader.fill_buf() => filled.map(|bytes| !bytes.is_empty()),
            };
            match filled {
                Ok(true) => buffered = whole_frame(&reader),
                Ok(false) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "closing the connection");
                    break;
                }
            }
        }
        let (id, dispatch) = if let Some(len) = buffered {
            let frame_len = HEADER_LEN + len;
            let dispatched = router.dispatch(
                &reader.buffer()[HEADER_LEN..frame_len],
                limits.max_frame_size,
            );
            reader.consume(frame_len);
            dispatched
        } else {
            // A frame not wholly in the buffer, or over the limit.
            let frame = tokio::select! {
                biased;
                _ = &mut stopped => break,
                f = read_frame(&mut reader, limits.max_frame_size) => f,
            };
            match frame {
                Ok(Some(Frame::Body(body))) => router.dispatch(&body, limits.max_frame_size),
                Ok(Some(Frame::Oversize { len })) => (
                    None,
                    Dispatch::Ready(oversize_answer(len, limits.max_frame_size)),
                ),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "closing the connection");
                    break;
                }
            }
        };
        match (id, dispatch) {
            (Some(_), Dispatch::Ready(frame)) => {
                ready_answers.extend_from_slice(&frame);
                merge_permit(&mut ready_permits, permit);
            }
            (Some(_), Dispatch::Run(mut fut)) => {
                // Most handlers finish at once: answer those here, without a task hop.
                match poll_once(&mut fut).await {
                    Some(frame) => {
                        ready_answers.extend_from_slice(&frame);
                        merge_permit(&mut ready_permits, permit);
                    }
                    None => {
                        let writer = writer.clone();
                        tasks.spawn(async move {
                            let _ = writer.send_holding(&fut.await, Some(permit));
                        });
                    }
                }
            }
            (None, dispatch) => {
                let _ = ordered_tx.send(OrderedAnswer { dispatch, permit });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    send_ready(&mut ready_answers, &mut ready_permits);
    drop(ordered_tx);
    drop(reader);
    drain(&writer, writer_task, tasks, stop).await;
}

/// Ends a connection that reads no more requests: lets its handlers (and the sequencer)
/// finish and its writer hand every answer to the stream, then shuts the stream's write
/// side. Bounded: once the server has stopped and its grace deadline has passed, handlers
/// still running are dropped and answers not taken are thrown away; and if the writer fails
/// (the peer has gone), that happens at once, as nothing more can be delivered. The stream
/// itself is closed when the caller drops the last of it.
async fn drain(
    writer: &SharedWriter<WriteHalf<PipeStream>>,
    mut writer_task: JoinHandle<Option<String>>,
    mut tasks: JoinSet<()>,
    mut stop: watch::Receiver<Option<Stop>>,
) {
    let deadline = async {
        let deadline = match stop.wait_for(Option::is_some).await {
            Ok(stop) => stop.and_then(|s| s.deadline),
            // The server is gone without stopping (its task was dropped): no deadline.
            Err(_) => None,
        };
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let finish = async {
        tokio::select! {
            biased;
            // Before `close`, the writer task ends only when the stream has failed.
            ended = &mut writer_task => return ended,
            () = async { while tasks.join_next().await.is_some() {} } => {}
        }
        writer.close();
        (&mut writer_task).await
    };
    let ended = tokio::select! {
        ended = finish => Some(ended),
        () = deadline => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            tracing::debug!(
                backlog = writer.backlog(),
                "shutdown grace over: closing the connection with what is left unsent"
            );
            writer.abandon("the server shut down before the client took its answers");
            (&mut writer_task).await
        }
    };
    // Handlers still running when the stream failed or the grace ran out: their answers
    // could not be delivered.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Ok(Some(reason)) = ended {
        tracing::debug!(%reason, "closing the connection: its answers could not all be sent");
    }
}

/// The Err answer (without id) to a request frame of `len` bytes over the `max`-byte limit.
pub(crate) fn oversize_answer(len: usize, max: usize) -> Vec<u8> {
    let reply = ReplyTo {
        id: None,
        max_frame: max,
        method: String::new(),
    };
    reply.err(&format!(
        "request frame of {len} bytes is over the {max}-byte limit; it was skipped unread. Send smaller requests or raise the server's max_frame_size"
    ))
}

/// Polls `fut` once: its output if it is ready, else `None` (to be polled again elsewhere).
async fn poll_once(fut: &mut ReplyFuture) -> Option<Vec<u8>> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => None,
        })
    })
    .await
}

/// Adds `permit` to the permits held by answers collected to be sent together.
fn merge_permit(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(permit),
        None => *held = Some(permit),
    }
}

/// An answer to a request without an id: sent after every earlier one.
struct OrderedAnswer {
    dispatch: Dispatch,
    /// Held until the stream has taken the answer.
    permit: OwnedSemaphorePermit,
}

/// Runs id-less requests one after another and sends their answers in the same order.
async fn answer_in_order(
    mut queue: mpsc::UnboundedReceiver<OrderedAnswer>,
    writer: Arc<SharedWriter<WriteHalf<PipeStream>>>,
) {
    while let Some(job) = queue.recv().await {
        let frame = match job.dispatch {
            Dispatch::Ready(frame) => frame,
            Dispatch::Run(fut) => fut.await,
        };
        let _ = writer.send_holding(&frame, Some(job.permit));
    }
}
