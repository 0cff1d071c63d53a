//! Shared pieces of the integration tests: unique pipe names, a watchdog, and a real test
//! service served on pipes and on TCP.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pipewright::Peer;
use pipewright_http::ws;

pub type TestBody = BoxBody<Bytes, hyper::Error>;

/// A pipe name no other test or run uses.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pw-http-{tag}-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Fails the test instead of hanging.
pub async fn watchdog<F: Future>(secs: u64, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(out) => out,
        Err(_) => panic!("watchdog: the test did not finish within {secs} s"),
    }
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(Full::new(body.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// The test service:
/// - `/echo` returns the request body;
/// - `/peer` returns the client's pid from the request extension;
/// - `/headers` returns the request headers, one `name: value` per line;
/// - `/slow?ms=N` answers after N ms;
/// - `/ws` upgrades to a WebSocket that echoes data messages and closes with the code a
///   text message `close:CODE` asks for;
/// - anything else returns `METHOD PATH VERSION`.
pub async fn handle(mut req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match path.as_str() {
        "/echo" => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, e.to_string())),
            };
            text(StatusCode::OK, body)
        }
        "/peer" => {
            let pid = req.extensions().get::<Peer>().and_then(|p| p.pid);
            text(StatusCode::OK, format!("{pid:?}"))
        }
        "/headers" => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            text(StatusCode::OK, out)
        }
        "/slow" => {
            let ms = query_u64(&req, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slept {ms}"))
        }
        "/ws" => match ws::accept::<_, TestBody>(&mut req, None) {
            Ok((response, socket)) => {
                tokio::spawn(async move {
                    if let Ok(socket) = socket.await {
                        ws_echo(socket).await;
                    }
                });
                response
            }
            Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        },
        _ => text(
            StatusCode::OK,
            format!("{} {} {:?}", req.method(), req.uri().path(), req.version()),
        ),
    })
}

/// Echoes binary and text messages; `close:CODE` closes with that code.
pub async fn ws_echo<S>(mut socket: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = socket.next().await {
        match msg {
            ws::Message::Text(t) if t.starts_with("close:") => {
                let code: u16 = t["close:".len()..].parse().unwrap_or(1000);
                let frame = ws::CloseFrame {
                    code: ws::CloseCode::from(code),
                    reason: ws::Utf8Bytes::from_static("asked to close"),
                };
                let _ = socket.close(Some(frame)).await;
                // Drain until the peer's close arrives.
                while let Some(Ok(_)) = socket.next().await {}
                return;
            }
            m @ (ws::Message::Text(_) | ws::Message::Binary(_)) => {
                let Ok(()) = socket.send(m).await else { return };
            }
            _ => {}
        }
    }
}

/// Serves [`handle`] on a fresh pipe; returns its name. The server runs until the runtime ends.
pub fn serve_test_service_on_pipe(tag: &str) -> String {
    let name = unique_name(tag);
    let listener = pipewright::Listener::bind(name.as_str()).expect("bind the test pipe");
    tokio::spawn(async move {
        pipewright_http::Server::new()
            .serve(listener, service_fn(handle))
            .await
            .expect("serve");
    });
    name
}

/// A TCP server on 127.0.0.1 running [`handle`], counting its open connections.
#[derive(Debug, Clone)]
pub struct TcpUpstream {
    pub port: u16,
    pub open: Arc<AtomicUsize>,
    pub accepted: Arc<AtomicUsize>,
}

pub async fn serve_test_service_on_tcp() -> TcpUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind TCP");
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let upstream = TcpUpstream {
        port,
        open: open.clone(),
        accepted: accepted.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            open.fetch_add(1, Ordering::SeqCst);
            accepted.fetch_add(1, Ordering::SeqCst);
            let open = open.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(handle))
                    .await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    upstream
}

/// Waits (up to `secs`) until `cond` holds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// The path of an example binary of this package (cargo builds examples with the tests).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let profile = deps.parent().expect("profile dir");
    profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Environment variables that turn a test binary into a child making one GET request (see
/// [`get_from_child`]).
pub const CHILD_GET_PIPE_ENV: &str = "PIPEWRIGHT_HTTP_TEST_GET_PIPE";
pub const CHILD_GET_PATH_ENV: &str = "PIPEWRIGHT_HTTP_TEST_GET_PATH";

/// What a child process got for its request.
#[derive(Debug)]
pub struct ChildGet {
    /// The child's process id, as the parent started it.
    pub pid: u32,
    pub status: u16,
    /// The server's pid as the child's connection saw it (the response's `Peer`).
    pub server_pid: Option<u32>,
    pub body: String,
}

/// The child's side of [`get_from_child`]: when the variables are set, makes the request,
/// prints `CHILD-GET <own pid> <status> <server pid>`, the body between marker lines, and
/// exits. Does nothing in the parent. Call it from a `#[test]` of the test file.
pub fn child_get_role() {
    let (Ok(pipe), Ok(path)) = (
        std::env::var(CHILD_GET_PIPE_ENV),
        std::env::var(CHILD_GET_PATH_ENV),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(async move {
        let client = pipewright_http::client::<http_body_util::Empty<Bytes>>();
        let uri = pipewright_http::Endpoint::parse(&pipe)
            .expect("pipe name")
            .uri(&path)
            .expect("path");
        let resp = match watchdog(60, client.get(uri)).await {
            Ok(resp) => resp,
            Err(e) => {
                eprintln!("child request failed: {e}");
                return 1;
            }
        };
        let status = resp.status().as_u16();
        let server_pid = resp.extensions().get::<Peer>().and_then(|p| p.pid);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        println!("CHILD-GET {} {status} {server_pid:?}", std::process::id());
        println!("CHILD-BODY-START");
        println!("{}", String::from_utf8_lossy(&body));
        println!("CHILD-BODY-END");
        0
    });
    std::process::exit(code);
}

/// Runs this test binary again as a child process (its `#[test] fn test` calls
/// [`child_get_role`]) that sends `GET path` to the HTTP server on `pipe`, so the server sees
/// a client in another process.
pub async fn get_from_child(test: &str, pipe: &str, path: &str) -> ChildGet {
    let exe = std::env::current_exe().expect("current exe");
    let child = tokio::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_GET_PIPE_ENV, pipe)
        .env(CHILD_GET_PATH_ENV, path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child");
    let pid = child.id().expect("the child's pid");
    let out = child.wait_with_output().await.expect("wait for the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    // The test harness may have printed `test NAME ... ` on the same line first.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-GET ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the child printed no result: {stdout}\n{stderr}"));
    let mut fields = line.split(' ');
    let reported: u32 = fields.next().unwrap().parse().unwrap();
    assert_eq!(reported, pid, "the child is the process this test started");
    let status: u16 = fields.next().unwrap().parse().unwrap();
    let server_pid = match fields.next().unwrap() {
        "None" => None,
        some => Some(
            some.trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .unwrap(),
        ),
    };
    let start = stdout.find("CHILD-BODY-START\n").expect("body start") + "CHILD-BODY-START\n".len();
    let end = stdout.rfind("\nCHILD-BODY-END").expect("body end");
    ChildGet {
        pid,
        status,
        server_pid,
        body: stdout[start..end].to_string(),
    }
}

/// An example server process, killed when dropped.
pub struct ExampleServer(std::process::Child);

impl ExampleServer {
    /// Starts the example with `args` and waits (at most 60 s) for its `ready` line.
    pub fn start(example: &str, args: &[&str]) -> ExampleServer {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(example_binary(example))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {example} example: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let server = ExampleServer(child);
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("watchdog: {example} printed no ready line within 60 s"));
        assert!(line.starts_with("ready "), "ready line: {line:?}");
        server
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
