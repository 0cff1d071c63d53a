//! Connection churn against an in-process `Listener`: does the process's memory grow with the
//! number of connections served, or level off?
//!
//! Each round is one short connection, the variant chosen by the round number: both ends drop
//! right after `write_all` (the server's end lingers until its bytes are read); `shutdown`
//! after the writes; `close_write` in message mode; the client drops in the middle of a read
//! while the server still writes; reads cancelled by a `timeout` on both ends before the data
//! comes; a 2 MiB transfer, so the read buffers grow to their largest size. `CLIENTS` rounds
//! run at once. After rounds 1k, 2k, 4k, 8k, ... (and at the end) it waits 1 s for lingering
//! ends to finish, then prints the resident and anonymous (private) memory, in MiB. A
//! transport that frees what it allocates levels off after the first thousands of rounds; a
//! leak grows in proportion to the rounds.
//!
//! ```sh
//! cargo run --release -p pipewright --example churn -- 16000 4
//! scripts/cargo-win run --release -p pipewright --example churn -- 16000 4   # under Wine
//! ```
//! Arguments: rounds (default 8000), concurrent clients (default 4). Memory comes from
//! `/proc/self/status`; under Wine from the Linux process whose command line ends with
//! `churn.exe`, read through drive `Z:` (run one at a time).

use std::time::Duration;

use pipewright::{
    connect_with, ConnectOptions, Listener, ListenerOptions, PipeMode, PipeName, PipeStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes the client sends in a round.
const UP: usize = 8 * 1024;
/// Bytes the server sends back.
const DOWN: usize = 32 * 1024;
/// Bytes the server tries to send to a client that drops after 1 KiB.
const FLOOD: usize = 256 * 1024;
/// Bytes of the bulk variant (reads grow to the largest buffer).
const BULK: usize = 2 * 1024 * 1024;
/// The workload's variants, taken in turn.
const VARIANTS: usize = 6;

/// `VmRSS`, `RssAnon` and `VmHWM` (peak resident) in KiB, when the system tells.
fn memory_kib() -> Option<(u64, u64, u64)> {
    let status = if cfg!(windows) {
        wine_status()?
    } else {
        std::fs::read_to_string("/proc/self/status").ok()?
    };
    Some((
        field(&status, "VmRSS:")?,
        field(&status, "RssAnon:")?,
        field(&status, "VmHWM:")?,
    ))
}

fn field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Under Wine a file is opened by wineserver, so `/proc/self` would be wineserver: find this
/// program's Linux process by its command line instead. `None` on Windows proper.
fn wine_status() -> Option<String> {
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
        if first.ends_with(b"churn.exe") {
            return std::fs::read_to_string(format!("Z:\\proc\\{pid}\\status")).ok();
        }
    }
    None
}

fn report(rounds: usize) {
    match memory_kib() {
        Some((rss, anon, peak)) => println!(
            "rounds {rounds:>6}: rss {:>7.1} MiB, private (RssAnon) {:>7.1} MiB, peak rss {:>7.1} MiB",
            rss as f64 / 1024.0,
            anon as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        None => println!("rounds {rounds:>6}: memory n/a"),
    }
}

/// The server's half of a byte-mode round; errors are expected where the client drops.
async fn serve_bytes(mut s: PipeStream) {
    let mut head = [0u8; 1];
    if s.read_exact(&mut head).await.is_err() {
        return;
    }
    let mut up = vec![0u8; UP];
    let down = vec![head[0]; DOWN];
    match head[0] {
        0 => {
            // Drop right after write_all: the end lingers until the client has read.
            if s.read_exact(&mut up).await.is_err() {
                return;
            }
            let _ = s.write_all(&down).await;
        }
        1 => {
            if s.read_exact(&mut up).await.is_err() || s.write_all(&down).await.is_err() {
                return;
            }
            let _ = s.shutdown().await;
        }
        3 => {
            // The client reads 1 KiB and drops: these writes fail or linger.
            let _ = s.write_all(&vec![3u8; FLOOD]).await;
        }
        5 => {
            let _ = s.write_all(&vec![5u8; BULK]).await;
        }
        4 => {
            // Reads cancelled by a timeout, mostly before the data comes (what a read
            // that finished in time took counts).
            let mut got = 0;
            for _ in 0..2 {
                let t = Duration::from_millis(1);
                if let Ok(Ok(n)) = tokio::time::timeout(t, s.read(&mut up[got..])).await {
                    got += n;
                }
            }
            if s.read_exact(&mut up[got..]).await.is_ok() {
                let _ = s.write_all(&down[..UP]).await;
            }
        }
        _ => {}
    }
}

/// The server's half of a message-mode round: messages until the end, one answer, the end.
async fn serve_messages(mut s: PipeStream) {
    let mut got = 0;
    while let Ok(Some(m)) = s.recv_message().await {
        got += m.len();
    }
    if got == UP && s.send_message(&vec![2u8; DOWN]).await.is_ok() {
        let _ = s.close_write().await;
    }
}

async fn client_round(bytes: &PipeName, messages: &PipeName, round: usize) {
    let variant = round % VARIANTS;
    let opts = ConnectOptions::new().timeout(Duration::from_secs(30));
    if variant == 2 {
        let opts = opts.mode(PipeMode::Message);
        let mut c = connect_with(messages.clone(), &opts)
            .await
            .expect("connect");
        c.send_message(&vec![2u8; UP]).await.expect("send");
        c.close_write().await.expect("close_write");
        let answer = c.recv_message().await.expect("answer").expect("a message");
        assert_eq!(answer.len(), DOWN);
        assert!(c.recv_message().await.expect("end").is_none());
        return;
    }
    let mut c = connect_with(bytes.clone(), &opts).await.expect("connect");
    let mut head = vec![variant as u8];
    let mut down = vec![0u8; DOWN];
    match variant {
        0 => {
            head.extend_from_slice(&[0u8; UP]);
            c.write_all(&head).await.expect("write");
            c.read_exact(&mut down).await.expect("read");
        }
        1 => {
            head.extend_from_slice(&[1u8; UP]);
            c.write_all(&head).await.expect("write");
            let mut all = Vec::new();
            c.read_to_end(&mut all).await.expect("read to end");
            assert_eq!(all.len(), DOWN);
        }
        3 => {
            c.write_all(&head).await.expect("write");
            c.read_exact(&mut down[..1024]).await.expect("read");
            // Dropped here, while the server still writes.
        }
        5 => {
            c.write_all(&head).await.expect("write");
            let mut bulk = vec![0u8; BULK];
            c.read_exact(&mut bulk).await.expect("read");
        }
        _ => {
            for _ in 0..2 {
                let _ = tokio::time::timeout(Duration::from_millis(1), c.read(&mut down)).await;
            }
            c.write_all(&head).await.expect("write");
            tokio::time::sleep(Duration::from_millis(3)).await;
            c.write_all(&[4u8; UP]).await.expect("write");
            c.read_exact(&mut down[..UP]).await.expect("read");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8000);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4).max(1);
    let tag = format!("pw-churn-{}", std::process::id());
    let bytes = PipeName::parse(&format!("{tag}-b")).expect("name");
    let messages = PipeName::parse(&format!("{tag}-m")).expect("name");
    let lb = Listener::bind_with(bytes.clone(), &ListenerOptions::new()).expect("bind");
    let lm = Listener::bind_with(
        messages.clone(),
        &ListenerOptions::new().mode(PipeMode::Message),
    )
    .expect("bind");
    tokio::spawn(async move {
        while let Ok(s) = lb.accept().await {
            tokio::spawn(serve_bytes(s));
        }
    });
    tokio::spawn(async move {
        while let Ok(s) = lm.accept().await {
            tokio::spawn(serve_messages(s));
        }
    });
    println!(
        "churn: {rounds} rounds, {clients} at once, pid {}",
        std::process::id()
    );
    report(0);
    let mut next_report = 1000;
    let mut done = 0;
    while done < rounds {
        let batch = clients.min(rounds - done);
        let tasks: Vec<_> = (done..done + batch)
            .map(|r| {
                let (b, m) = (bytes.clone(), messages.clone());
                tokio::spawn(async move {
                    let round = client_round(&b, &m, r);
                    if tokio::time::timeout(Duration::from_secs(60), round)
                        .await
                        .is_err()
                    {
                        panic!("round {r} (variant {}) hung for 60 s", r % VARIANTS);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("client round");
        }
        done += batch;
        if done >= next_report || done == rounds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            report(done);
            while next_report <= done {
                next_report *= 2;
            }
        }
    }
}
