//! Ending a stream: `close_write` half-closes and the answer still arrives; writes after it
//! fail with `Closed`; in message mode a peer that ends orderly (close_write, shutdown, drop)
//! reads as `Ok(None)` and a peer process that is killed reads as `Disconnected`.
//!
//! The test binary re-runs itself as the child (see `common::spawn_role`).

mod common;

use std::io;

use common::{pair, role, run, spawn_role, unique_name};
use pipewright::{
    connect_with, ConnectOptions, ErrorKind, Listener, ListenerOptions, PipeMode, PipeStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODES: [PipeMode; 2] = [PipeMode::Byte, PipeMode::Message];

/// Whether `close_write` exists for `mode` here (a Windows byte pipe has no half-close).
fn half_close_exists(mode: PipeMode) -> bool {
    mode == PipeMode::Message || cfg!(unix)
}

/// Reads everything up to the orderly end, as whole messages.
async fn all_messages(s: &mut PipeStream) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(m) = s.recv_message().await.unwrap() {
        got.push(m);
    }
    got
}

/// The child roles. Does nothing in the parent.
#[test]
fn child_entry() {
    let Some((role, pipe)) = role() else {
        return;
    };
    match role.as_str() {
        // Connect in message mode, send one message, then wait to be killed.
        "send-then-wait" => run(async move {
            let options = ConnectOptions::new().mode(PipeMode::Message);
            let mut c = connect_with(pipe.as_str(), &options).await.unwrap();
            c.send_message(b"alive").await.unwrap();
            let _ = c.recv_message().await;
            std::process::exit(0);
        }),
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn close_write_then_the_answer_still_arrives() {
    if role().is_some() {
        return;
    }
    run(async {
        for mode in MODES {
            let (_l, mut server, mut client) = pair("cw-answer", mode).await;
            if !half_close_exists(mode) {
                let err = client.close_write().await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
                assert!(err.to_string().contains("message mode"), "{err}");
                continue;
            }
            client.send_message(b"question").await.unwrap();
            client.close_write().await.unwrap();
            // The server reads the question, then the orderly end.
            let mut asked = Vec::new();
            while let Some(m) = server.recv_message().await.unwrap() {
                asked.extend_from_slice(&m);
            }
            assert_eq!(asked, b"question", "{mode:?}");
            // Still open the other way: the answer arrives, then the server's own end.
            server.send_message(b"answer").await.unwrap();
            server.close_write().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"answer", "{mode:?}");
            // Ends stay ends.
            assert!(client.recv_message().await.unwrap().is_none(), "{mode:?}");
            assert!(server.recv_message().await.unwrap().is_none(), "{mode:?}");
        }
    });
}

#[test]
fn writes_after_close_write_fail_with_closed() {
    if role().is_some() {
        return;
    }
    run(async {
        for mode in MODES {
            if !half_close_exists(mode) {
                continue;
            }
            // close_write, shutdown() and (message mode) an empty message all enter the
            // closed-write state.
            for how in ["close_write", "shutdown", "empty message"] {
                if how == "empty message" && mode == PipeMode::Byte {
                    continue;
                }
                let (_l, mut server, mut client) = pair("cw-closed", mode).await;
                match how {
                    "close_write" => client.close_write().await.unwrap(),
                    "shutdown" => client.shutdown().await.unwrap(),
                    _ => client.send_message(b"").await.unwrap(),
                }
                // Again is fine (nothing more is sent).
                client.close_write().await.unwrap();
                let err = client.send_message(b"late").await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Closed, "{mode:?} {how}: {err}");
                let text = err.to_string();
                assert!(
                    text.contains("close_write") || text.contains("shut down"),
                    "the error names the cause: {text}"
                );
                let io_err = client.write_all(b"late").await.unwrap_err();
                let back = pipewright::Error::from(io_err);
                assert_eq!(back.kind(), ErrorKind::Closed, "{mode:?} {how}: {back}");
                // The peer sees the orderly end and nothing after it.
                assert_eq!(
                    all_messages(&mut server).await,
                    Vec::<Vec<u8>>::new(),
                    "{mode:?} {how}"
                );
                // Our reading half still works.
                server.send_message(b"still here").await.unwrap();
                let got = client.recv_message().await.unwrap().unwrap();
                assert_eq!(got, b"still here", "{mode:?} {how}");
            }
        }
    });
}

#[test]
fn a_dropped_peer_ends_orderly() {
    if role().is_some() {
        return;
    }
    run(async {
        for mode in MODES {
            // The client drops, with and without data still to be read.
            for data in [&b""[..], b"last words"] {
                let (_l, mut server, mut client) = pair("drop", mode).await;
                if !data.is_empty() {
                    client.send_message(data).await.unwrap();
                }
                drop(client);
                let got = all_messages(&mut server).await.concat();
                assert_eq!(got, data, "{mode:?}");
                // AsyncRead agrees: 0 bytes, no error.
                let mut rest = Vec::new();
                assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
            }
            // The server drops.
            let (_l, server, mut client) = pair("drop-server", mode).await;
            drop(server);
            assert!(client.recv_message().await.unwrap().is_none(), "{mode:?}");
        }
    });
}

#[test]
fn a_killed_peer_is_disconnected_in_message_mode() {
    if role().is_some() {
        return;
    }
    run(async {
        for use_async_read in [false, true] {
            let name = unique_name("killed");
            let options = ListenerOptions::new().mode(PipeMode::Message);
            let listener = Listener::bind_with(&name, &options).unwrap();
            let mut child = spawn_role("child_entry", "send-then-wait", &name);
            let mut conn = listener.accept().await.unwrap();
            let first = conn.recv_message().await.unwrap();
            assert_eq!(first.as_deref(), Some(&b"alive"[..]));
            child.kill().unwrap();
            tokio::task::spawn_blocking(move || child.wait())
                .await
                .unwrap()
                .unwrap();
            if use_async_read {
                let mut buf = [0u8; 64];
                let err = conn.read(&mut buf).await.unwrap_err();
                assert_ne!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
                let back = pipewright::Error::from(err);
                assert_eq!(back.kind(), ErrorKind::Disconnected, "{back}");
            } else {
                let err = conn.recv_message().await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
                assert!(err.to_string().contains("without closing"), "{err}");
                // And it stays so.
                let again = conn.recv_message().await.unwrap_err();
                assert_eq!(again.kind(), ErrorKind::Disconnected, "{again}");
            }
        }
    });
}

/// A peer that is not pipewright and closes without the end-of-stream frame (Unix: a plain
/// socket) has vanished, not ended.
#[cfg(unix)]
#[test]
fn a_foreign_peer_closing_without_the_marker_is_disconnected() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("foreign");
        let options = ListenerOptions::new().mode(PipeMode::Message);
        let listener = Listener::bind_with(&name, &options).unwrap();
        let path = pipewright::PipeName::parse(&name).unwrap().unix_path();
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut conn = listener.accept().await.unwrap();
        raw.write_all(&[3, 0, 0, 0, b'a', b'b', b'c'])
            .await
            .unwrap();
        drop(raw);
        assert_eq!(conn.recv_message().await.unwrap().unwrap(), b"abc");
        let err = conn.recv_message().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    });
}

/// A server whose peer never reads: it writes until its writes stop being taken (the pipe's
/// or socket's buffer is full), then drops the stream. The drop does not wait for the peer,
/// the listener serves the next client at once, and when the peer finally reads it gets every
/// byte a write reported as written, then the end of stream.
#[test]
fn a_server_whose_peer_never_reads_drops_without_waiting_and_loses_nothing() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("never-reads");
        let listener = Listener::bind(&name).unwrap();
        let mut idle = connect_with(&name, &ConnectOptions::new()).await.unwrap();
        let mut server = listener.accept().await.unwrap();
        let block = common::pattern(64 * 1024, 9);
        let mut sent = Vec::new();
        // Writes are taken until the buffers are full; then a write waits: end there.
        while let Ok(r) =
            tokio::time::timeout(std::time::Duration::from_millis(500), server.write(&block)).await
        {
            let n = r.unwrap();
            sent.extend_from_slice(&block[..n]);
            assert!(
                sent.len() < 512 * 1024 * 1024,
                "writes never stopped being taken"
            );
        }
        assert!(!sent.is_empty());
        drop(server);

        // The listener is not held up by the connection left behind.
        let mut next = connect_with(&name, &ConnectOptions::new()).await.unwrap();
        let mut s2 = listener.accept().await.unwrap();
        s2.write_all(b"next").await.unwrap();
        let mut b = [0u8; 4];
        next.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"next");

        let mut got = Vec::new();
        idle.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), sent.len(), "bytes reported written were lost");
        assert!(got == sent, "the bytes arrived changed");
    });
}
