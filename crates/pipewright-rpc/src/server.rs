//! The server: accepts connections and answers each one's requests, in order for requests
//! without an id and as soon as ready for requests with one.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use pipewright::{ErrorKind, Listener, PipeStream};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter, WriteHalf};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::frame::{read_frame, Frame, DEFAULT_MAX_FRAME_SIZE};
use crate::router::{Dispatch, ReplyFuture, ReplyTo, Router};

/// The default number of requests one connection may have in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Serves a [`Router`] on a [`Listener`]: many connections, each with its own limit of
/// requests in flight, and a graceful shutdown that answers every request already read.
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
}

#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_in_flight: usize,
    max_frame_size: usize,
}

impl Server {
    /// A server for `router` with the default limits: 64 requests in flight per connection,
    /// 16 MiB frames.
    pub fn new(router: Router) -> Self {
        Server {
            router: Arc::new(router),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }

    /// How many requests one connection may have in flight (default 64; at least 1). When
    /// the limit is reached the server stops reading that connection until one is answered.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
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
    /// and returns.
    pub async fn serve_with_shutdown(
        self,
        listener: Listener,
        signal: impl Future<Output = ()>,
    ) -> pipewright::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let limits = ConnectionLimits {
            max_in_flight: self.max_in_flight,
            max_frame_size: self.max_frame_size,
        };
        tokio::pin!(signal);
        let result = loop {
            tokio::select! {
                _ = &mut signal => break Ok(()),
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok(stream) => {
                        let router = self.router.clone();
                        connections.spawn(serve_connection(stream, router, limits, stop_rx.clone()));
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
        let _ = stop_tx.send(true);
        while connections.join_next().await.is_some() {}
        result
    }
}

/// Serves one connection until the peer ends it, the framing breaks, or the server stops.
async fn serve_connection(
    stream: PipeStream,
    router: Arc<Router>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(write_answers(write_half, out_rx));
    let (ordered_tx, ordered_rx) = mpsc::unbounded_channel::<OrderedAnswer>();
    let sequencer = tokio::spawn(answer_in_order(ordered_rx, out_tx.clone()));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            p = in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let frame = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            f = read_frame(&mut reader, limits.max_frame_size) => f,
        };
        let (id, dispatch) = match frame {
            Ok(Some(Frame::Body(body))) => router.dispatch(&body, limits.max_frame_size),
            Ok(Some(Frame::Oversize { len })) => {
                let reply = ReplyTo {
                    id: None,
                    max_frame: limits.max_frame_size,
                    method: String::new(),
                };
                let message = format!(
                    "request frame of {len} bytes is over the {}-byte limit; it was skipped unread. Send smaller requests or raise the server's max_frame_size",
                    limits.max_frame_size
                );
                (None, Dispatch::Ready(reply.err(&message)))
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "closing the connection");
                break;
            }
        };
        match (id, dispatch) {
            (Some(_), Dispatch::Ready(frame)) => {
                let _ = out_tx.send(frame);
                drop(permit);
            }
            (Some(_), Dispatch::Run(mut fut)) => {
                // Most handlers finish at once: answer those here, without a task hop.
                match poll_once(&mut fut).await {
                    Some(frame) => {
                        let _ = out_tx.send(frame);
                        drop(permit);
                    }
                    None => {
                        let out = out_tx.clone();
                        tasks.spawn(async move {
                            let _ = out.send(fut.await);
                            drop(permit);
                        });
                    }
                }
            }
            (None, dispatch) => {
                let _ = ordered_tx.send(OrderedAnswer {
                    dispatch,
                    _permit: permit,
                });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(ordered_tx);
    drop(out_tx);
    drop(reader);
    let _ = sequencer.await;
    while tasks.join_next().await.is_some() {}
    let _ = writer.await;
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

/// An answer to a request without an id: sent after every earlier one.
struct OrderedAnswer {
    dispatch: Dispatch,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Runs id-less requests one after another and queues their answers in the same order.
async fn answer_in_order(
    mut queue: mpsc::UnboundedReceiver<OrderedAnswer>,
    out: mpsc::UnboundedSender<Vec<u8>>,
) {
    while let Some(job) = queue.recv().await {
        let frame = match job.dispatch {
            Dispatch::Ready(frame) => frame,
            Dispatch::Run(fut) => fut.await,
        };
        let _ = out.send(frame);
    }
}

/// Writes answers as they come, several per flush when they come faster than they go; ends
/// the stream when every sender is gone.
async fn write_answers(
    write_half: WriteHalf<PipeStream>,
    mut answers: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(frame) = answers.recv().await {
        let mut result = w.write_all(&frame).await;
        while let (Ok(()), Ok(frame)) = (&result, answers.try_recv()) {
            result = w.write_all(&frame).await;
        }
        if result.is_ok() {
            result = w.flush().await;
        }
        if let Err(e) = result {
            // The peer is gone; keep draining so senders never block, and stop writing.
            tracing::debug!(error = %e, "writing answers failed");
            while answers.recv().await.is_some() {}
            return;
        }
    }
    let _ = w.shutdown().await;
}
