//! Helpers shared by the integration tests: unique names, a watchdog, servers and raw frames.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pipewright::{Listener, PipeStream};
use pipewright_rpc::{Router, Server};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How a test's server serves its connections: as tasks (0 connection threads), then each
/// on a thread of its own (up to 8).
pub const SERVED_ON: [usize; 2] = [0, 8];

/// A pipe name no other test, run or process uses.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pw-rpc-{tag}-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Fails the test instead of hanging when `fut` takes more than a minute.
pub async fn watchdog<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("watchdog: the test hung for 60 s")
}

/// A running server and the means to stop it.
pub struct RunningServer {
    pub name: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<pipewright::Result<()>>,
}

impl RunningServer {
    /// Binds a fresh name and serves `server` on it.
    pub fn start(tag: &str, server: Server) -> RunningServer {
        let name = unique_name(tag);
        Self::start_on(&name, server)
    }

    /// Serves `server` on `name`.
    pub fn start_on(name: &str, server: Server) -> RunningServer {
        let listener = Listener::bind(name).expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_shutdown(listener, async move {
            let _ = stopped.await;
        }));
        RunningServer {
            name: name.to_owned(),
            stop: Some(stop),
            task,
        }
    }

    /// Shuts down gracefully and waits until the server has returned.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server result");
    }
}

#[derive(Debug, Deserialize)]
pub struct Sleep {
    pub ms: u64,
    #[serde(default)]
    pub tag: u64,
}

/// A router with the demo service plus `Sleep {ms, tag}` (answers `tag` after `ms`),
/// `Fail {}` (answers Err), `Panic {}`, `Big {len}` (a string of `len` bytes), and a gate:
/// `Wait` answers only after some `Open` has run.
pub fn test_router() -> Router {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let opener = gate.clone();
    pipewright_rpc::demo::router()
        .handle("Wait", move |_: serde_json::Value| {
            let gate = gate.clone();
            async move {
                let permit = gate.acquire().await.map_err(|e| e.to_string())?;
                permit.forget();
                Ok::<_, String>("waited")
            }
        })
        .handle("Open", move |_: serde_json::Value| {
            opener.add_permits(1);
            async { Ok::<_, String>("opened") }
        })
        .handle("Sleep", |p: Sleep| async move {
            tokio::time::sleep(Duration::from_millis(p.ms)).await;
            Ok::<_, String>(p.tag)
        })
        .handle("Fail", |_: serde_json::Value| async {
            Err::<(), _>("the handler refused: Fail always fails")
        })
        .handle("Panic", |_: serde_json::Value| async {
            if std::process::id() != 0 {
                panic!("handler panic on purpose");
            }
            Ok::<(), String>(())
        })
        .handle("Big", |p: serde_json::Value| async move {
            let len = p["len"].as_u64().unwrap_or(0) as usize;
            Ok::<_, String>("x".repeat(len))
        })
}

/// Writes one frame with `body`.
pub async fn send_frame(conn: &mut PipeStream, body: &[u8]) {
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body);
    conn.write_all(&frame).await.expect("write frame");
    conn.flush().await.expect("flush");
}

/// Reads one frame's body, or `None` at a clean end of stream.
pub async fn recv_frame(conn: &mut PipeStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    match conn.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return None,
        Err(e) => panic!("reading a frame header: {e}"),
    }
    let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
    conn.read_exact(&mut body).await.expect("frame body");
    Some(body)
}

/// Sends `body` and returns the answer as JSON.
pub async fn exchange(conn: &mut PipeStream, body: &[u8]) -> serde_json::Value {
    send_frame(conn, body).await;
    let answer = recv_frame(conn).await.expect("an answer");
    serde_json::from_slice(&answer).expect("the answer is JSON")
}
