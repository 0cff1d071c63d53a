//! `pipewright bench stream`: the stream's throughput against raw platform I/O over the same
//! kind of pipe, measured side by side in one run (and tokio's own named pipes on Windows).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use pipewright::{connect_with, ConnectOptions, Listener, ListenerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{args, exit};

/// Measure throughput against a baseline taken in the same run.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Bulk transfer through a pipewright stream versus raw I/O over the same pipe kind.
    Stream(StreamArgs),
}

/// Options of `bench stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Bytes moved per measurement, like 128MiB.
    #[arg(long, default_value = "128MiB", value_parser = args::size)]
    pub size: usize,
    /// Size of each write (and of the raw baseline's reads and writes), like 1MiB.
    #[arg(long, default_value = "1MiB", value_parser = args::size)]
    pub chunk: usize,
    /// The stream's I/O buffer size (its largest single read or write), like 1MiB.
    #[arg(long, default_value_t = pipewright::DEFAULT_IO_BUFFER_SIZE, value_parser = args::size)]
    pub io_buffer: usize,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also measure tokio's own named pipes (Windows only; slow: 4 KiB reads).
    #[arg(long)]
    pub tokio: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark; returns the exit code.
pub async fn run(a: BenchArgs) -> u8 {
    let BenchWhat::Stream(s) = a.what;
    match stream(s).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("pipewright bench: {e:#}");
            exit::for_error(&e)
        }
    }
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn stream(a: StreamArgs) -> Result<()> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        a.chunk > 0 && a.size >= a.chunk,
        "--size must be at least --chunk"
    );
    let (mut raw, mut ours, mut tok) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let name = format!("pipewright-bench-raw-{}-{round}", std::process::id());
        let path = pipewright::PipeName::parse(&name)?.platform_path();
        let (size, chunk) = (a.size, a.chunk);
        let t = tokio::task::spawn_blocking(move || {
            crate::sys::baseline::raw_transfer(&path, size, chunk, 2)
                .with_context(|| format!("{path}: raw transfer"))
        })
        .await??;
        raw.push(mib_per_s(a.size, t));
        ours.push(mib_per_s(a.size, pipewright_transfer(&a, round).await?));
        if a.tokio {
            tok.push(mib_per_s(a.size, tokio_transfer(&a, round).await?));
        }
    }
    let (raw, ours) = (median(raw), median(ours));
    let ratio = ours / raw;
    let kind = if cfg!(windows) {
        "raw overlapped ReadFile/WriteFile, 2 reads + 2 writes in flight"
    } else {
        "raw blocking read/write on a Unix socket"
    };
    let tokio_line = (!tok.is_empty()).then(|| median(tok));
    if a.json {
        let v = serde_json::json!({
            "platform": if cfg!(windows) { "windows" } else { "unix" },
            "wine": pipewright::platform::wine_version(),
            "size": a.size, "chunk": a.chunk, "rounds": a.rounds,
            "raw_mib_s": raw, "pipewright_mib_s": ours, "ratio": ratio,
            "tokio_named_pipe_mib_s": tokio_line,
        });
        outln!("{v}");
    } else {
        outln!(
            "bench stream: {} MiB in {} KiB writes, median of {} rounds",
            a.size >> 20,
            a.chunk >> 10,
            a.rounds
        );
        outln!("  baseline ({kind}): {raw:.0} MiB/s");
        outln!("  pipewright stream:  {ours:.0} MiB/s  = {ratio:.2} of baseline");
        if let Some(t) = tokio_line {
            outln!(
                "  tokio named pipe:   {t:.0} MiB/s  = {:.2} of baseline",
                t / raw
            );
        }
    }
    Ok(())
}

/// Moves `size` bytes from `client` to `server` in `chunk`-byte writes; returns the time
/// from the first write until the server has read the last byte.
async fn timed_transfer<C, S>(
    mut client: C,
    mut server: S,
    size: usize,
    chunk: usize,
) -> Result<Duration>
where
    C: tokio::io::AsyncWrite + Unpin,
    S: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; chunk];
        let mut got = 0;
        while got < size {
            let n = server.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "stream ended after {got} bytes");
            got += n;
        }
        Ok::<_, anyhow::Error>(())
    });
    let data = vec![0x5au8; chunk];
    let mut sent = 0;
    while sent < size {
        let len = chunk.min(size - sent);
        client.write_all(&data[..len]).await?;
        sent += len;
    }
    client.flush().await?;
    reader.await?.context("reader")?;
    Ok(start.elapsed())
}

/// Moves `size` bytes from a pipewright client to a pipewright server.
async fn pipewright_transfer(a: &StreamArgs, round: usize) -> Result<Duration> {
    let name = format!("pipewright-bench-stream-{}-{round}", std::process::id());
    let lopts = ListenerOptions::new()
        .backlog(1)
        .io_buffer_size(a.io_buffer);
    let listener = Listener::bind_with(name.as_str(), &lopts)?;
    let copts = ConnectOptions::new().io_buffer_size(a.io_buffer);
    let client = connect_with(name.as_str(), &copts).await?;
    let server = listener.accept().await?;
    timed_transfer(client, server, a.size, a.chunk).await
}

/// Moves `size` bytes through tokio's own named pipes (4 KiB reads inside mio).
#[cfg(windows)]
async fn tokio_transfer(a: &StreamArgs, round: usize) -> Result<Duration> {
    use tokio::net::windows::named_pipe::{ClientOptions, ServerOptions};
    let path = format!(
        r"\\.\pipe\pipewright-bench-tokio-{}-{round}",
        std::process::id()
    );
    let server = ServerOptions::new()
        .first_pipe_instance(true)
        .create(&path)?;
    let client = ClientOptions::new().open(&path)?;
    server.connect().await?;
    timed_transfer(client, server, a.size, a.chunk).await
}

#[cfg(not(windows))]
async fn tokio_transfer(_a: &StreamArgs, _round: usize) -> Result<Duration> {
    anyhow::bail!("--tokio compares tokio's named pipes, which exist only on Windows")
}
