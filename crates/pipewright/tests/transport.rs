//! The transport core on real pipes (Windows) and Unix sockets: listener backlog, concurrent
//! clients, message mode, EOF and teardown, connect timeouts, and bad input.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::{pattern, run, unique_name};
use pipewright::{
    connect, connect_with, probe, ConnectOptions, ErrorKind, Listener, ListenerOptions, PipeMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves byte-mode echo until the listener closes: copies each connection back to itself.
fn spawn_echo(listener: Arc<Listener>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(conn) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(conn);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    })
}

#[test]
fn sixty_four_clients_a_hundred_rounds_each_without_a_connect_failure() {
    run(async {
        let name = unique_name("many");
        let listener = Arc::new(Listener::bind(&name).unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let srv = {
            let listener = listener.clone();
            let served = served.clone();
            tokio::spawn(async move {
                while let Ok(mut conn) = listener.accept().await {
                    served.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let mut buf = [0u8; 8];
                        if conn.read_exact(&mut buf).await.is_ok() {
                            let _ = conn.write_all(&buf).await;
                            let _ = conn.flush().await;
                        }
                    });
                }
            })
        };
        let mut clients = Vec::new();
        for c in 0..64u32 {
            let name = name.clone();
            clients.push(tokio::spawn(async move {
                for round in 0..100u32 {
                    let mut conn = connect(name.as_str())
                        .await
                        .unwrap_or_else(|e| panic!("client {c} round {round}: {e}"));
                    let msg = ((c as u64) << 32 | round as u64).to_le_bytes();
                    conn.write_all(&msg).await.unwrap();
                    let mut back = [0u8; 8];
                    conn.read_exact(&mut back).await.unwrap();
                    assert_eq!(
                        back, msg,
                        "client {c} round {round} got another client's data"
                    );
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(served.load(Ordering::Relaxed), 6400);
        listener.close();
        srv.await.unwrap();
    });
}

#[test]
fn no_busy_or_missing_pipe_between_accepts() {
    // Clients that do not retry at all must always find a free instance while the listener
    // lives and fewer than `backlog` clients wait.
    run(async {
        let name = unique_name("backlog");
        let listener =
            Arc::new(Listener::bind_with(&name, &ListenerOptions::new().backlog(4)).unwrap());
        let srv = spawn_echo(listener.clone());
        let once = ConnectOptions::new().timeout(Duration::ZERO);
        for i in 0..300 {
            let mut conn = connect_with(name.as_str(), &once)
                .await
                .unwrap_or_else(|e| panic!("attempt {i} found no free instance: {e}"));
            conn.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            conn.read_exact(&mut b).await.unwrap();
        }
        listener.close();
        srv.await.unwrap();
    });
}

#[test]
fn clients_are_not_lost_when_accept_is_not_being_called() {
    // The backlog keeps serving clients while nobody is in accept(); they are accepted later.
    run(async {
        let name = unique_name("lazy");
        let listener = Listener::bind_with(&name, &ListenerOptions::new().backlog(3)).unwrap();
        let once = ConnectOptions::new().timeout(Duration::ZERO);
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut c = connect_with(name.as_str(), &once).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            c.flush().await.unwrap();
            clients.push(c);
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut conn = listener.accept().await.unwrap();
            let mut b = [0u8; 1];
            conn.read_exact(&mut b).await.unwrap();
            seen.push(b[0]);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
    });
}

#[test]
fn accept_is_cancel_safe() {
    run(async {
        let name = unique_name("cancel");
        let listener = Arc::new(Listener::bind(&name).unwrap());
        let accepted = {
            let listener = listener.clone();
            tokio::spawn(async move {
                let mut got = 0;
                while got < 20 {
                    // Abandon most accepts half-way; no client may be lost.
                    tokio::select! {
                        conn = listener.accept() => {
                            let mut conn = conn.unwrap();
                            conn.write_all(b"ok").await.unwrap();
                            conn.flush().await.unwrap();
                            got += 1;
                        }
                        _ = tokio::time::sleep(Duration::from_micros(300)) => {}
                    }
                }
            })
        };
        for _ in 0..20 {
            let mut c = connect(name.as_str()).await.unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ok");
        }
        accepted.await.unwrap();
    });
}

#[test]
fn close_wakes_pending_accepts_and_clients_then_find_no_server() {
    run(async {
        let name = unique_name("close");
        let listener = Arc::new(Listener::bind(&name).unwrap());
        let waiting = {
            let listener = listener.clone();
            tokio::spawn(async move { listener.accept().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        listener.close();
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed);
        let err = listener.accept().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed);
        let once = ConnectOptions::new().timeout(Duration::ZERO);
        let err = connect_with(name.as_str(), &once).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    });
}

#[test]
fn large_transfers_arrive_intact_both_ways() {
    run(async {
        let name = unique_name("bulk");
        let listener = Arc::new(Listener::bind(&name).unwrap());
        let srv = spawn_echo(listener.clone());
        let data = pattern(32 * 1024 * 1024 + 17, 3);
        let conn = connect(name.as_str()).await.unwrap();
        let (mut r, mut w) = tokio::io::split(conn);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            // Odd-sized writes exercise partial buffers.
            for chunk in sent.chunks(100_003) {
                w.write_all(chunk).await.unwrap();
            }
            w.flush().await.unwrap();
            w
        });
        let mut back = vec![0u8; data.len()];
        r.read_exact(&mut back).await.unwrap();
        assert!(back == data, "echoed data differs");
        drop(writer.await.unwrap());
        listener.close();
        srv.await.unwrap();
    });
}

/// Many small writes of varying sizes, issued back to back (many outstanding at once on
/// Windows), arrive complete and in order.
#[test]
fn small_writes_of_varying_sizes_arrive_in_order() {
    run(async {
        let name = unique_name("small");
        let listener = Listener::bind(&name).unwrap();
        let sizes: Vec<usize> = (0..20_000).map(|i| 1 + (i * 7919) % 3000).collect();
        let total: usize = sizes.iter().sum();
        let stream = pattern(total, 0x5a);
        let expected = stream.clone();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let mut got = Vec::with_capacity(total);
            conn.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut c = connect(name.as_str()).await.unwrap();
        let mut at = 0;
        for n in sizes {
            c.write_all(&stream[at..at + n]).await.unwrap();
            at += n;
        }
        c.shutdown().await.unwrap();
        let got = server.await.unwrap();
        assert_eq!(got.len(), total, "bytes lost or added");
        let first_bad = got.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_bad, None, "bytes out of order");
    });
}

/// `mode_from_server` opens a message pipe in message mode and a byte pipe in byte mode, on
/// the first connection (the server sees exactly one client each time).
#[test]
fn mode_from_server_follows_the_pipe_type_on_one_connection() {
    run(async {
        // Unix sockets have no pipe type (message mode is pipewright's framing, which both ends
        // must choose), so there the configured byte mode stays.
        let modes: &[PipeMode] = if cfg!(windows) {
            &[PipeMode::Message, PipeMode::Byte]
        } else {
            &[PipeMode::Byte]
        };
        for &server_mode in modes {
            let name = unique_name("adopt");
            let opts = ListenerOptions::new().mode(server_mode);
            let listener = Arc::new(Listener::bind_with(&name, &opts).unwrap());
            let accepted = Arc::new(AtomicUsize::new(0));
            let server = {
                let (listener, accepted) = (listener.clone(), accepted.clone());
                tokio::spawn(async move {
                    let mut conn = listener.accept().await.unwrap();
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let msg = conn.recv_message().await.unwrap().expect("a message");
                    conn.send_message(&msg).await.unwrap();
                    conn.send_message(b"").await.unwrap();
                    // Keep the pipe open until the client has read everything.
                    let mut rest = Vec::new();
                    let _ = conn.read_to_end(&mut rest).await;
                })
            };
            // Asks for byte mode, but adopts the server's type.
            let copts = ConnectOptions::new()
                .mode(PipeMode::Byte)
                .mode_from_server(true);
            let mut c = connect_with(name.as_str(), &copts).await.unwrap();
            assert_eq!(
                c.mode(),
                server_mode,
                "the client adopts the server's pipe type"
            );
            c.send_message(b"hello").await.unwrap();
            let mut back = Vec::new();
            if c.mode() == PipeMode::Message {
                back = c.recv_message().await.unwrap().expect("the echo");
                assert_eq!(
                    c.recv_message().await.unwrap(),
                    None,
                    "the zero-byte message ends the stream"
                );
            } else {
                while back.len() < 5 {
                    let n = c.read_buf(&mut back).await.unwrap();
                    assert!(n > 0, "end of stream before the echo");
                }
            }
            assert_eq!(back, b"hello");
            drop(c);
            server.await.unwrap();
            assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection only");
            listener.close();
        }
    });
}

#[test]
fn message_mode_keeps_boundaries_for_megabyte_messages() {
    run(async {
        let name = unique_name("msg");
        let opts = ListenerOptions::new().mode(PipeMode::Message);
        let listener = Listener::bind_with(&name, &opts).unwrap();
        let sizes = [1usize, 4095, 4096, 4097, 65536, 300_000, 1024 * 1024, 7];
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let mut n = 0;
            while let Some(msg) = conn.recv_message().await.unwrap() {
                // Echo each message back as one message.
                conn.send_message(&msg).await.unwrap();
                n += 1;
            }
            conn.shutdown().await.unwrap();
            n
        });
        let copts = ConnectOptions::new().mode(PipeMode::Message);
        let mut c = connect_with(name.as_str(), &copts).await.unwrap();
        for (i, size) in sizes.iter().enumerate() {
            let msg = pattern(*size, i as u8);
            c.send_message(&msg).await.unwrap();
            let back = c.recv_message().await.unwrap().expect("a message");
            assert_eq!(
                back.len(),
                *size,
                "message {i} came back with another length"
            );
            assert!(back == msg, "message {i} differs");
        }
        c.shutdown().await.unwrap();
        assert_eq!(
            c.recv_message().await.unwrap(),
            None,
            "server's zero-byte message is EOF"
        );
        assert_eq!(server.await.unwrap(), sizes.len());
    });
}

#[test]
fn zero_byte_message_is_end_of_stream_and_the_pipe_stays_usable() {
    run(async {
        let name = unique_name("zero");
        let listener =
            Listener::bind_with(&name, &ListenerOptions::new().mode(PipeMode::Message)).unwrap();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let mut got = Vec::new();
            // read_to_end stops at the zero-byte message, not at a close.
            conn.read_to_end(&mut got).await.unwrap();
            // The client is still connected: the reply reaches it.
            conn.send_message(b"reply after half-close").await.unwrap();
            conn.shutdown().await.unwrap();
            got
        });
        let copts = ConnectOptions::new().mode(PipeMode::Message);
        let mut c = connect_with(name.as_str(), &copts).await.unwrap();
        c.send_message(b"request").await.unwrap();
        c.shutdown().await.unwrap();
        let reply = c.recv_message().await.unwrap();
        assert_eq!(reply.as_deref(), Some(&b"reply after half-close"[..]));
        assert_eq!(c.recv_message().await.unwrap(), None);
        assert_eq!(server.await.unwrap(), b"request");
    });
}

#[test]
fn oversized_message_is_refused_with_message_too_large() {
    run(async {
        let name = unique_name("big");
        let opts = ListenerOptions::new()
            .mode(PipeMode::Message)
            .max_message_size(1000);
        let listener = Listener::bind_with(&name, &opts).unwrap();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            conn.recv_message().await.unwrap_err()
        });
        let copts = ConnectOptions::new().mode(PipeMode::Message);
        let mut c = connect_with(name.as_str(), &copts).await.unwrap();
        // The server drops the connection on refusal, so this send may or may not succeed.
        let _ = c.send_message(&vec![1u8; 5000]).await;
        let err = server.await.unwrap();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge, "{err}");
        assert!(err.to_string().contains("max_message_size"), "{err}");
        // The sender's own limit is checked before anything is sent.
        let small = ConnectOptions::new()
            .mode(PipeMode::Message)
            .max_message_size(10);
        let name2 = unique_name("big2");
        let l2 =
            Listener::bind_with(&name2, &ListenerOptions::new().mode(PipeMode::Message)).unwrap();
        let mut c2 = connect_with(name2.as_str(), &small).await.unwrap();
        let err = c2.send_message(&[0u8; 11]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
        drop(l2);
    });
}

#[test]
fn shutdown_flushes_so_the_last_bytes_arrive_before_the_disconnect() {
    run(async {
        let name = unique_name("flush");
        let listener = Listener::bind(&name).unwrap();
        let data = pattern(3 * 1024 * 1024 + 5, 9);
        let sent = data.clone();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            conn.write_all(&sent).await.unwrap();
            // Flush, then disconnect: nothing written may be discarded.
            conn.shutdown().await.unwrap();
            drop(conn);
        });
        let mut c = connect(name.as_str()).await.unwrap();
        // Read slowly at first, so the server's shutdown really has to wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        server.await.unwrap();
    });
}

/// Polls `fut` once: `Pending` means it is waiting (a connect that made its first attempt
/// and failed is asleep on its retry timer).
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

#[test]
fn connecting_to_a_missing_pipe_gives_up_within_its_timeout() {
    run(async {
        let name = unique_name("missing");
        let opts = ConnectOptions::new().timeout(Duration::from_millis(500));
        let err = connect_with(name.as_str(), &opts).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::NotFound | ErrorKind::TimedOut),
            "unexpected kind: {err}"
        );
        assert!(err.to_string().contains("gave up after"), "{err}");
        let err = probe(name.as_str(), Duration::ZERO).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    });
}

/// A connect with a timeout retries a missing server: its first attempt (made in its first
/// poll: a local open does not wait) fails, the server appears only then, and a later attempt
/// reaches it. A connect that does not retry fails at the first poll.
#[test]
fn connect_waits_for_a_server_that_starts_late() {
    run(async {
        for timeout in [Duration::from_millis(500), Duration::from_secs(5)] {
            let name = unique_name("late");
            let opts = ConnectOptions::new().timeout(timeout);
            let mut connecting = Box::pin(connect_with(name.as_str(), &opts));
            if let Poll::Ready(r) = poll_once(&mut connecting).await {
                panic!("the first attempt had no server to reach, yet it ended: {r:?}");
            }
            let listener = Listener::bind(&name).unwrap();
            let server = tokio::spawn(async move {
                let mut conn = listener.accept().await.unwrap();
                conn.write_all(b"hi").await.unwrap();
                conn.shutdown().await.unwrap();
            });
            let mut c = connecting
                .await
                .unwrap_or_else(|e| panic!("timeout {timeout:?}: the retry failed: {e}"));
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hi");
            server.await.unwrap();
            probe(name.as_str(), Duration::ZERO).await.unwrap_err();
        }
    });
}

#[test]
fn probe_reports_a_live_server_ready() {
    run(async {
        let name = unique_name("probe");
        let listener = Arc::new(Listener::bind(&name).unwrap());
        let srv = spawn_echo(listener.clone());
        probe(name.as_str(), Duration::from_secs(2)).await.unwrap();
        listener.close();
        srv.await.unwrap();
    });
}

#[test]
fn peer_reports_this_process_and_user_for_an_in_process_client() {
    run(async {
        let name = unique_name("peer");
        let listener = Listener::bind(&name).unwrap();
        let client = connect(name.as_str()).await.unwrap();
        let server = listener.accept().await.unwrap();
        let me = std::process::id();
        let user = pipewright::platform::current_user().unwrap();
        let sp = server.peer().unwrap();
        assert_eq!(sp.pid, Some(me));
        assert_eq!(sp.user.as_ref(), Some(&user));
        let cp = client.peer().unwrap();
        assert_eq!(cp.pid, Some(me));
        assert!(server.is_server());
        assert!(!client.is_server());
    });
}

#[test]
fn invalid_names_and_options_give_documented_errors() {
    run(async {
        for bad in [
            "",
            r"\\.\pipe\",
            "a\0b",
            r"\\.\pipe\a\b",
            r"\\host\pipe\x",
            r"\\.\notpipe\x",
        ] {
            let err = Listener::bind(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}: {err}");
            let err = connect(bad).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}: {err}");
        }
        let long = "n".repeat(300);
        assert_eq!(
            Listener::bind(long.as_str()).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        let name = unique_name("opts");
        for (opts, needle) in [
            (ListenerOptions::new().backlog(0), "backlog"),
            (
                ListenerOptions::new().max_instances(2).backlog(3),
                "max_instances",
            ),
            (ListenerOptions::new().io_buffer_size(1), "io_buffer_size"),
        ] {
            let err = Listener::bind_with(name.as_str(), &opts).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidOption);
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = connect_with(name.as_str(), &ConnectOptions::new().max_message_size(0))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidOption);
    });
}

#[test]
fn sddl_is_rejected_where_it_cannot_apply_and_when_malformed() {
    run(async {
        let name = unique_name("sddl");
        let err = Listener::bind_with(
            name.as_str(),
            &ListenerOptions::new().sddl("this is not sddl"),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidOption, "{err}");
        if cfg!(unix) {
            assert!(err.to_string().contains("unix_mode"), "{err}");
        } else {
            assert!(err.to_string().contains("not a valid SDDL"), "{err}");
        }
    });
}

#[test]
fn a_vanished_peer_ends_reads_and_fails_writes_with_disconnected() {
    run(async {
        let name = unique_name("gone");
        let listener =
            Listener::bind_with(&name, &ListenerOptions::new().mode(PipeMode::Message)).unwrap();
        let copts = ConnectOptions::new().mode(PipeMode::Message);
        let mut client = connect_with(name.as_str(), &copts).await.unwrap();
        let server = listener.accept().await.unwrap();
        drop(server);
        // Reading sees the end of the stream, not an error.
        assert_eq!(client.recv_message().await.unwrap(), None);
        // Writing fails, soon, with a kind callers can match.
        let mut last = None;
        for _ in 0..100 {
            match client.send_message(b"anyone there?").await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let err = last.expect("writes to a vanished peer kept succeeding");
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    });
}

#[cfg(windows)]
#[test]
fn listener_tops_up_when_max_instances_frees_a_slot() {
    run(async {
        let name = unique_name("maxinst");
        let opts = ListenerOptions::new().backlog(1).max_instances(2);
        let listener = Listener::bind_with(&name, &opts).unwrap();
        let once = ConnectOptions::new().timeout(Duration::ZERO);
        let c1 = connect_with(name.as_str(), &once).await.unwrap();
        let s1 = listener.accept().await.unwrap();
        let _c2 = connect_with(name.as_str(), &once).await.unwrap();
        let _s2 = listener.accept().await.unwrap();
        // Both instances are taken: a third client finds the pipe busy.
        let err = connect_with(name.as_str(), &once).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
        // Closing one connection frees a slot; the listener creates a new instance for it.
        drop(s1);
        drop(c1);
        let retry = ConnectOptions::new().timeout(Duration::from_secs(5));
        let mut c3 = connect_with(name.as_str(), &retry).await.unwrap();
        let mut s3 = listener.accept().await.unwrap();
        c3.write_all(b"third").await.unwrap();
        let mut b = [0u8; 5];
        s3.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"third");
    });
}
