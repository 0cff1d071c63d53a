//! Helpers shared by the session test files: temporary run directories, a
//! test server, configurations and a watchdog.
#![allow(dead_code)]

use pipewright_netipc::codec::{increment, string_reverse};
use pipewright_netipc::endpoint::{self, DefaultTransport};
use pipewright_netipc::handshake::EndpointConfig;
use pipewright_netipc::header::{method, TransportStatus};
use pipewright_netipc::session::{Server, ServerConfig, ServerSession, Session, SessionError};
use pipewright_netipc::transport::{PacketListener, PacketTransport};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const TOKEN: u64 = 0xDEAD_BEEF_CAFE_BABE;
/// Test-only method: echo the payload.
pub const ECHO: u16 = 0x7f00;
/// A hang fails the test after this long.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs a test body, failing it if it hangs.
pub async fn watchdog<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(WATCHDOG, body)
        .await
        .expect("test hung past the watchdog")
}

/// A unique run directory (pid, counter and clock), removed on drop. On
/// Windows it also makes the pipe name unique, since the name hashes it.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "nipc-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn big_config(packet_size: u32) -> EndpointConfig {
    EndpointConfig {
        auth_token: TOKEN,
        max_request_payload_bytes: 4 << 20,
        max_request_batch_items: 64,
        max_response_payload_bytes: 4 << 20,
        max_response_batch_items: 64,
        packet_size,
        ..EndpointConfig::default()
    }
}

pub fn server_config(packet_size: u32) -> ServerConfig {
    ServerConfig {
        endpoint: big_config(packet_size),
        ..ServerConfig::default()
    }
}

pub fn apply(code: u16, item: &[u8]) -> Option<Vec<u8>> {
    match code {
        method::INCREMENT => increment::decode(item)
            .ok()
            .map(|v| increment::encode(v.wrapping_add(1)).to_vec()),
        method::STRING_REVERSE => string_reverse::decode(item).ok().and_then(|s| {
            let mut r = s.to_vec();
            r.reverse();
            string_reverse::encode(&r).ok()
        }),
        ECHO => Some(item.to_vec()),
        _ => None,
    }
}

/// Serves one session in order until the client leaves.
pub async fn serve<T: PacketTransport>(mut s: ServerSession<T>) -> Result<(), SessionError> {
    while let Some(req) = s.recv_request().await? {
        if ![method::INCREMENT, method::STRING_REVERSE, ECHO].contains(&req.header.code) {
            s.send_response(&req.header, TransportStatus::UNSUPPORTED, &[])
                .await?;
            continue;
        }
        let items = req.items()?;
        let out: Option<Vec<Vec<u8>>> = items.iter().map(|i| apply(req.header.code, i)).collect();
        match out {
            None => {
                s.send_response(&req.header, TransportStatus::INTERNAL_ERROR, &[])
                    .await?
            }
            Some(out) if req.header.is_batch() => {
                let refs: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
                s.send_batch_response(&req.header, &refs).await?
            }
            Some(out) => {
                s.send_response(&req.header, TransportStatus::OK, &out[0])
                    .await?
            }
        }
    }
    Ok(())
}

/// Binds a server that serves `n` sessions and returns their handshake results.
pub fn spawn_server(
    dir: &Path,
    cfg: ServerConfig,
    n: usize,
) -> tokio::task::JoinHandle<Vec<Result<u64, SessionError>>> {
    let server = Server::bind(dir, "svc", cfg).unwrap();
    spawn_server_on(server, n)
}

/// Serves `n` sessions of an existing server.
pub fn spawn_server_on<L: PacketListener>(
    server: Server<L>,
    n: usize,
) -> tokio::task::JoinHandle<Vec<Result<u64, SessionError>>> {
    tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..n {
            match server.accept().await {
                Ok(s) => {
                    results.push(Ok(s.negotiated().session_id));
                    tokio::spawn(serve(s));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        results
    })
}

pub async fn connect(
    dir: &Path,
    cfg: EndpointConfig,
) -> Result<Session<DefaultTransport>, SessionError> {
    Session::connect(dir, "svc", &cfg).await
}

/// A connected (client, server) pair of the platform's baseline transport.
pub async fn transport_pair() -> (DefaultTransport, DefaultTransport) {
    let dir = TempDir::new();
    let listener = endpoint::bind(dir.path(), "pair", 0).unwrap();
    let (client, server) = tokio::join!(
        endpoint::connect(dir.path(), "pair", 0),
        PacketListener::accept(&listener)
    );
    (client.unwrap(), server.unwrap())
}
