//! Blocking streams (`PipeStream::into_blocking`): whole messages and bytes on a thread of
//! their own, data that arrived before the switch read first, read timeouts that lose
//! nothing, the interrupter, and the end of stream when a blocking stream is dropped.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{pair, run};
use pipewright::{BlockingPipeStream, ErrorKind, PipeMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODES: [PipeMode; 2] = [PipeMode::Byte, PipeMode::Message];

/// A message of `len` bytes whose content says which one it is.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k * 7) as u8).collect()
}

/// A blocking echo server on a thread of its own answers every message, small and large
/// (up to 300 KiB: several reads per message), in order, then sees the orderly end.
#[test]
fn a_blocking_echo_answers_every_message_in_order() {
    run(async {
        let (_l, server, mut client) = pair("blk-echo", PipeMode::Message).await;
        let server = server.into_blocking().await.unwrap();
        assert!(server.is_server());
        assert_eq!(server.mode(), PipeMode::Message);
        if cfg!(any(windows, target_os = "linux")) {
            // The blocking socket still tells who the peer is (here: this process).
            assert_eq!(server.peer().unwrap().pid, Some(std::process::id()));
        }
        let echo = tokio::task::spawn_blocking(move || {
            let mut server = server;
            let mut echoed = 0usize;
            while let Some(m) = server.recv_message().unwrap() {
                server.send_message(&m).unwrap();
                echoed += 1;
            }
            echoed
        });
        let sizes = [1usize, 100, 4096, 65_536, 70_000, 300_000, 0, 17];
        let mut sent = 0;
        for round in 0..40 {
            for (j, &len) in sizes.iter().enumerate() {
                let len = len.max(1);
                let m = message(round * 10 + j, len);
                client.send_message(&m).await.unwrap();
                let back = client.recv_message().await.unwrap().unwrap();
                assert_eq!(back.len(), m.len(), "round {round} size {len}");
                assert!(back == m, "round {round} size {len}: content differs");
                sent += 1;
            }
        }
        client.close_write().await.unwrap();
        assert_eq!(echo.await.unwrap(), sent);
        assert!(client.recv_message().await.unwrap().is_none());
    });
}

/// Messages that arrived while the stream was still async (some inside a read the async
/// stream had in flight) are read first, in order, after the switch.
#[test]
fn what_arrived_before_the_switch_is_read_first() {
    run(async {
        let (_l, mut server, mut client) = pair("blk-before", PipeMode::Message).await;
        for i in 0..50 {
            client.send_message(&message(i, 1000 + i)).await.unwrap();
        }
        // One message read async: the stream now has reads in flight, holding data.
        assert_eq!(
            server.recv_message().await.unwrap().unwrap(),
            message(0, 1000)
        );
        let server = server.into_blocking().await.unwrap();
        let reader = tokio::task::spawn_blocking(move || {
            let mut server = server;
            let mut got = Vec::new();
            while let Some(m) = server.recv_message().unwrap() {
                got.push(m);
            }
            got
        });
        for i in 50..100 {
            client.send_message(&message(i, 1000 + i)).await.unwrap();
        }
        drop(client);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 99);
        for (k, m) in got.iter().enumerate() {
            assert!(
                *m == message(k + 1, 1001 + k),
                "message {} out of order or changed",
                k + 1
            );
        }
    });
}

/// Bytes through `io::Read`/`io::Write` in both modes; a blocking writer that drops right
/// after writing 1 MiB loses nothing: the peer reads all of it, then end of stream.
#[test]
fn bytes_written_then_dropped_all_arrive() {
    for mode in MODES {
        run(async move {
            let (_l, server, mut client) = pair("blk-bytes", mode).await;
            let server = server.into_blocking().await.unwrap();
            let data = message(7, 1 << 20);
            let expected = data.clone();
            let writer = tokio::task::spawn_blocking(move || {
                let mut server = server;
                let mut buf = [0u8; 5];
                server.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"start");
                for part in data.chunks(100_000) {
                    server.write_all(part).unwrap();
                }
                // Dropped without flush: the writes still in flight must arrive.
            });
            client.write_all(b"start").await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(got.len(), expected.len(), "{mode:?}");
            assert!(got == expected, "{mode:?}: content differs");
        });
    }
}

/// Reads with a short timeout race messages that arrive at any moment: a read that times
/// out loses nothing, the stream stays usable, and every message arrives once, in order.
/// The client waits for a timeout before the first message and again halfway, so reads
/// time out both before any data and between messages.
#[test]
fn read_timeouts_lose_nothing() {
    run(async {
        let (_l, server, mut client) = pair("blk-timeout", PipeMode::Message).await;
        let mut server = server.into_blocking().await.unwrap();
        server.set_read_timeout(Some(Duration::from_millis(1)));
        const N: usize = 300;
        let (timed_out, timeouts_seen) = std::sync::mpsc::channel::<()>();
        let reader = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            let mut timeouts = 0usize;
            loop {
                match server.recv_message() {
                    Ok(Some(m)) => got.push(m),
                    Ok(None) => break,
                    Err(e) if e.kind() == ErrorKind::TimedOut => {
                        timeouts += 1;
                        let _ = timed_out.send(());
                    }
                    Err(e) => panic!("read failed: {e}"),
                }
            }
            (got, timeouts)
        });
        let timeouts_seen = std::sync::Arc::new(std::sync::Mutex::new(timeouts_seen));
        let wait_for_a_timeout = || {
            let seen = timeouts_seen.clone();
            tokio::task::spawn_blocking(move || {
                let seen = seen.lock().unwrap();
                while seen.try_recv().is_ok() {}
                seen.recv().unwrap();
            })
        };
        wait_for_a_timeout().await.unwrap();
        for i in 0..N {
            if i == N / 2 {
                wait_for_a_timeout().await.unwrap();
            }
            client
                .send_message(&message(i, 10 + i % 200))
                .await
                .unwrap();
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(1 + (i % 3) as u64)).await;
            }
        }
        client.close_write().await.unwrap();
        let (got, timeouts) = reader.await.unwrap();
        assert_eq!(got.len(), N, "{timeouts} timeouts");
        for (i, m) in got.iter().enumerate() {
            assert!(*m == message(i, 10 + i % 200), "message {i} changed");
        }
        assert!(timeouts >= 2, "{timeouts} timeouts");
    });
}

/// The interrupter ends a read blocked on a silent peer, and every later call fails too.
#[test]
fn the_interrupter_ends_a_blocked_read() {
    for mode in MODES {
        run(async move {
            let (_l, server, client) = pair("blk-stop", mode).await;
            let server: BlockingPipeStream = server.into_blocking().await.unwrap();
            let stop = server.interrupter();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut server = server;
                tx.send(()).unwrap();
                let first = server.recv_message().map(|_| ()).unwrap_err().kind();
                let again = server.send_message(b"x").map(|_| ()).unwrap_err().kind();
                let mut buf = [0u8; 4];
                let read = server.read(&mut buf).unwrap_err().kind();
                (first, again, read)
            });
            rx.recv().unwrap();
            // Whether the read has started waiting or not, it must end.
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.interrupt();
            assert!(stop.is_interrupted());
            let (first, again, read) = tokio::task::spawn_blocking(move || reader.join().unwrap())
                .await
                .unwrap();
            assert_eq!(first, ErrorKind::Stopped, "{mode:?}");
            assert_eq!(again, ErrorKind::Stopped, "{mode:?}");
            assert_eq!(read, std::io::ErrorKind::ConnectionAborted, "{mode:?}");
            drop(client);
        });
    }
}

/// A blocking message stream that is dropped ends orderly: the peer reads `Ok(None)`, not
/// `Disconnected`; and a blocking client's `close_write` still lets the answer arrive.
#[test]
fn a_dropped_blocking_stream_ends_orderly() {
    run(async {
        let (_l, server, mut client) = pair("blk-drop", PipeMode::Message).await;
        let mut server = server.into_blocking().await.unwrap();
        let sent = tokio::task::spawn_blocking(move || {
            server.send_message(b"last").unwrap();
            server.close_write().unwrap();
            let answer = server.recv_message().unwrap();
            drop(server);
            answer
        });
        assert_eq!(client.recv_message().await.unwrap().unwrap(), b"last");
        assert!(client.recv_message().await.unwrap().is_none());
        client.send_message(b"answer").await.unwrap();
        assert_eq!(sent.await.unwrap().as_deref(), Some(&b"answer"[..]));
    });
}

/// Large reads and writes (at least 64 KiB: on Windows straight into and out of the
/// caller's buffer) move every byte in order; such a read times out without losing
/// anything, and the interrupter ends one that is blocked.
#[test]
fn large_blocking_reads_and_writes_keep_every_byte() {
    run(async {
        let (_l, server, client) = pair("blk-large", PipeMode::Byte).await;
        let mut server = server.into_blocking().await.unwrap();
        let mut client = client.into_blocking().await.unwrap();
        let data = message(3, 4 << 20);
        let expected = data.clone();
        let (server, client) = tokio::task::spawn_blocking(move || {
            server.set_read_timeout(Some(Duration::from_millis(20)));
            let mut big = vec![0u8; 256 * 1024];
            let e = server.read(&mut big).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
            server.set_read_timeout(None);
            let got = std::thread::scope(|s| {
                let reader = s.spawn(|| {
                    let mut got = Vec::with_capacity(expected.len());
                    while got.len() < expected.len() {
                        let n = server.read(&mut big).unwrap();
                        assert!(n > 0, "end of stream after {} bytes", got.len());
                        got.extend_from_slice(&big[..n]);
                    }
                    got
                });
                for part in data.chunks(300_000) {
                    client.write_all(part).unwrap();
                }
                client.flush().unwrap();
                reader.join().unwrap()
            });
            assert!(got == expected, "content differs");
            (server, client)
        })
        .await
        .unwrap();
        // A large read blocked on a silent peer ends when interrupted.
        let stop = server.interrupter();
        let reader = std::thread::spawn(move || {
            let mut server = server;
            let mut big = vec![0u8; 128 * 1024];
            server.read(&mut big).unwrap_err().kind()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.interrupt();
        let kind = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert_eq!(kind, std::io::ErrorKind::ConnectionAborted);
        drop(client);
    });
}

/// `try_write` never waits: against a peer that does not read it takes bytes until the
/// pipe is full, then says `WouldBlock`. `into_async` hands the stream to tasks: what arrived
/// before is read first, every byte `try_write` took arrives, in order, before what is
/// written next. A message-mode stream refuses `try_write` (a message is sent whole).
#[test]
fn try_write_fills_the_pipe_then_the_stream_goes_async() {
    run(async {
        let (_l, server, mut client) = pair("blk-try", PipeMode::Byte).await;
        let server = server.into_blocking().await.unwrap();
        client.write_all(b"before").await.unwrap();
        let (server, taken) = tokio::task::spawn_blocking(move || {
            let mut server = server;
            let chunk = message(3, 64 * 1024);
            let mut taken = Vec::new();
            loop {
                match server.try_write(&chunk) {
                    Ok(n) => {
                        assert!(n > 0 && n <= chunk.len(), "took {n}");
                        taken.extend_from_slice(&chunk[..n]);
                        assert!(taken.len() < 256 << 20, "try_write never said WouldBlock");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("try_write: {e}"),
                }
            }
            (server, taken)
        })
        .await
        .unwrap();
        assert!(!taken.is_empty(), "an empty pipe took nothing");

        let mut server = server.into_async().unwrap();
        let mut before = [0u8; 6];
        server.read_exact(&mut before).await.unwrap();
        assert_eq!(&before, b"before");
        let expected = taken.len() + 5;
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected];
            client.read_exact(&mut got).await.unwrap();
            (client, got)
        });
        server.write_all(b"after").await.unwrap();
        let (mut client, got) = reader.await.unwrap();
        assert!(
            got[..taken.len()] == taken[..],
            "the bytes try_write took differ"
        );
        assert_eq!(&got[taken.len()..], b"after");
        client.write_all(b"ping").await.unwrap();
        let mut ping = [0u8; 4];
        server.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
    });
    run(async {
        let (_l, server, _client) = pair("blk-try-msg", PipeMode::Message).await;
        let mut server = server.into_blocking().await.unwrap();
        let err = server.try_write(b"part of a message").unwrap_err();
        assert_eq!(pipewright::Error::from(err).kind(), ErrorKind::Unsupported);
    });
}
