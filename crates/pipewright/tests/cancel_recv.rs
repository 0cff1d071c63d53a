//! `recv_message` is cancel-safe: a receiver that cancels it at arbitrary points (tiny
//! timeouts, and `select!` against a future that is already ready) still gets every message
//! whole, in order, with its checksum.

mod common;

use std::time::Duration;

use common::{run, unique_name};
use pipewright::{connect_with, ConnectOptions, Listener, ListenerOptions, PipeMode};

const MESSAGES: usize = 300;

/// FNV-1a, 64 bits: a checksum of the payload.
fn checksum(data: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_le_bytes()
}

/// Message `i`: its index, a checksum of the payload, then the payload. Sizes vary from a few
/// bytes to 1.5 MiB, so that large ones arrive over many reads.
fn message(i: usize) -> Vec<u8> {
    let len = match i % 7 {
        0 => 1_500_000,
        1 => 3,
        2 => 70_000,
        3 => 0,
        4 => 300_000,
        5 => 17,
        _ => 4096 + i,
    };
    let payload = common::pattern(len, i as u8);
    let mut m = (i as u32).to_le_bytes().to_vec();
    m.extend_from_slice(&checksum(&payload));
    m.extend_from_slice(&payload);
    m
}

fn check(i: usize, m: &[u8]) {
    assert!(m.len() >= 12, "message {i}: only {} bytes", m.len());
    let index = u32::from_le_bytes(m[..4].try_into().unwrap()) as usize;
    assert_eq!(
        index, i,
        "message {i} arrived as the {index}th (order or framing broken)"
    );
    assert_eq!(
        checksum(&m[12..]),
        m[4..12],
        "message {i} ({} bytes) arrived damaged",
        m.len()
    );
}

/// How the receiver cancels its `recv_message` calls.
#[derive(Debug, Clone, Copy)]
enum Canceller {
    /// `tokio::time::timeout` with a tiny, varying duration.
    Timeout,
    /// `select!` against a future that is ready after a varying number of polls.
    ReadyFuture,
}

/// A future that is pending `n` times (waking itself each time), then ready.
async fn ready_after(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

fn cancelled_receives_lose_nothing(canceller: Canceller) {
    run(async move {
        let name = unique_name("cancel-recv");
        let options = ListenerOptions::new().mode(PipeMode::Message);
        let listener = Listener::bind_with(&name, &options).unwrap();
        let sender = tokio::spawn({
            let name = name.clone();
            async move {
                let options = ConnectOptions::new().mode(PipeMode::Message);
                let mut c = connect_with(&name, &options).await.unwrap();
                for i in 0..MESSAGES {
                    c.send_message(&message(i)).await.unwrap();
                    if i % 5 == 0 {
                        // Let the receiver catch up now and then, so it waits mid-message.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                c.close_write().await.unwrap();
            }
        });
        let mut conn = listener.accept().await.unwrap();
        let mut next = 0;
        let mut cancelled = 0u64;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let got = match canceller {
                Canceller::Timeout => {
                    let tiny = Duration::from_micros(attempt % 50);
                    match tokio::time::timeout(tiny, conn.recv_message()).await {
                        Ok(r) => r,
                        Err(_) => {
                            cancelled += 1;
                            continue;
                        }
                    }
                }
                Canceller::ReadyFuture => {
                    tokio::select! {
                        biased;
                        r = conn.recv_message() => r,
                        _ = ready_after((attempt % 4) as usize) => {
                            cancelled += 1;
                            continue;
                        }
                    }
                }
            };
            match got.unwrap() {
                Some(m) => {
                    check(next, &m);
                    next += 1;
                }
                None => break,
            }
        }
        sender.await.unwrap();
        assert_eq!(next, MESSAGES, "messages lost");
        assert!(cancelled > 0, "no receive was ever cancelled");
        eprintln!("{canceller:?}: {MESSAGES} messages whole after {cancelled} cancelled receives");
    });
}

#[test]
fn recv_message_cancelled_by_tiny_timeouts_loses_nothing() {
    cancelled_receives_lose_nothing(Canceller::Timeout);
}

#[test]
fn recv_message_cancelled_by_select_loses_nothing() {
    cancelled_receives_lose_nothing(Canceller::ReadyFuture);
}

/// The case that once lost a message on Unix: a 1000-byte message of which 300 bytes have
/// arrived, a `recv_message` cancelled while it waits for the rest, then the other 700
/// bytes. The next call returns the 1000-byte message whole (it once returned a 700-byte
/// "message"), and the stream stays in step for the message after it.
#[cfg(unix)]
#[test]
fn recv_message_cancelled_at_300_of_1000_bytes_then_returns_the_whole_message() {
    use tokio::io::AsyncWriteExt;

    run(async {
        let name = unique_name("cancel-300");
        let options = ListenerOptions::new().mode(PipeMode::Message);
        let listener = Listener::bind_with(&name, &options).unwrap();
        let path = pipewright::PipeName::parse(&name).unwrap().unix_path();
        // A plain socket writes the frame (4-byte little-endian length, payload) in pieces.
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut conn = listener.accept().await.unwrap();
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        raw.write_all(&1000u32.to_le_bytes()).await.unwrap();
        raw.write_all(&payload[..300]).await.unwrap();
        for _ in 0..3 {
            // Each call takes what has arrived and waits for the rest until it is cancelled.
            let r = tokio::time::timeout(Duration::from_millis(100), conn.recv_message()).await;
            assert!(r.is_err(), "a 1000-byte message is not there yet: {r:?}");
        }
        raw.write_all(&payload[300..]).await.unwrap();
        raw.write_all(&[2, 0, 0, 0, b'o', b'k']).await.unwrap();
        let m = conn.recv_message().await.unwrap().expect("the message");
        assert_eq!(m.len(), 1000, "the message came back cut");
        assert!(m == payload, "the message came back changed");
        assert_eq!(conn.recv_message().await.unwrap().unwrap(), b"ok");
    });
}
