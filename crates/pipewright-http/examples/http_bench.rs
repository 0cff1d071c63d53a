//! Requests per second of one hyper service over a pipe (a Unix socket on Unix) and over TCP
//! loopback, measured in the same run, in alternating rounds; prints the pipe/TCP ratio.
//!
//! ```text
//! cargo run --release -p pipewright-http --example http_bench -- [--conns 16] [--secs 2] [--rounds 3] [--body 64]
//! ```

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Clone, Copy)]
struct Settings {
    conns: usize,
    secs: f64,
    rounds: usize,
    body: usize,
}

fn settings() -> Result<Settings, String> {
    let mut s = Settings {
        conns: 16,
        secs: 2.0,
        rounds: 3,
        body: 64,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))?;
        let bad = || format!("{value:?} is not a number for {}", args[i]);
        match args[i].as_str() {
            "--conns" => s.conns = value.parse().map_err(|_| bad())?,
            "--secs" => s.secs = value.parse().map_err(|_| bad())?,
            "--rounds" => s.rounds = value.parse().map_err(|_| bad())?,
            "--body" => s.body = value.parse().map_err(|_| bad())?,
            other => {
                return Err(format!(
                    "unknown option {other}; use --conns, --secs, --rounds, --body"
                ))
            }
        }
        i += 2;
    }
    if s.conns == 0 || s.rounds == 0 || s.secs <= 0.0 {
        return Err("--conns, --rounds and --secs must be above zero".into());
    }
    Ok(s)
}

async fn serve_pipe(name: &str, body: Bytes) {
    let listener =
        pipewright::Listener::bind_with(name, &pipewright::ListenerOptions::new().backlog(16))
            .expect("bind the pipe");
    let service = service_fn(move |_req: Request<Incoming>| {
        let body = body.clone();
        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
    });
    tokio::spawn(async move {
        pipewright_http::Server::new()
            .serve(listener, service)
            .await
    });
}

async fn serve_tcp(body: Bytes) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind TCP");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// One keep-alive HTTP/1.1 connection sending requests back to back until `stop`.
async fn client_loop<S>(io: S, stop: Arc<AtomicBool>, done: Arc<AtomicU64>, expect: usize)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    while !stop.load(Ordering::Relaxed) {
        let req = Request::get("/bench")
            .header("host", "bench")
            .body(Empty::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len(), expect);
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Pipe,
    Tcp,
}

async fn round(transport: Transport, pipe: &str, tcp: std::net::SocketAddr, s: Settings) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..s.conns {
        let (stop, done) = (stop.clone(), done.clone());
        match transport {
            Transport::Pipe => {
                let io = pipewright::connect(pipe).await.expect("connect the pipe");
                tasks.push(tokio::spawn(client_loop(io, stop, done, s.body)));
            }
            Transport::Tcp => {
                let io = tokio::net::TcpStream::connect(tcp)
                    .await
                    .expect("connect TCP");
                io.set_nodelay(true).expect("nodelay");
                tasks.push(tokio::spawn(client_loop(io, stop, done, s.body)));
            }
        }
    }
    let started = Instant::now();
    let before = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(s.secs)).await;
    let count = done.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    count as f64 / elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("http_bench: {e}");
            std::process::exit(2);
        }
    };
    let body = Bytes::from(vec![b'x'; s.body]);
    let pipe = format!("pw-http-bench-{}", std::process::id());
    serve_pipe(&pipe, body.clone()).await;
    let tcp = serve_tcp(body).await;
    // Warm up both.
    let warm = Settings { secs: 0.3, ..s };
    round(Transport::Pipe, &pipe, tcp, warm).await;
    round(Transport::Tcp, &pipe, tcp, warm).await;
    let (mut pipe_rates, mut tcp_rates) = (Vec::new(), Vec::new());
    for r in 0..s.rounds {
        // Alternate the order so drift on a shared machine hits both alike.
        let order = if r % 2 == 0 {
            [Transport::Pipe, Transport::Tcp]
        } else {
            [Transport::Tcp, Transport::Pipe]
        };
        for t in order {
            let rate = round(t, &pipe, tcp, s).await;
            eprintln!("round {r}: {t:?} {rate:.0} req/s");
            match t {
                Transport::Pipe => pipe_rates.push(rate),
                Transport::Tcp => tcp_rates.push(rate),
            }
        }
    }
    let (p, t) = (median(pipe_rates), median(tcp_rates));
    let platform = if pipewright::platform::is_wine() {
        "Windows target under Wine (named pipe vs TCP loopback)"
    } else if cfg!(windows) {
        "Windows (named pipe vs TCP loopback)"
    } else {
        "Unix (Unix socket vs TCP loopback)"
    };
    println!(
        "| {platform} | {} conns, {}-byte body, {} x {} s | pipe {p:.0} req/s | TCP {t:.0} req/s | ratio {:.2} |",
        s.conns,
        s.body,
        s.rounds,
        s.secs,
        p / t
    );
}
