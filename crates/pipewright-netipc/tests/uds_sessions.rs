//! UDS-specific session tests: socket pairs, truncation, listener files.
//! The transport-independent session tests are in `sessions.rs`.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use pipewright_netipc::handshake::EndpointConfig;
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
