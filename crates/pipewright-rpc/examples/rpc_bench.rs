//! Calls per second and p50/p99 latency of 64-byte echo calls, against a raw ping-pong of
//! the same frames over the same kind of pipe, measured in the same run.
//!
//! `cargo run --release -p pipewright-rpc --example rpc_bench -- [SECONDS_PER_CASE] [ROUNDS]`
//!
//! Beside the raw ping-pong through pipewright streams, each round also runs the raw
//! *blocking* floor: `pipewright bench pingpong --case raw-byte` (synchronous
//! `ReadFile`/`WriteFile` on Windows, blocking `read`/`write` on a Unix socket; one thread per
//! side, no runtime) with the request frame's size, as a child process, so its one
//! implementation stays in the CLI's baseline. The `pipewright` binary comes from
//! `$PIPEWRIGHT_BIN` or next to this example (build `pipewright-cli` in the same profile);
//! without it the row is left out. Against that floor the last row measures the blocking
//! client calling a server that serves its connection on a thread of its own
//! (`Server::connection_threads`).

use std::time::{Duration, Instant};

use pipewright::{Listener, PipeStream};
use pipewright_rpc::{blocking, demo, Client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

const PAYLOAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const CALLERS: usize = 16;

/// One case's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[i].as_secs_f64() * 1e6
    };
    Figures {
        calls_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pick(0.50),
        p99_us: pick(0.99),
    }
}

/// The `pipewright` binary: `$PIPEWRIGHT_BIN`, else next to this example's directory.
fn pipewright_bin() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("PIPEWRIGHT_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let bin = exe
        .parent()?
        .parent()?
        .join(format!("pipewright{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// The raw blocking ping-pong of `size`-byte messages for `run_for`, run by the `pipewright`
/// binary; `None` when there is none.
fn raw_blocking(bin: &std::path::Path, size: usize, run_for: Duration) -> Figures {
    let out = std::process::Command::new(bin)
        .args([
            "bench", "pingpong", "--rounds", "1", "--case", "raw-byte", "--json",
        ])
        .args(["--size", &size.to_string()])
        .args(["--time", &format!("{}ms", run_for.as_millis())])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} bench pingpong: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pingpong JSON");
    let row = &v["rows"][0];
    let num = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{k} in {row}"));
    Figures {
        calls_per_sec: num("round_trips_per_s"),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
    }
}

fn frame(body: &str) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body.as_bytes());
    f
}

/// The raw baseline: the server reads a frame and writes back a fixed answer frame; the
/// client writes the request frame and reads the answer. No JSON, no tasks in between.
async fn raw_ping_pong(name: &str, run_for: Duration) -> Figures {
    let request = frame(&format!(
        r#"{{"method":"Echo","params":{{"payload":"{PAYLOAD}"}},"id":1000}}"#
    ));
    let answer = frame(&format!(
        r#"{{"status":"Ok","params":{{"Json":"{PAYLOAD}"}},"id":1000}}"#
    ));
    let listener = Listener::bind(name).expect("bind raw");
    let server_answer = answer.clone();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await.expect("accept raw");
        let (r, mut w) = tokio::io::split(conn);
        let mut r = BufReader::new(r);
        let mut header = [0u8; 4];
        let mut body = vec![0u8; 4096];
        while r.read_exact(&mut header).await.is_ok() {
            let len = u32::from_le_bytes(header) as usize;
            if r.read_exact(&mut body[..len]).await.is_err()
                || w.write_all(&server_answer).await.is_err()
            {
                break;
            }
        }
    });
    // The client runs in a spawned task, like the RPC callers.
    let mut conn: PipeStream = pipewright::connect(name).await.expect("connect raw");
    let client = tokio::spawn(async move {
        let mut reply = vec![0u8; answer.len()];
        let mut latencies = Vec::new();
        let started = Instant::now();
        while started.elapsed() < run_for {
            let t = Instant::now();
            conn.write_all(&request).await.expect("raw write");
            conn.read_exact(&mut reply).await.expect("raw read");
            latencies.push(t.elapsed());
        }
        assert_eq!(reply, answer);
        (latencies, started.elapsed())
    });
    let (latencies, elapsed) = client.await.expect("raw client");
    let _ = server.await;
    figures(latencies, elapsed)
}

/// Echo calls through the RPC client and server, from `callers` tasks on one connection.
async fn rpc_echo(client: &Client, callers: usize, run_for: Duration) -> Figures {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = demo::Request::Echo {
                    payload: PAYLOAD.into(),
                };
                let mut latencies = Vec::new();
                while started.elapsed() < run_for {
                    let t = Instant::now();
                    let answer: demo::Response = client.request(&request).await.expect("echo call");
                    latencies.push(t.elapsed());
                    assert!(matches!(&answer, demo::Response::Json(t) if t == PAYLOAD));
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller task"));
    }
    figures(all, started.elapsed())
}

/// Echo calls through the blocking client, one at a time on this thread, against a server
/// that serves the connection on a thread of its own.
fn blocking_echo(client: &mut blocking::Client, run_for: Duration) -> Figures {
    let request = demo::Request::Echo {
        payload: PAYLOAD.into(),
    };
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < run_for {
        let t = Instant::now();
        let answer: demo::Response = client.request(&request).expect("blocking echo call");
        latencies.push(t.elapsed());
        assert!(matches!(&answer, demo::Response::Json(t) if t == PAYLOAD));
    }
    figures(latencies, started.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let run_for = Duration::from_secs_f64(secs);
    let base = format!("pw-rpc-bench-{}", std::process::id());
    let platform = if pipewright::platform::is_wine() {
        "Windows target under Wine"
    } else {
        std::env::consts::OS
    };
    println!("rpc_bench: 64-byte echo, {platform}, {rounds} rounds of {secs} s per case");

    let listener = Listener::bind(format!("{base}-rpc")).expect("bind rpc");
    tokio::spawn(Server::new(demo::router()).serve(listener));
    let client = Client::connect(format!("{base}-rpc"))
        .await
        .expect("connect rpc");
    rpc_echo(&client, 1, Duration::from_millis(200)).await; // warm up
    let threaded = Listener::bind(format!("{base}-threads")).expect("bind rpc threads");
    tokio::spawn(
        Server::new(demo::router())
            .connection_threads(4)
            .serve(threaded),
    );
    let threaded_name = format!("{base}-threads");
    let mut blocking_client = tokio::task::spawn_blocking(move || {
        let mut c = blocking::Client::connect(threaded_name.as_str()).expect("connect blocking");
        blocking_echo(&mut c, Duration::from_millis(200)); // warm up
        c
    })
    .await
    .expect("blocking client");

    let bin = pipewright_bin();
    if bin.is_none() {
        println!(
            "raw blocking row left out: no pipewright binary next to this example (build \
             pipewright-cli in the same profile, or set PIPEWRIGHT_BIN)"
        );
    }
    // The request frame's size: the blocking floor echoes messages of that size.
    let request_len = frame(&format!(
        r#"{{"method":"Echo","params":{{"payload":"{PAYLOAD}"}},"id":1000}}"#
    ))
    .len();
    let (mut raw, mut one, mut many) = (Vec::new(), Vec::new(), Vec::new());
    let (mut blocking, mut one_blocking) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if let Some(bin) = &bin {
            let b = raw_blocking(bin, request_len, run_for);
            println!(
                "round {round}: raw blocking {:.0}/s (p50 {:.1} us, p99 {:.1} us)",
                b.calls_per_sec, b.p50_us, b.p99_us
            );
            blocking.push(b);
        }
        // Right after the blocking floor, so the two are measured as close in time as can be.
        let (c, b) = tokio::task::spawn_blocking(move || {
            let f = blocking_echo(&mut blocking_client, run_for);
            (blocking_client, f)
        })
        .await
        .expect("blocking caller");
        blocking_client = c;
        println!(
            "round {round}: rpc blocking client, connection thread {:.0}/s (p50 {:.1}, p99 {:.1})",
            b.calls_per_sec, b.p50_us, b.p99_us
        );
        one_blocking.push(b);
        let r = raw_ping_pong(&format!("{base}-raw{round}"), run_for).await;
        let o = rpc_echo(&client, 1, run_for).await;
        let m = rpc_echo(&client, CALLERS, run_for).await;
        println!(
            "round {round}: raw {:.0}/s (p50 {:.1} us, p99 {:.1} us) | rpc 1 caller {:.0}/s (p50 {:.1}, p99 {:.1}) | rpc {CALLERS} callers {:.0}/s (p50 {:.1}, p99 {:.1})",
            r.calls_per_sec, r.p50_us, r.p99_us, o.calls_per_sec, o.p50_us, o.p99_us, m.calls_per_sec, m.p50_us, m.p99_us
        );
        raw.push(r);
        one.push(o);
        many.push(m);
    }
    let med = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
    let blocking_label = format!("raw blocking ping-pong, {request_len} B");
    let rows = [
        (blocking_label.as_str(), &blocking),
        ("raw ping-pong", &raw),
        ("rpc, 1 caller", &one),
        ("rpc, 16 callers", &many),
        ("rpc, blocking client, connection thread", &one_blocking),
    ];
    println!("\n| case | calls/s | p50 us | p99 us |\n|---|---|---|---|");
    for (label, v) in rows {
        if v.is_empty() {
            continue;
        }
        println!(
            "| {label} | {:.0} | {:.1} | {:.1} |",
            med(v, |f| f.calls_per_sec),
            med(v, |f| f.p50_us),
            med(v, |f| f.p99_us)
        );
    }
    let ratio_one = median(
        raw.iter()
            .zip(&one)
            .map(|(r, o)| o.calls_per_sec / r.calls_per_sec)
            .collect(),
    );
    let ratio_many = median(
        raw.iter()
            .zip(&many)
            .map(|(r, m)| m.calls_per_sec / r.calls_per_sec)
            .collect(),
    );
    let many_over_one = median(
        one.iter()
            .zip(&many)
            .map(|(o, m)| m.calls_per_sec / o.calls_per_sec)
            .collect(),
    );
    println!("\nrpc 1 caller / raw: {ratio_one:.2} (target >= 0.8)");
    if !blocking.is_empty() {
        let per_round = |v: &[Figures]| {
            median(
                blocking
                    .iter()
                    .zip(v)
                    .map(|(b, o)| o.calls_per_sec / b.calls_per_sec)
                    .collect(),
            )
        };
        println!(
            "raw ping-pong / raw blocking: {:.2}; rpc 1 caller / raw blocking: {:.2}; rpc blocking client / raw blocking: {:.2} (target >= 0.9)",
            per_round(&raw),
            per_round(&one),
            per_round(&one_blocking)
        );
    }
    println!("rpc {CALLERS} callers / raw: {ratio_many:.2}");
    println!("rpc {CALLERS} callers / rpc 1 caller: {many_over_one:.2} (target > 1)");
}
