//! A hostile client against an RPC server: it pipelines large `Echo` requests and never reads
//! the answers, while a second, well-behaved client keeps calling on the same server. Prints,
//! once a second, how much the flood has written, how the second client fares and (with
//! `--rss-pid`) the server's resident memory read from `/proc/PID/status`.
//!
//! ```text
//! pipewright rpc serve-demo &
//! cargo run --release -p pipewright-rpc --example flood -- --seconds 10 --rss-pid $!
//! ```
//!
//! Options: `--name NAME` (default `rpc_demo`), `--seconds N` (default 10), `--payload BYTES`
//! (default 60000), `--no-ids` (send requests without ids, as pipe-rpc does), `--rss-pid PID`.
//! Under Wine, pass the Linux pid of the server's Wine process; its status file is read
//! through the `Z:` drive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipewright_rpc::{demo, Client, ClientOptions};
use tokio::io::AsyncWriteExt;

struct Options {
    name: String,
    seconds: u64,
    payload: usize,
    ids: bool,
    rss_pid: Option<u32>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        name: demo::DEFAULT_NAME.to_owned(),
        seconds: 10,
        payload: 60_000,
        ids: true,
        rss_pid: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{arg} needs {what}"));
        match arg.as_str() {
            "--name" => opts.name = value("a pipe name")?,
            "--seconds" => {
                opts.seconds = value("a number")?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--payload" => {
                opts.payload = value("a size")?.parse().map_err(|e| format!("--payload: {e}"))?
            }
            "--rss-pid" => {
                opts.rss_pid = Some(value("a pid")?.parse().map_err(|e| format!("--rss-pid: {e}"))?)
            }
            "--no-ids" => opts.ids = false,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --name NAME --seconds N --payload BYTES --no-ids --rss-pid PID"
                ))
            }
        }
    }
    Ok(opts)
}

/// The resident memory of process `pid` in KiB, from its `/proc` status file.
fn rss_kib(pid: u32) -> Option<u64> {
    let paths = [
        format!("/proc/{pid}/status"),
        format!(r"Z:\proc\{pid}\status"),
    ];
    let status = paths.iter().find_map(|p| std::fs::read_to_string(p).ok())?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn echo_frame(seq: u64, payload: usize, ids: bool) -> Vec<u8> {
    let text = format!("{seq:012}{}", "x".repeat(payload.saturating_sub(12)));
    let body = if ids {
        format!(r#"{{"method":"Echo","params":{{"payload":"{text}"}},"id":{seq}}}"#)
    } else {
        format!(r#"{{"method":"Echo","params":{{"payload":"{text}"}}}}"#)
    };
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    frame
}

#[tokio::main]
async fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flood: {e}");
            std::process::exit(2);
        }
    };
    let hostile = match pipewright::connect(opts.name.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flood: {e}");
            std::process::exit(3);
        }
    };
    // The read half is kept, and never read.
    let (_never_read, mut write) = tokio::io::split(hostile);
    let written = Arc::new(AtomicU64::new(0));
    let flood_written = written.clone();
    let (payload, ids) = (opts.payload, opts.ids);
    tokio::spawn(async move {
        for seq in 1.. {
            let frame = echo_frame(seq, payload, ids);
            if let Err(e) = write.write_all(&frame).await {
                eprintln!("flood: writing stopped: {e}");
                return;
            }
            flood_written.fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
    });

    // The well-behaved client: one small call every 50 ms.
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let slowest_us = Arc::new(AtomicU64::new(0));
    let options = ClientOptions::new().call_timeout(Duration::from_secs(5));
    let probe = match Client::connect_with(opts.name.as_str(), options).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flood: the second client could not connect: {e}");
            std::process::exit(3);
        }
    };
    {
        let (answered, failed, slowest_us) = (answered.clone(), failed.clone(), slowest_us.clone());
        tokio::spawn(async move {
            loop {
                let start = Instant::now();
                let request = demo::Request::Echo {
                    payload: "ping".into(),
                };
                match probe.request::<_, demo::Response>(&request).await {
                    Ok(demo::Response::Json(t)) if t == "ping" => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        slowest_us.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("flood: the second client's call failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut peak_rss = 0u64;
    println!(
        "second  flood_written_MiB  server_rss_MiB  probe_answered  probe_failed  probe_slowest_ms"
    );
    for second in 1..=opts.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = opts.rss_pid.and_then(rss_kib);
        if let Some(kib) = rss {
            peak_rss = peak_rss.max(kib);
        }
        println!(
            "{second:6}  {:17.1}  {:>14}  {:14}  {:12}  {:16.1}",
            mib(written.load(Ordering::Relaxed)),
            rss.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            answered.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            slowest_us.load(Ordering::Relaxed) as f64 / 1000.0,
        );
    }
    if opts.rss_pid.is_some() {
        println!(
            "peak server RSS {:.1} MiB; the flood wrote {:.1} MiB; the second client: {} answered, {} failed",
            peak_rss as f64 / 1024.0,
            mib(written.load(Ordering::Relaxed)),
            answered.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    }
    std::process::exit(0);
}
