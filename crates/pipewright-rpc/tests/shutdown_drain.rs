//! Graceful shutdown is bounded: a client that pipelines requests and never reads its
//! answers keeps its connection open, yet `serve_with_shutdown` returns once the shutdown
//! grace has passed, with that connection closed; a well-behaved client's call in flight at
//! the signal is still answered; and a client that goes away during the drain ends its
//! connection at once, without waiting for the grace.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pipewright::{ConnectOptions, Listener, PipeStream};
use pipewright_rpc::{demo, Client, ClientOptions, Router, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

/// The Echo payload of each flood request.
const PAYLOAD: usize = 60_000;
/// The server's high-water mark in these tests.
const MARK: usize = 1 << 20;
/// Requests in flight per connection in these tests: enough that the mark, not the
/// permits, is what stops the server reading the flooding client.
const IN_FLIGHT: usize = 64;
/// The flood gives up here (a server without backpressure would read without end).
const GIVE_UP: u64 = 128 << 20;

fn echo_frame(seq: u64) -> Vec<u8> {
    let text = format!("{seq:012}{}", "x".repeat(PAYLOAD - 12));
    let body = format!(r#"{{"method":"Echo","params":{{"payload":"{text}"}},"id":{seq}}}"#);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    frame
}

/// The demo service plus `Hold {}`: reports that it runs on `started`, then answers
/// "held" once `gate` has a permit.
fn holding_router(started: mpsc::UnboundedSender<()>, gate: Arc<Semaphore>) -> Router {
    demo::router().handle("Hold", move |_: serde_json::Value| {
        let (started, gate) = (started.clone(), gate.clone());
        async move {
            let _ = started.send(());
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
            Ok::<_, String>("held")
        }
    })
}

/// A server being served, and its shutdown signal.
struct Serving {
    name: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<pipewright::Result<()>>,
}

fn serve(tag: &str, server: Server) -> Serving {
    let name = unique_name(tag);
    let listener = Listener::bind(name.as_str()).expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(listener, async move {
        let _ = stopped.await;
    }));
    Serving { name, stop, task }
}

/// A client that writes Echo requests back to back and never reads an answer.
struct Flood {
    /// The read side, never read until the test says so.
    answers: ReadHalf<PipeStream>,
    /// The writer; ends when a write fails.
    writer: JoinHandle<()>,
}

/// Connects a flooding client and returns once its writes have stopped moving: the server
/// no longer reads its requests, as the answers queued for it are over the mark.
async fn flood_until_stalled(name: &str, options: &ConnectOptions) -> Flood {
    let stream = pipewright::connect_with(name, options)
        .await
        .expect("connect the flooding client");
    let (answers, mut requests) = tokio::io::split(stream);
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let written = written.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            while written.load(Ordering::SeqCst) < GIVE_UP {
                let frame = echo_frame(seq);
                if requests.write_all(&frame).await.is_err() {
                    // The server closed the connection.
                    return;
                }
                written.fetch_add(frame.len() as u64, Ordering::SeqCst);
                seq += 1;
            }
        })
    };
    let mut unchanged = 0;
    let mut before = 0;
    while unchanged < 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = written.load(Ordering::SeqCst);
        unchanged = if after == before && after > 0 {
            unchanged + 1
        } else {
            0
        };
        before = after;
    }
    assert!(
        before < GIVE_UP,
        "the server read {} MiB of requests from a client that never reads: no backpressure",
        before >> 20
    );
    println!(
        "the flooding client's writes blocked after {} KiB",
        before >> 10
    );
    Flood { answers, writer }
}

/// Reads until the stream ends or fails; returns the bytes read before that.
async fn read_to_end_or_error(r: &mut ReadHalf<PipeStream>) -> (u64, String) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return (total, "end of stream".to_owned()),
            Ok(n) => total += n as u64,
            Err(e) => return (total, format!("error: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_a_client_that_never_reads_after_the_grace_and_answers_the_others() {
    watchdog(async {
        for threads in SERVED_ON {
            let (started_tx, mut started) = mpsc::unbounded_channel();
            let gate = Arc::new(Semaphore::new(0));
            let serving = serve(
                "drain",
                Server::new(holding_router(started_tx, gate.clone()))
                    .connection_threads(threads)
                    .max_in_flight(IN_FLIGHT)
                    .max_queued_answer_bytes(MARK)
                    .shutdown_grace(Duration::from_secs(5)),
            );
            let mut hostile = flood_until_stalled(&serving.name, &ConnectOptions::new()).await;

            // A well-behaved client with a call in flight (its handler runs) at the signal.
            let options = ClientOptions::new().call_timeout(Duration::from_secs(60));
            let good = Client::connect_with(serving.name.as_str(), options)
                .await
                .expect("connect the well-behaved client");
            let call = tokio::spawn(async move {
                let answer = good.call::<_, String>("Hold", &serde_json::json!({})).await;
                (answer, good)
            });
            started.recv().await.expect("the Hold handler runs");

            serving.stop.send(()).expect("the server is running");
            gate.add_permits(1);

            // Bounded by the watchdog only: without a bounded drain this never returns.
            serving
                .task
                .await
                .expect("server task")
                .expect("serve_with_shutdown returns Ok");
            let (answer, _good) = call.await.expect("call task");
            assert_eq!(
                answer.expect("the call in flight at the signal is answered"),
                "held"
            );

            // The flooding client's connection is closed: what the server handed to the stream
            // can still be read, then the stream ends (or fails).
            let (read, end) = read_to_end_or_error(&mut hostile.answers).await;
            println!("the flooding client read {} KiB, then: {end}", read >> 10);
            hostile.writer.abort();
            let _ = hostile.writer.await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_during_the_drain_ends_its_connection_at_once() {
    watchdog(async {
        for threads in SERVED_ON {
            // A grace far longer than the watchdog: the server returns within the watchdog
            // only if the connection ends as soon as its client is gone.
            let serving = serve(
                "vanish",
                Server::new(demo::router())
                    .connection_threads(threads)
                    .max_in_flight(IN_FLIGHT)
                    .max_queued_answer_bytes(MARK)
                    .shutdown_grace(Duration::from_secs(3600)),
            );
            // No linger on the client: closing it cancels its own blocked write at once.
            let options = ConnectOptions::new().linger(Duration::ZERO);
            let hostile = flood_until_stalled(&serving.name, &options).await;

            serving.stop.send(()).expect("the server is running");
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !serving.task.is_finished(),
                "the server waits for the answers of the client that never reads"
            );

            // The client goes away in the middle of the drain.
            hostile.writer.abort();
            let _ = hostile.writer.await;
            drop(hostile.answers);

            serving
                .task
                .await
                .expect("server task")
                .expect("serve_with_shutdown returns Ok");
        }
    })
    .await;
}
