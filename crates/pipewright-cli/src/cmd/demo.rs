//! `pipewright demo`: a server and concurrent clients on this machine's native transport,
//! exchanging data both ways in byte and message mode, with what happened and how fast.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use pipewright::{
    connect_with, probe, ConnectOptions, ErrorKind, Listener, ListenerOptions, PipeMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{args, exit};

/// Start a listener and several concurrent clients, exchange data both ways in byte and
/// message mode, and report what happened and the throughput measured.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Bytes each client sends (and gets back) in byte mode, like 8MiB.
    #[arg(long, default_value = "8MiB", value_parser = args::size)]
    pub size: usize,
}

/// Message sizes each client sends in message mode: tiny, around tokio's 4 KiB cap, large.
const MESSAGE_SIZES: [usize; 6] = [1, 4095, 4097, 65_536, 300_000, 1 << 20];

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn unique(tag: &str) -> String {
    format!("pipewright-demo-{tag}-{}", std::process::id())
}

/// Runs the demo; returns the exit code.
pub async fn run(a: DemoArgs) -> u8 {
    match demo(a).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("pipewright demo: FAILED: {e:#}");
            exit::for_error(&e)
        }
    }
}

async fn demo(a: DemoArgs) -> Result<()> {
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let transport = if cfg!(windows) {
        "Windows named pipes"
    } else {
        "Unix domain sockets"
    };
    let wine = pipewright::platform::wine_version()
        .map(|v| format!(" (under Wine {v})"))
        .unwrap_or_default();
    outln!(
        "pipewright demo: {transport}{wine}, {} concurrent clients",
        a.clients
    );

    byte_mode(&a).await.context("byte mode")?;
    message_mode(&a).await.context("message mode")?;
    outln!("\nall exchanges verified: OK");
    Ok(())
}

async fn byte_mode(a: &DemoArgs) -> Result<()> {
    let name = unique("bytes");
    let listener = Arc::new(Listener::bind(name.as_str())?);
    outln!(
        "\n[byte mode] serving {} (backlog 4, current user only)",
        listener.name()
    );
    let server = {
        let listener = listener.clone();
        tokio::spawn(async move {
            let mut peers = Vec::new();
            let mut tasks = Vec::new();
            while let Ok(conn) = listener.accept().await {
                peers.push(conn.peer().ok());
                tasks.push(tokio::spawn(async move {
                    // Echo until the client half-closes (Unix) or closes, then flush and end.
                    let (mut r, mut w) = tokio::io::split(conn);
                    let n = tokio::io::copy(&mut r, &mut w).await?;
                    w.shutdown().await?;
                    Ok::<u64, std::io::Error>(n)
                }));
            }
            (peers, tasks)
        })
    };
    let probe_started = Instant::now();
    probe(name.as_str(), Duration::from_secs(2)).await?;
    outln!("  probe: ready ({:?})", probe_started.elapsed());

    let started = Instant::now();
    let mut clients = Vec::new();
    for id in 0..a.clients {
        let name = name.clone();
        let size = a.size;
        clients.push(tokio::spawn(async move {
            let data = pattern(size, id as u64 + 1);
            let conn = connect_with(name.as_str(), &ConnectOptions::new()).await?;
            let (mut r, mut w) = tokio::io::split(conn);
            let expected = data.clone();
            // Write and read at the same time: both directions carry `size` bytes.
            let writer = tokio::spawn(async move {
                for chunk in data.chunks(256 * 1024) {
                    w.write_all(chunk).await?;
                }
                w.flush().await?;
                Ok::<_, std::io::Error>(w)
            });
            let mut back = vec![0u8; size];
            r.read_exact(&mut back).await?;
            let _w = writer.await??;
            if back != expected {
                bail!("client {id}: echoed bytes differ");
            }
            Ok::<usize, anyhow::Error>(size)
        }));
    }
    let mut total = 0usize;
    for c in clients {
        total += c.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    listener.close();
    let (peers, tasks) = server.await?;
    let mut echoed = 0u64;
    for t in tasks {
        echoed += t.await?.unwrap_or(0);
    }
    let mut pids: Vec<String> = peers
        .iter()
        .map(|p| {
            p.as_ref()
                .and_then(|p| p.pid)
                .map_or("?".into(), |pid| pid.to_string())
        })
        .collect();
    pids.sort();
    pids.dedup();
    outln!(
        "  {} clients each sent and got back {} bytes, verified; the server saw {} connections \
         (the probe's too) from pid {}",
        a.clients,
        a.size,
        peers.len(),
        pids.join(", ")
    );
    outln!(
        "  throughput: {:.1} MiB/s each way ({} MiB in {:.2} s; server echoed {} MiB)",
        total as f64 / secs / (1 << 20) as f64,
        total >> 20,
        secs,
        echoed >> 20
    );
    match probe(name.as_str(), Duration::ZERO).await {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            outln!("  after close: probe says not found, as it should")
        }
        other => bail!("after close the probe should fail with not found, got {other:?}"),
    }
    Ok(())
}

async fn message_mode(a: &DemoArgs) -> Result<()> {
    let name = unique("messages");
    let opts = ListenerOptions::new().mode(PipeMode::Message);
    let listener = Arc::new(Listener::bind_with(name.as_str(), &opts)?);
    outln!("\n[message mode] serving {}", listener.name());
    let server = {
        let listener = listener.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(mut conn) = listener.accept().await {
                tasks.push(tokio::spawn(async move {
                    let mut count = 0usize;
                    // Each message comes back whole; an empty message ends the stream.
                    while let Some(msg) = conn.recv_message().await? {
                        conn.send_message(&msg).await?;
                        count += 1;
                    }
                    // The client half-closed; it still reads this reply.
                    conn.send_message(format!("got {count} messages").as_bytes())
                        .await?;
                    conn.shutdown().await?;
                    Ok::<usize, pipewright::Error>(count)
                }));
            }
            tasks
        })
    };
    let started = Instant::now();
    let mut clients = Vec::new();
    for id in 0..a.clients {
        let name = name.clone();
        clients.push(tokio::spawn(async move {
            let opts = ConnectOptions::new().mode(PipeMode::Message);
            let mut conn = connect_with(name.as_str(), &opts).await?;
            let mut bytes = 0;
            for (i, size) in MESSAGE_SIZES.iter().enumerate() {
                let msg = pattern(*size, (id * 100 + i) as u64);
                conn.send_message(&msg).await?;
                let back = conn
                    .recv_message()
                    .await?
                    .with_context(|| format!("client {id}: stream ended early"))?;
                if back != msg {
                    bail!(
                        "client {id}: message {i} ({size} bytes) came back as {} bytes",
                        back.len()
                    );
                }
                bytes += size;
            }
            conn.shutdown().await?;
            let summary = conn
                .recv_message()
                .await?
                .context("no summary after half-close")?;
            let expected = format!("got {} messages", MESSAGE_SIZES.len());
            if summary != expected.as_bytes() {
                bail!(
                    "client {id}: summary {:?}",
                    String::from_utf8_lossy(&summary)
                );
            }
            if conn.recv_message().await?.is_some() {
                bail!("client {id}: data after the server's end of stream");
            }
            Ok::<usize, anyhow::Error>(bytes)
        }));
    }
    let mut total = 0;
    for c in clients {
        total += c.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    listener.close();
    for t in server.await? {
        t.await??;
    }
    outln!(
        "  {} clients each sent {} messages of {:?} bytes, each echoed whole; half-close by \
         zero-byte message, reply after it, then end of stream: verified",
        a.clients,
        MESSAGE_SIZES.len(),
        MESSAGE_SIZES
    );
    outln!(
        "  throughput: {:.1} MiB/s each way",
        total as f64 / secs / (1 << 20) as f64
    );
    Ok(())
}
