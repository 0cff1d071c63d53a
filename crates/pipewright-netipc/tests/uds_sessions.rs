//! UDS-specific session tests: socket pairs, truncation, listener files.
//! The transport-independent session tests are in `sessions.rs`.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use pipewright_netipc::handshake::{build_hello, EndpointConfig};
use pipewright_netipc::header::Header;
use pipewright_netipc::session::{Server, ServerConfig, ServerSession, Session, SessionError};
use pipewright_netipc::transport::PacketTransport;
use pipewright_netipc::uds::{BindError, UdsTransport};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

#[tokio::test]
async fn one_mib_over_socket_pair() {
    let (a, b) = UdsTransport::pair().unwrap();
    let cfg = server_config(0);
    let srv = tokio::spawn(async move { serve(ServerSession::handshake(b, &cfg, 1).await?).await });
    let mut c = Session::handshake(a, &big_config(512)).await.unwrap();
    let payload = vec![0x5au8; 1 << 20];
    assert!(c.call(ECHO, &payload).await.unwrap() == payload);
    drop(c);
    srv.await.unwrap().unwrap();
}

#[tokio::test]
async fn listener_files() {
    let dir = TempDir::new();
    let path = dir.path().join("svc.sock");
    {
        let server = Server::bind(dir.path(), "svc", ServerConfig::default()).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A live listener is never replaced.
        let again = Server::bind(dir.path(), "svc", ServerConfig::default());
        assert!(
            matches!(again, Err(SessionError::Bind(BindError::AddrInUse { .. }))),
            "{again:?}"
        );
        assert_eq!(server.path(), path);
    }
    assert!(!path.exists(), "socket removed on drop");

    // A dead socket is recovered.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let server = Server::bind(dir.path(), "svc", server_config(0)).unwrap();
    let task = spawn_accept_one(server);
    connect(dir.path(), big_config(0)).await.unwrap();
    task.await.unwrap();

    // A non-socket is never removed.
    std::fs::write(&path, b"precious").unwrap();
    let r = Server::bind(dir.path(), "svc", ServerConfig::default());
    assert!(
        matches!(r, Err(SessionError::Bind(BindError::NotASocket { .. }))),
        "{r:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let r = Server::bind(dir.path(), "svc", ServerConfig::default());
    assert!(
        matches!(r, Err(SessionError::Bind(BindError::NotASocket { .. }))),
        "{r:?}"
    );
    assert!(path.is_dir());

    // Invalid service names are rejected, not sanitised.
    let r = Server::bind(dir.path(), "../escape", ServerConfig::default());
    assert!(matches!(r, Err(SessionError::Naming(_))), "{r:?}");
    let r = Session::connect(dir.path(), "a b", &EndpointConfig::default()).await;
    assert!(matches!(r, Err(SessionError::Naming(_))), "{r:?}");
}

fn spawn_accept_one(server: Server) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let s = server.accept().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), serve(s))
            .await
            .unwrap()
            .unwrap();
    })
}

#[tokio::test]
async fn oversized_packet_is_an_error_not_truncation() {
    let (mut a, mut b) = UdsTransport::pair().unwrap();
    a.send_packet(&[&[1u8; 100]]).await.unwrap();
    let mut small = [0u8; 64];
    let e = b.recv_packet(&mut small).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    a.send_packet(&[b"abc", b"def"]).await.unwrap();
    assert_eq!(b.recv_packet(&mut small).await.unwrap(), 6);
    assert_eq!(&small[..6], b"abcdef");
}

/// A zero-length SEQPACKET packet is a packet, not the peer closing: the
/// transport hands it over as 0 bytes and the next packet still arrives; only
/// a real close is the end. A session that receives one fails with a protocol
/// error (a truncated header), not as "closed".
#[tokio::test]
async fn zero_length_packet_is_not_the_end() {
    watchdog(async {
        let (mut a, mut b) = UdsTransport::pair().unwrap();
        a.send_packet(&[]).await.unwrap();
        a.send_packet(&[b"real"]).await.unwrap();
        a.send_packet(&[&[]]).await.unwrap();
        a.send_packet(&[b"after"]).await.unwrap();
        // The zero-length packet, then the peer closes with a real packet
        // still queued behind another zero-length one.
        a.send_packet(&[]).await.unwrap();
        a.send_packet(&[b"last"]).await.unwrap();
        drop(a);
        let mut buf = [0u8; 128];
        for expected in [&b""[..], b"real", b"", b"after", b"", b"last"] {
            let n = b.recv_packet(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], expected);
        }
        let end = b.recv_packet(&mut buf).await.unwrap_err();
        assert_eq!(end.kind(), std::io::ErrorKind::UnexpectedEof, "{end}");

        // Session level: a zero-length packet after the handshake is a
        // malformed message (the session fails), not the client leaving.
        let (mut a, b) = UdsTransport::pair().unwrap();
        let cfg = server_config(0);
        let srv = tokio::spawn(async move {
            let mut s = ServerSession::handshake(b, &cfg, 1).await.unwrap();
            s.recv_request().await
        });
        let (_, hello) = build_hello(&big_config(4096).resolved(4096));
        a.send_packet(&[&hello]).await.unwrap();
        a.recv_packet(&mut buf).await.unwrap();
        a.send_packet(&[]).await.unwrap();
        let request = Header::request(ECHO, 1, 4);
        a.send_packet(&[&request.encode(), b"ping"]).await.unwrap();
        let got = srv.await.unwrap();
        drop(a);
        assert!(
            matches!(got, Err(SessionError::Header(_))),
            "a zero-length packet must be a protocol error, got {got:?}"
        );
    })
    .await
}
