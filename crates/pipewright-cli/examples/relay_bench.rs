//! Throughput of `pipewright relay` and `pipewright bridge` against a raw copy loop over the
//! same kind of pipe, in one run, and the relay's CPU use while idle.
//!
//! ```text
//! cargo run --release -p pipewright-cli --example relay_bench -- [MiB per run] [runs]
//! ```
//!
//! This process writes 64 KiB blocks and a server in it counts them, through a copier in a
//! process of its own: either a plain copy loop (64 KiB reads, each written before the next,
//! started as `relay_bench --raw-loop FROM TO`) or pipewright:
//! - stdin -> copier -> pipe: `pipewright relay -ei PIPE` against the loop reading stdin;
//! - pipe -> copier -> pipe: `pipewright bridge npipe-listen:A npipe:B` against the loop.
//!
//! Ratios (pipewright / loop, medians of the runs) are what to compare: the machines are shared.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pipewright::{Listener, PipeStream};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

const BLOCK: usize = 64 * 1024;

fn pipewright_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PIPEWRIGHT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    dir.join(if cfg!(windows) {
        "pipewright.exe"
    } else {
        "pipewright"
    })
}

fn unique(tag: &str) -> String {
    format!(
        "pw-bench-{tag}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

enum Event {
    Accepted,
    Done(u64),
}

/// A sink server: signals each accepted connection, and once `expected` bytes have arrived
/// (or the connection ended), the count.
fn sink(name: &str, expected: u64) -> mpsc::UnboundedReceiver<Event> {
    let listener = Listener::bind(name).expect("bind");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            let tx = tx.clone();
            let _ = tx.send(Event::Accepted);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024 * 1024];
                let mut total = 0u64;
                while let Ok(n) = conn.read(&mut buf).await {
                    total += n as u64;
                    if n == 0 || total >= expected {
                        break;
                    }
                }
                let _ = tx.send(Event::Done(total));
            });
        }
    });
    rx
}

async fn accepted(events: &mut mpsc::UnboundedReceiver<Event>) {
    match events.recv().await {
        Some(Event::Accepted) => {}
        _ => panic!("the server saw no connection"),
    }
}

async fn write_blocks(w: &mut (impl AsyncWrite + Unpin), bytes: u64) {
    let block = vec![0x5au8; BLOCK];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (BLOCK as u64).min(bytes - sent) as usize;
        w.write_all(&block[..n]).await.expect("write");
        sent += n as u64;
    }
    w.flush().await.expect("flush");
}

/// MiB/s from the first byte written until the server has counted the last.
async fn timed(
    bytes: u64,
    events: &mut mpsc::UnboundedReceiver<Event>,
    mut writer: impl AsyncWrite + Unpin,
) -> f64 {
    let start = Instant::now();
    write_blocks(&mut writer, bytes).await;
    let got = match events.recv().await {
        Some(Event::Done(n)) => n,
        _ => panic!("no count from the server"),
    };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, bytes, "the server counted {got} of {bytes} bytes");
    bytes as f64 / (1024.0 * 1024.0) / secs
}

/// The baseline: a plain copy loop (64 KiB reads, each written before the next read),
/// between the same endpoints as the pipewright command it is compared with.
async fn raw_loop_main(from: Option<String>, to: String) {
    let mut out = pipewright::connect(to.as_str()).await.expect("connect");
    let mut buf = vec![0u8; BLOCK];
    match from {
        None => {
            let mut stdin = std::io::stdin().lock();
            loop {
                let n = std::io::Read::read(&mut stdin, &mut buf).expect("read stdin");
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).await.expect("write");
            }
        }
        Some(listen) => {
            let listener = Listener::bind(listen.as_str()).expect("bind");
            let mut conn = listener.accept().await.expect("accept");
            loop {
                let n = conn.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).await.expect("write");
            }
        }
    }
    out.flush().await.expect("flush");
}

fn spawn(program: PathBuf, args: &[&str], stdin: bool) -> tokio::process::Child {
    Command::new(program)
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the copier")
}

fn this_exe() -> PathBuf {
    std::env::current_exe().expect("current exe")
}

/// stdin -> copier -> pipe; `tool` false runs the raw loop.
async fn stdin_case(bytes: u64, tool: bool) -> f64 {
    let name = unique("stdin");
    let mut events = sink(&name, bytes);
    let mut child = if tool {
        spawn(pipewright_binary(), &["relay", "-ei", &name], true)
    } else {
        spawn(this_exe(), &["--raw-loop", "-", &name], true)
    };
    accepted(&mut events).await;
    let stdin = child.stdin.take().expect("stdin");
    timed(bytes, &mut events, stdin).await
}

/// pipe -> copier -> pipe; `tool` false runs the raw loop.
async fn pipe_case(bytes: u64, tool: bool) -> f64 {
    let back = unique("back");
    let front = unique("front");
    let mut events = sink(&back, bytes);
    let (l, b) = (format!("npipe-listen:{front}"), format!("npipe:{back}"));
    let _child = if tool {
        spawn(pipewright_binary(), &["bridge", &l, &b], false)
    } else {
        spawn(this_exe(), &["--raw-loop", &front, &back], false)
    };
    let options = pipewright::ConnectOptions::new().timeout(Duration::from_secs(30));
    let conn: PipeStream = pipewright::connect_with(&front, &options)
        .await
        .expect("connect");
    accepted(&mut events).await;
    timed(bytes, &mut events, conn).await
}

/// CPU seconds a process has used (Linux).
#[cfg(target_os = "linux")]
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The relay's CPU use over 3 s while both sides are open and idle, and then after the
/// server has half-closed (Linux only: reads /proc).
#[cfg(target_os = "linux")]
async fn idle_cpu() -> Option<(f64, f64)> {
    let name = unique("idle");
    let listener = Listener::bind(name.as_str()).expect("bind");
    let mut child = Command::new(pipewright_binary())
        .args(["relay", "-linger", "1h", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the relay");
    let mut conn = listener.accept().await.expect("accept");
    let pid = child.id()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = cpu_seconds(pid)? - a;
    conn.shutdown().await.ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let half_closed = cpu_seconds(pid)? - b;
    let _ = child.kill().await;
    Some((open, half_closed))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--raw-loop") {
        let from = (argv[1] != "-").then(|| argv[1].clone());
        raw_loop_main(from, argv[2].clone()).await;
        return;
    }
    let mib: u64 = argv.first().and_then(|a| a.parse().ok()).unwrap_or(256);
    let runs: usize = argv.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let bytes = mib * 1024 * 1024;
    let platform = if pipewright::platform::is_wine() {
        let version = pipewright::platform::wine_version().unwrap_or_default();
        format!("Windows target under Wine {version}")
    } else {
        std::env::consts::OS.to_string()
    };
    let (mut rs, mut ls, mut rp, mut bp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        rs.push(stdin_case(bytes, false).await);
        ls.push(stdin_case(bytes, true).await);
        rp.push(pipe_case(bytes, false).await);
        bp.push(pipe_case(bytes, true).await);
    }
    let (rs, ls, rp, bp) = (median(rs), median(ls), median(rp), median(bp));
    println!("relay_bench on {platform}: {mib} MiB per run, {runs} runs, 64 KiB writes, medians");
    println!("| path | raw copy loop MiB/s | pipewright MiB/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| stdin -> relay -> pipe | {rs:.0} | {ls:.0} | {:.2} |",
        ls / rs
    );
    println!(
        "| pipe -> bridge -> pipe | {rp:.0} | {bp:.0} | {:.2} |",
        bp / rp
    );
    #[cfg(target_os = "linux")]
    if let Some((open, half)) = idle_cpu().await {
        println!("idle relay CPU over 3 s: {open:.2} s with both sides open, {half:.2} s after the server's half-close");
    }
}
