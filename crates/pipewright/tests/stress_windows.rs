//! Windows data path under stress: dropping and shutting down streams with data in flight,
//! the linger limit, clients that stop reading, and the end-of-stream kinds of message pipes.
//!
//! Windows only (run under Wine by `scripts/cargo-win test -p pipewright --test stress_windows`).
//! The test binary re-runs itself as a child process for the killed-peer case (see
//! `common::spawn_role`).
#![cfg(windows)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, role, run, spawn_role, unique_name};
use pipewright::{
    connect_with, ConnectOptions, ErrorKind, Listener, ListenerOptions, PipeMode, PipeStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn message_listener(name: &str) -> Listener {
    Listener::bind_with(name, &ListenerOptions::new().mode(PipeMode::Message)).unwrap()
}

async fn message_client(name: &str) -> PipeStream {
    connect_with(name, &ConnectOptions::new().mode(PipeMode::Message))
        .await
        .unwrap()
}

/// Reads everything in small pieces with short pauses: a slow reader.
async fn read_slowly(c: &mut PipeStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut reads = 0u64;
    loop {
        let n = c.read(&mut buf).await?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads.is_multiple_of(16) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The child roles. Does nothing in the parent.
#[test]
fn child_entry() {
    let Some((role, pipe)) = role() else {
        return;
    };
    match role.as_str() {
        // Serve one message-mode client: send one message, then hang until killed.
        "message-then-hang" => run(async move {
            let listener = message_listener(&pipe);
            let mut conn = listener.accept().await.expect("child accept");
            conn.send_message(b"hello from the child").await.unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
        }),
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn drop_after_write_all_delivers_every_byte_to_a_slow_reader() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("dropbytes");
        let listener = Listener::bind(&name).unwrap();
        let data = pattern(8 * 1024 * 1024, 3);
        let sent = data.clone();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            conn.write_all(&sent).await.unwrap();
            // As every TCP user does: drop right after the last write.
            drop(conn);
            listener
        });
        let mut c = connect_with(name.as_str(), &ConnectOptions::new())
            .await
            .unwrap();
        let got = read_slowly(&mut c).await.unwrap();
        let _listener = server.await.unwrap();
        assert_eq!(got.len(), data.len(), "bytes reported written were lost");
        assert!(got == data, "the stream arrived corrupted");
    });
}

/// Write then drop, as README's first example does, with the reader starting only after the
/// drop (so the writes are still in flight when the stream is dropped): 5 bytes, 256 KiB
/// (once 0 bytes and a clean end) and 1 MiB (once 32 KiB) all arrive, then the end; from the
/// server's end and from the client's.
#[test]
fn write_then_drop_delivers_everything_to_a_reader_that_starts_after_the_drop() {
    if role().is_some() {
        return;
    }
    run(async {
        for len in [5, 256 * 1024, 1024 * 1024] {
            for server_writes in [true, false] {
                let name = unique_name("writedrop");
                let listener = Listener::bind(&name).unwrap();
                let client = connect_with(name.as_str(), &ConnectOptions::new())
                    .await
                    .unwrap();
                let server = listener.accept().await.unwrap();
                let data = pattern(len, 5);
                let (mut writer, mut reader) = if server_writes {
                    (server, client)
                } else {
                    (client, server)
                };
                writer.write_all(&data).await.unwrap();
                drop(writer);
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.unwrap();
                let who = if server_writes { "server" } else { "client" };
                assert_eq!(
                    got.len(),
                    len,
                    "{len} bytes written by the {who}, then dropped"
                );
                assert!(got == data, "{len} bytes from the {who} arrived changed");
            }
        }
    });
}

#[test]
fn drop_in_message_mode_delivers_every_message_then_the_end() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("dropmsgs");
        let listener = message_listener(&name);
        let sizes = [
            3 * 1024 * 1024,
            1,
            2 * 1024 * 1024 + 7,
            70_000,
            4 * 1024 * 1024,
        ];
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            for (i, &len) in sizes.iter().enumerate() {
                // write_all issues each message as one write and returns at once.
                conn.write_all(&pattern(len, i as u8)).await.unwrap();
            }
            drop(conn);
            listener
        });
        let mut c = message_client(&name).await;
        for (i, &len) in sizes.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let msg = c.recv_message().await.unwrap();
            let msg = msg.unwrap_or_else(|| panic!("message {i} was lost"));
            assert!(msg == pattern(len, i as u8), "message {i} differs");
        }
        assert_eq!(
            c.recv_message().await.unwrap(),
            None,
            "a dropped pipewright peer ends orderly"
        );
        let _listener = server.await.unwrap();
    });
}

#[test]
fn linger_limit_closes_the_instance_of_a_client_that_never_reads() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("linger");
        let opts = ListenerOptions::new()
            .backlog(1)
            .max_instances(1)
            .linger(Duration::from_millis(200));
        let listener = Listener::bind_with(&name, &opts).unwrap();
        let mut c1 = connect_with(name.as_str(), &ConnectOptions::new())
            .await
            .unwrap();
        let mut s1 = listener.accept().await.unwrap();
        // Far more than the pipe's 64 KiB buffer; the client does not read.
        s1.write_all(&pattern(2 * 1024 * 1024, 1)).await.unwrap();
        drop(s1);
        // The only instance is freed once the linger limit closes it: a new client gets in.
        let retry = ConnectOptions::new().timeout(Duration::from_secs(60));
        let mut c2 = connect_with(name.as_str(), &retry).await.unwrap();
        let mut s2 = listener.accept().await.unwrap();
        s2.write_all(b"second").await.unwrap();
        let mut b = [0u8; 6];
        c2.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"second");
        // The first client sees what was in the pipe, then the end (or an error), not a hang.
        let mut rest = Vec::new();
        let _ = c1.read_to_end(&mut rest).await;
        assert!(rest.len() < 2 * 1024 * 1024, "the writes were not cut off");
    });
}

#[test]
fn shutdown_closes_without_discarding_what_is_in_the_pipe() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("closeread");
        let listener = Listener::bind(&name).unwrap();
        let mut c = connect_with(name.as_str(), &ConnectOptions::new())
            .await
            .unwrap();
        let mut s = listener.accept().await.unwrap();
        // Fits the pipe buffer: the write completes before the client reads anything.
        let data = pattern(32 * 1024, 5);
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        // Only now does the client read: what was in the pipe survives our CloseHandle.
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    });
}

#[test]
fn shutdown_of_600_connections_whose_clients_stop_reading_is_bounded() {
    if role().is_some() {
        return;
    }
    run(async {
        const CONNECTIONS: usize = 600;
        let name = unique_name("stall600");
        let opts = ListenerOptions::new()
            .backlog(16)
            .linger(Duration::from_millis(300));
        let listener = Arc::new(Listener::bind_with(&name, &opts).unwrap());
        let shut = Arc::new(AtomicUsize::new(0));
        let timed_out = Arc::new(AtomicUsize::new(0));
        let server = {
            let (listener, shut) = (listener.clone(), shut.clone());
            let timed_out = timed_out.clone();
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..CONNECTIONS {
                    let mut conn = listener.accept().await.unwrap();
                    let (shut, timed_out) = (shut.clone(), timed_out.clone());
                    tasks.push(tokio::spawn(async move {
                        // More than the pipe buffer: the client never reads it.
                        conn.write_all(&[7u8; 256 * 1024]).await.unwrap();
                        match conn.shutdown().await {
                            Ok(()) => {}
                            Err(e) => {
                                timed_out.fetch_add(1, Ordering::SeqCst);
                                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                                assert!(e.to_string().contains("linger"), "{e}");
                            }
                        }
                        shut.fetch_add(1, Ordering::SeqCst);
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        };
        let retry = ConnectOptions::new().timeout(Duration::from_secs(60));
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            // Connected, and never reading.
            clients.push(connect_with(name.as_str(), &retry).await.unwrap());
        }
        tokio::time::timeout(Duration::from_secs(100), server)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {CONNECTIONS} shutdowns returned",
                    shut.load(Ordering::SeqCst)
                )
            })
            .unwrap();
        eprintln!(
            "{CONNECTIONS} shutdowns returned; {} hit the linger limit",
            timed_out.load(Ordering::SeqCst)
        );
        drop(clients);
        // The listener still accepts and serves.
        let mut c = connect_with(name.as_str(), &retry).await.unwrap();
        let mut s = listener.accept().await.unwrap();
        c.write_all(b"still here").await.unwrap();
        let mut b = [0u8; 10];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"still here");
    });
}

#[test]
fn close_write_ends_our_messages_and_the_answer_still_arrives() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("halfclose");
        let listener = message_listener(&name);
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let req = conn.recv_message().await.unwrap().expect("the request");
            assert_eq!(conn.recv_message().await.unwrap(), None, "orderly end");
            conn.send_message(&[req.as_slice(), b" answered"].concat())
                .await
                .unwrap();
            drop(conn);
        });
        let mut c = message_client(&name).await;
        c.send_message(b"request").await.unwrap();
        c.close_write().await.unwrap();
        // A second close_write does nothing.
        c.close_write().await.unwrap();
        let answer = c.recv_message().await.unwrap();
        assert_eq!(answer.as_deref(), Some(&b"request answered"[..]));
        assert_eq!(c.recv_message().await.unwrap(), None);
        server.await.unwrap();
    });
}

#[test]
fn sends_after_close_write_fail_with_closed() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("afterclose");
        let listener = message_listener(&name);
        let mut c = message_client(&name).await;
        let _s = listener.accept().await.unwrap();
        c.close_write().await.unwrap();
        let err = c.send_message(b"late").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
        assert!(
            err.to_string()
                .contains("the write half was closed with close_write"),
            "{err}"
        );
        let io = c.write_all(b"late too").await.unwrap_err();
        assert_eq!(pipewright::Error::from(io).kind(), ErrorKind::Closed);

        // An empty message is exactly close_write.
        let mut c2 = message_client(&name).await;
        let mut s2 = listener.accept().await.unwrap();
        c2.send_message(b"").await.unwrap();
        assert_eq!(s2.recv_message().await.unwrap(), None);
        let err = c2
            .send_message(b"after the empty message")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed, "{err}");

        // A byte pipe has no half-close.
        let bname = unique_name("bytehalf");
        let bl = Listener::bind(&bname).unwrap();
        let mut b = connect_with(bname.as_str(), &ConnectOptions::new())
            .await
            .unwrap();
        let _bs = bl.accept().await.unwrap();
        let err = b.close_write().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("message mode"), "{err}");
        assert!(err.to_string().contains("shutdown()"), "{err}");
    });
}

#[test]
fn a_server_that_drops_is_the_orderly_end() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("dropend");
        let listener = message_listener(&name);
        let mut c = message_client(&name).await;
        let mut s = listener.accept().await.unwrap();
        s.send_message(b"bye").await.unwrap();
        drop(s);
        assert_eq!(
            c.recv_message().await.unwrap().as_deref(),
            Some(&b"bye"[..])
        );
        assert_eq!(c.recv_message().await.unwrap(), None);
        // AsyncRead: the orderly end is 0 bytes.
        let mut c2 = message_client(&name).await;
        drop(listener.accept().await.unwrap());
        let mut buf = [0u8; 8];
        assert_eq!(c2.read(&mut buf).await.unwrap(), 0);
    });
}

#[test]
fn a_killed_server_is_disconnected_not_the_end() {
    if role().is_some() {
        return;
    }
    run(async {
        for reader in ["recv_message", "AsyncRead"] {
            let name = unique_name("killed");
            let mut child = spawn_role("child_entry", "message-then-hang", &name);
            let copts = ConnectOptions::new()
                .mode(PipeMode::Message)
                .timeout(Duration::from_secs(60));
            let mut c = connect_with(name.as_str(), &copts).await.unwrap();
            let hello = c.recv_message().await.unwrap();
            assert_eq!(hello.as_deref(), Some(&b"hello from the child"[..]));
            child.kill().unwrap();
            child.wait().unwrap();
            if reader == "recv_message" {
                let err = c.recv_message().await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
                assert!(err.to_string().contains("without closing"), "{err}");
            } else {
                let mut buf = [0u8; 64];
                let err = c.read(&mut buf).await.unwrap_err();
                assert!(
                    matches!(
                        err.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ),
                    "{err}"
                );
                assert_eq!(pipewright::Error::from(err).kind(), ErrorKind::Disconnected);
            }
        }
    });
}

#[test]
fn drop_outside_a_runtime_delivers_and_does_not_panic() {
    if role().is_some() {
        return;
    }
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let name = unique_name("nort");
    // Two writes of 1 MiB: write_all returns once both are issued, before anyone reads.
    let data = pattern(2 * 1024 * 1024, 11);
    let (client, server, listener) = rt().block_on(async {
        let listener = Listener::bind(&name).unwrap();
        let c = connect_with(name.as_str(), &ConnectOptions::new())
            .await
            .unwrap();
        let mut s = listener.accept().await.unwrap();
        s.write_all(&data).await.unwrap();
        (c, s, listener)
    });
    // No runtime on this thread, and the runtime that made the stream is gone.
    std::thread::spawn(move || drop(server)).join().unwrap();
    let mut client = client;
    let got = rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), read_slowly(&mut client))
            .await
            .expect("reading timed out")
            .unwrap()
    });
    assert!(
        got == data,
        "got {} of {} bytes after a drop outside a runtime",
        got.len(),
        data.len()
    );
    drop(listener);
}
