//! A client that pipelines large requests and never reads its answers is slowed down by the
//! server (its writes block once the connection's answer queue is over the high-water mark),
//! never buffered without limit; another client on the same server is answered meanwhile;
//! and once the flooding client reads, every answer comes whole, in order for requests
//! without ids.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pipewright_rpc::demo::{Request, Response};
use pipewright_rpc::{Client, ClientOptions, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Echo payload of each flood request (as in the reported flood).
const PAYLOAD: usize = 60_000;
/// The server's high-water mark in these tests.
const MARK: usize = 1 << 20;
/// Requests in flight per connection in these tests.
const IN_FLIGHT: usize = 8;
/// What the flooding client may manage to write: the mark, the answers of the requests in
/// flight, the server's read buffer, and the kernel's buffers in both directions, with a
/// wide margin. A server without backpressure takes all of `GIVE_UP`.
const BOUND: u64 = 32 << 20;
/// The flood gives up here: a server that has read this much does not push back.
const GIVE_UP: u64 = 128 << 20;

fn payload(seq: u64) -> String {
    format!("{seq:012}{}", "x".repeat(PAYLOAD - 12))
}

fn echo_frame(seq: u64, ids: bool) -> Vec<u8> {
    let text = payload(seq);
    let body = if ids {
        format!(r#"{{"method":"Echo","params":{{"payload":"{text}"}},"id":{seq}}}"#)
    } else {
        format!(r#"{{"method":"Echo","params":{{"payload":"{text}"}}}}"#)
    };
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    frame
}

async fn read_answer(r: &mut (impl AsyncReadExt + Unpin)) -> Option<serde_json::Value> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).await.ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
    r.read_exact(&mut body).await.expect("a whole answer frame");
    Some(serde_json::from_slice(&body).expect("the answer is JSON"))
}

async fn flood_then_read(ids: bool, threads: usize) {
    let server = RunningServer::start(
        "flood",
        Server::new(test_router())
            .connection_threads(threads)
            .max_in_flight(IN_FLIGHT)
            .max_queued_answer_bytes(MARK),
    );
    let hostile = pipewright::connect(server.name.as_str())
        .await
        .expect("connect the flooding client");
    let (mut answers, mut requests) = tokio::io::split(hostile);

    // The flooding client: requests back to back, never reading.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (written, stop) = (written.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) && written.load(Ordering::SeqCst) < GIVE_UP {
                let frame = echo_frame(seq, ids);
                requests.write_all(&frame).await.expect("flood write");
                written.fetch_add(frame.len() as u64, Ordering::SeqCst);
                seq += 1;
            }
            (seq, requests)
        })
    };

    // Another client on the same server, calling until the flood's writes have stopped
    // moving (the server no longer reads them): it must be answered all along.
    let options = ClientOptions::new().call_timeout(Duration::from_secs(30));
    let good = Client::connect_with(server.name.as_str(), options)
        .await
        .expect("connect the second client");
    let mut unchanged = 0;
    let mut round = 0;
    let stalled_at = loop {
        let before = written.load(Ordering::SeqCst);
        for i in 0..20 {
            let text = format!("round {round} call {i}");
            let answer: Response = good
                .request(&Request::Echo {
                    payload: text.clone().into(),
                })
                .await
                .expect("the second client is answered during the flood");
            assert_eq!(answer, Response::Json(text.into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        round += 1;
        let after = written.load(Ordering::SeqCst);
        assert!(
            after < GIVE_UP,
            "the server read {} MiB of requests from a client that never reads its answers: no backpressure",
            after >> 20
        );
        unchanged = if after == before && after > 0 {
            unchanged + 1
        } else {
            0
        };
        if unchanged == 3 {
            break after;
        }
    };
    println!(
        "ids: {ids}, connection threads: {threads}: the flooding client's writes blocked after {} KiB",
        stalled_at >> 10
    );
    assert!(
        stalled_at <= BOUND,
        "the flooding client wrote {stalled_at} bytes before its writes blocked; expected at most {BOUND}"
    );

    // The flooding client now reads: its writer finishes the frame it was writing and stops,
    // and every request it sent is answered, whole. (The write side stays open: a byte pipe
    // on Windows has no half-close.)
    stop.store(true, Ordering::SeqCst);
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(answer) = read_answer(&mut answers).await {
            if got_tx.send(answer).is_err() {
                break;
            }
        }
    });
    let (sent, requests) = flood.await.expect("flood task");
    let mut got = Vec::new();
    while (got.len() as u64) < sent {
        match got_rx.recv().await {
            Some(answer) => got.push(answer),
            None => panic!("the connection ended after {} of {sent} answers", got.len()),
        }
    }
    let mut seen = HashSet::new();
    for (k, answer) in got.iter().enumerate() {
        assert_eq!(answer["status"], "Ok", "{}", &answer.to_string()[..100]);
        let text = answer["params"]["Json"].as_str().expect("an Echo answer");
        let seq = if ids {
            answer["id"].as_u64().expect("the answer's id")
        } else {
            // Without ids, answers come in the order of the requests.
            k as u64
        };
        assert!(
            text == payload(seq),
            "answer {k} is not the echo of request {seq} (starts {:?})",
            &text[..12]
        );
        assert!(seen.insert(seq), "request {seq} answered twice");
    }
    drop(good);
    server.shutdown().await;
    reader.abort();
    drop(requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_pushed_back_and_others_are_served() {
    for threads in SERVED_ON {
        watchdog(flood_then_read(true, threads)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_ids_stay_in_order_under_backpressure() {
    for threads in SERVED_ON {
        watchdog(flood_then_read(false, threads)).await;
    }
}

/// Requests written back to back before any answer is read, by a client pipelining
/// within the high-water mark: more than the kernel's buffers hold both ways, so a server
/// that blocked in writing an answer would wait on the client while the client waits on it.
const PIPELINED: u64 = 50;

/// Asks which thread serves the connection.
async fn served_where(conn: &mut pipewright::PipeStream) -> String {
    let answer = exchange(conn, br#"{"method":"Where","params":null,"id":9999}"#).await;
    answer["params"].as_str().expect("a thread name").to_owned()
}

async fn pipeline_then_read(threads: usize) {
    let router = test_router().handle("Where", |_: serde_json::Value| async {
        let thread = std::thread::current();
        Ok::<_, String>(thread.name().unwrap_or("unnamed").to_owned())
    });
    let server = RunningServer::start("pipeline", Server::new(router).connection_threads(threads));
    let mut conn = pipewright::connect(server.name.as_str())
        .await
        .expect("connect");
    let first = served_where(&mut conn).await;
    assert_eq!(first.starts_with("rpc-connection-"), threads > 0, "{first}");

    for seq in 0..PIPELINED {
        conn.write_all(&echo_frame(seq, true))
            .await
            .expect("every request is taken while the answers wait, well under the mark");
    }
    let mut seen = HashSet::new();
    for k in 0..PIPELINED {
        let answer = read_answer(&mut conn).await.expect("an answer");
        let seq = answer["id"].as_u64().expect("the answer's id");
        let text = answer["params"]["Json"].as_str().expect("an Echo answer");
        assert!(text == payload(seq), "answer {k} is not the echo of {seq}");
        assert!(seen.insert(seq), "request {seq} answered twice");
    }
    assert_eq!(seen.len() as u64, PIPELINED);

    // A thread that met a client not taking its answers gave the connection to a task,
    // which goes on serving it.
    let then = served_where(&mut conn).await;
    assert!(
        !then.starts_with("rpc-connection-"),
        "still served on {then} after {PIPELINED} pipelined requests"
    );
    drop(conn);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_before_reading_gets_every_answer() {
    for threads in SERVED_ON {
        watchdog(pipeline_then_read(threads)).await;
    }
}
