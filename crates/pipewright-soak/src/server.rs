//! `pipewright-soak serve TAG`: the server process. It serves every target at once, samples
//! its own memory and handles, and answers the orchestrator on stdin/stdout:
//! - it prints `ready` once every server is bound;
//! - `sample` → `sample RSS PRIVATE HANDLES` (now);
//! - `settle START_HANDLES TOLERANCE SECONDS` → waits until its handle count is within the
//!   tolerance of the start (or the time is up) and one second more, then
//!   `end RSS PRIVATE HANDLES`,
//!   `peak RSS PRIVATE HANDLES` and `kinds START END` (open fds by kind on Linux);
//! - `quit` (or end of stdin) → stops every server, prints `bye PANICS ACCEPT_ERRORS`, exits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use pipewright::{ErrorKind, Listener, PipeName};
use pipewright_http::forward::{Forwarder, Upstream};
use pipewright_netipc::managed::{ManagedConfig, ManagedServer};
use pipewright_netipc::service::Echo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::names::Names;
use crate::proto;
use crate::sys::{self, Sample};

/// Panics seen in this process (the panic hook counts them).
pub static PANICS: AtomicU64 = AtomicU64::new(0);
static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// The HTTP test service: `POST /sum` answers the SHA-256 (hex) of the body, `POST /echo` the
/// body, `GET /gen?len=N&seed=S` the soak data stream `S` of `N` bytes.
async fn http_service(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        Ok(r)
    };
    match path.as_str() {
        "/sum" => {
            let mut body = req.into_body();
            let mut h = Sha256::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            h.update(d);
                        }
                    }
                    Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into()),
                }
            }
            reply(StatusCode::OK, proto::hex(&h.finalize()).into())
        }
        "/echo" => match req.into_body().collect().await {
            Ok(b) => reply(StatusCode::OK, b.to_bytes()),
            Err(e) => reply(StatusCode::BAD_REQUEST, e.to_string().into()),
        },
        "/gen" => {
            let get = |k: &str| {
                query.split('&').find_map(|kv| {
                    let (key, v) = kv.split_once('=')?;
                    (key == k).then(|| v.parse::<u64>().ok()).flatten()
                })
            };
            let (Some(len), Some(seed)) = (get("len"), get("seed")) else {
                return reply(StatusCode::BAD_REQUEST, "need len= and seed=".into());
            };
            let len = len.min(64 << 20);
            let mut out = Vec::with_capacity(len as usize);
            let mut d = proto::DataStream::new(seed, len);
            loop {
                let b = d.next_block();
                if b.is_empty() {
                    break;
                }
                out.extend_from_slice(b);
            }
            reply(StatusCode::OK, out.into())
        }
        _ => reply(StatusCode::NOT_FOUND, "unknown path".into()),
    }
}

async fn serve_echo(listener: Listener, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    tokio::spawn(async move {
                        let _ = proto::serve(stream).await;
                    });
                }
                Err(e) if e.kind() == ErrorKind::Closed => break,
                Err(e) => {
                    let n = ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed);
                    if n < 5 {
                        eprintln!("soak server: accept failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn max_sample(a: Sample, b: Sample) -> Sample {
    Sample {
        rss: a.rss.max(b.rss),
        private: a.private.max(b.private),
        handles: a.handles.max(b.handles),
    }
}

fn line(kind: &str, s: Sample) -> String {
    format!("{kind} {} {} {}", s.rss, s.private, s.handles)
}

pub async fn run(tag: &str) -> Result<(), String> {
    let names = Names::new(tag);
    let (stop_tx, stop_rx) = watch::channel(false);
    let bind = |name: &str| Listener::bind(name).map_err(|e| format!("bind {name}: {e}"));

    let echo = bind(&names.echo)?;
    let http = bind(&names.http)?;
    let fwd = bind(&names.fwd)?;
    let rpc = bind(&names.rpc)?;
    std::fs::create_dir_all(&names.netipc_dir)
        .map_err(|e| format!("create {}: {e}", names.netipc_dir.display()))?;
    let base = ManagedServer::bind(
        &names.netipc_dir,
        crate::names::NETIPC_BASE,
        netipc_config(crate::names::netipc_endpoint(false)),
        Echo,
    )
    .map_err(|e| format!("bind netipc {}: {e}", crate::names::NETIPC_BASE))?;
    let shm = ManagedServer::bind(
        &names.netipc_dir,
        crate::names::NETIPC_SHM,
        netipc_config(crate::names::netipc_endpoint(true)),
        Echo,
    )
    .map_err(|e| format!("bind netipc {}: {e}", crate::names::NETIPC_SHM))?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(serve_echo(echo, stop_rx.clone()));
    let s = stopped(stop_rx.clone());
    tasks.spawn(async move {
        let svc = service_fn(http_service);
        if let Err(e) = pipewright_http::Server::new()
            .serve_with_shutdown(http, svc, s)
            .await
        {
            eprintln!("soak server: http server failed: {e}");
        }
    });
    let upstream = PipeName::parse(&names.http).map_err(|e| e.to_string())?;
    // At most 2 idle upstream connections stay pooled (4 handles in this process), so the
    // end-of-run handle count is not the pool's 32 idle connections for 90 s.
    let forwarder = Forwarder::new(Upstream::Pipe(upstream)).max_idle_upstream(2);
    let s = stopped(stop_rx.clone());
    tasks.spawn(async move {
        if let Err(e) = pipewright_http::Server::new()
            .serve_with_shutdown(fwd, forwarder.service(), s)
            .await
        {
            eprintln!("soak server: forwarder failed: {e}");
        }
    });
    let router = pipewright_rpc::Router::new()
        .handle("Sum", |p: String| async move {
            Ok::<_, String>(proto::hex(&Sha256::digest(p.as_bytes())))
        })
        .handle("Echo", |p: String| async move { Ok::<_, String>(p) });
    let s = stopped(stop_rx.clone());
    tasks.spawn(async move {
        // The first connections on threads of their own, the rest as tasks: both forms
        // under the same load.
        if let Err(e) = pipewright_rpc::Server::new(router)
            .connection_threads(8)
            .serve_with_shutdown(rpc, s)
            .await
        {
            eprintln!("soak server: rpc server failed: {e}");
        }
    });
    let stoppers = [base.stopper(), shm.stopper()];
    for server in [base, shm] {
        tasks.spawn(async move {
            if let Err(e) = server.run().await {
                eprintln!("soak server: netipc server failed: {e}");
            }
        });
    }

    // Peak sampler.
    let peak = Arc::new(Mutex::new(sys::sample()));
    let p = peak.clone();
    let sampler = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let s = sys::sample();
            let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
            *g = max_sample(*g, s);
        }
    });

    println!("ready");
    let mut start_kinds = String::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(cmd)) = lines.next_line().await {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["sample"] => {
                start_kinds = sys::describe();
                let s = sys::sample();
                *peak.lock().unwrap_or_else(|e| e.into_inner()) = s;
                println!("{}", line("sample", s));
            }
            ["settle", start, tolerance, secs] => {
                let start: u64 = start.parse().unwrap_or(0);
                let tolerance: u64 = tolerance.parse().unwrap_or(0);
                let secs: u64 = secs.parse().unwrap_or(10);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
                let mut s = sys::sample();
                while s.handles > start + tolerance && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    s = sys::sample();
                }
                // One more second, so the end figure is a settled one, not a passing dip.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let s = sys::sample();
                let pk = max_sample(*peak.lock().unwrap_or_else(|e| e.into_inner()), s);
                println!("{}", line("end", s));
                println!("{}", line("peak", pk));
                println!("kinds {start_kinds} {}", sys::describe());
            }
            ["quit"] => break,
            _ => eprintln!("soak server: unknown command {cmd:?}"),
        }
    }
    sampler.abort();
    let _ = stop_tx.send(true);
    for s in &stoppers {
        s.stop();
    }
    let all_stopped = tokio::time::timeout(Duration::from_secs(20), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !all_stopped {
        eprintln!("soak server: a server did not stop within 20 s of being asked to");
    }
    println!(
        "bye {} {} {}",
        PANICS.load(Ordering::Relaxed),
        ACCEPT_ERRORS.load(Ordering::Relaxed),
        u8::from(all_stopped)
    );
    Ok(())
}

fn netipc_config(endpoint: pipewright_netipc::handshake::EndpointConfig) -> ManagedConfig {
    let mut c = ManagedConfig::new(endpoint);
    c.workers = 256;
    c
}
