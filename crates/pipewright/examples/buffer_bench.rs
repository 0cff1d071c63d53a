//! Small messages before and after one 16 MiB message: the receive rate and the process's
//! resident memory, in one run.
//!
//! A message-mode client sends `N` small messages; the server receives them and keeps the
//! last `KEEP` (as a consumer with a queue does). Then one 16 MiB message passes, then the
//! same `N` small messages again. The first round is the baseline of the same run.
//!
//! ```sh
//! cargo run --release -p pipewright --example buffer_bench -- 20000 100 256
//! scripts/cargo-win build --release -p pipewright --example buffer_bench   # then run the .exe under wine64
//! ```
//! Arguments: messages per round (default 20000), bytes per message (default 100), messages
//! kept (default 256). RSS comes from `/proc/self/status`; under Wine from the Linux process
//! whose command line starts with this `.exe`, read through drive `Z:` (run one at a time).

use std::collections::VecDeque;
use std::time::Instant;

use pipewright::{connect_with, ConnectOptions, Listener, ListenerOptions, PipeMode, PipeStream};

/// Resident set size in KiB, when the system tells.
fn rss_kib() -> Option<u64> {
    if cfg!(windows) {
        wine_rss_kib()
    } else {
        vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
    }
}

fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Under Wine a file is opened by wineserver, so `/proc/self` would be wineserver: find this
/// program's Linux process by its command line instead (run one bench at a time). `None` on
/// Windows proper.
fn wine_rss_kib() -> Option<u64> {
    for entry in std::fs::read_dir("Z:\\proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("Z:\\proc\\{pid}\\cmdline")) else {
            continue;
        };
        let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        if first.ends_with(b"buffer_bench.exe") {
            let status = std::fs::read_to_string(format!("Z:\\proc\\{pid}\\status")).ok()?;
            return vm_rss(&status);
        }
    }
    None
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_string(),
        |k| format!("{:.1}", k as f64 / 1024.0),
    )
}

/// One round: `n` small messages from `client` to `server`; returns messages per second.
async fn round(
    client: &mut PipeStream,
    server: &mut PipeStream,
    n: usize,
    size: usize,
    kept: &mut VecDeque<Vec<u8>>,
    keep: usize,
) -> f64 {
    let msg = vec![7u8; size];
    let start = Instant::now();
    let send = async {
        for _ in 0..n {
            client.send_message(&msg).await.expect("send");
        }
    };
    let recv = async {
        for _ in 0..n {
            let m = server
                .recv_message()
                .await
                .expect("receive")
                .expect("a message");
            kept.push_back(m);
            if kept.len() > keep {
                kept.pop_front();
            }
        }
    };
    tokio::join!(send, recv);
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let keep: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let name = format!("pw-buffer-bench-{}", std::process::id());
        let listener =
            Listener::bind_with(&name, &ListenerOptions::new().mode(PipeMode::Message)).unwrap();
        let mut client = connect_with(name.as_str(), &ConnectOptions::new().mode(PipeMode::Message))
            .await
            .unwrap();
        let mut server = listener.accept().await.unwrap();
        let mut kept = VecDeque::new();
        let rss_start = rss_kib();
        let before = round(&mut client, &mut server, n, size, &mut kept, keep).await;
        let rss_before = rss_kib();
        let big = vec![1u8; 16 * 1024 * 1024];
        let send = client.send_message(&big);
        let recv = server.recv_message();
        let (sent, got) = tokio::join!(send, recv);
        sent.expect("send the big message");
        drop(got.expect("receive the big message"));
        drop(big);
        let after = round(&mut client, &mut server, n, size, &mut kept, keep).await;
        let rss_after = rss_kib();
        println!(
            "small messages: {n} x {size} B, last {keep} kept; rate before {before:.0}/s, after one 16 MiB message {after:.0}/s (ratio {:.2})",
            after / before
        );
        println!(
            "RSS MiB: start {}, after the baseline round {}, after the 16 MiB message and the second round {}",
            mib(rss_start),
            mib(rss_before),
            mib(rss_after)
        );
    });
}
