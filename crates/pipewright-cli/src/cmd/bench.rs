//! `pipewright bench stream`: the stream's throughput against raw platform I/O over the same
//! kind of pipe, measured side by side in one run (and tokio's own named pipes on Windows).
//! `pipewright bench pingpong`: small-message round trips through the stream (byte and
//! message mode) against a raw blocking ping-pong over the same kind of pipe, alternating.

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;
use clap::{Args, Subcommand};
use pipewright::{connect_with, ConnectOptions, Listener, ListenerOptions, PipeMode, PipeStream};
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
    /// Small-message round trips through a pipewright stream versus a raw blocking ping-pong.
    Pingpong(PingPongArgs),
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
    /// Also measure the stream turned blocking (`into_blocking`), one thread per side.
    #[arg(long)]
    pub blocking: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark; returns the exit code.
pub async fn run(a: BenchArgs) -> u8 {
    let result = match a.what {
        BenchWhat::Stream(s) => stream(s).await,
        BenchWhat::Pingpong(p) => ping_pong(p).await,
    };
    match result {
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
    let (mut raw, mut ours, mut tok, mut blk) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        if a.blocking {
            blk.push(mib_per_s(a.size, blocking_transfer(&a, round).await?));
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
    let blocking_line = (!blk.is_empty()).then(|| median(blk));
    if a.json {
        let v = serde_json::json!({
            "platform": if cfg!(windows) { "windows" } else { "unix" },
            "wine": pipewright::platform::wine_version(),
            "size": a.size, "chunk": a.chunk, "rounds": a.rounds,
            "raw_mib_s": raw, "pipewright_mib_s": ours, "ratio": ratio,
            "tokio_named_pipe_mib_s": tokio_line,
            "blocking_mib_s": blocking_line,
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
        if let Some(b) = blocking_line {
            outln!(
                "  blocking stream:    {b:.0} MiB/s  = {:.2} of baseline",
                b / raw
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

/// A fresh byte-mode client and server with `a`'s I/O buffer size.
async fn stream_pair(a: &StreamArgs, tag: &str) -> Result<(PipeStream, PipeStream)> {
    let name = format!("pipewright-bench-{tag}-{}", std::process::id());
    let lopts = ListenerOptions::new()
        .backlog(1)
        .io_buffer_size(a.io_buffer);
    let listener = Listener::bind_with(name.as_str(), &lopts)?;
    let copts = ConnectOptions::new().io_buffer_size(a.io_buffer);
    let client = connect_with(name.as_str(), &copts).await?;
    let server = listener.accept().await?;
    Ok((client, server))
}

/// Moves `size` bytes from a pipewright client to a pipewright server.
async fn pipewright_transfer(a: &StreamArgs, round: usize) -> Result<Duration> {
    let (client, server) = stream_pair(a, &format!("stream-{round}")).await?;
    timed_transfer(client, server, a.size, a.chunk).await
}

/// Moves `size` bytes from a pipewright client to a pipewright server, both turned blocking,
/// one thread per side (`io::Write::write_all`, `io::Read::read`).
async fn blocking_transfer(a: &StreamArgs, round: usize) -> Result<Duration> {
    use std::io::{Read, Write};
    let (client, server) = stream_pair(a, &format!("blocking-{round}")).await?;
    let mut client = client.into_blocking().await?;
    let mut server = server.into_blocking().await?;
    let (size, chunk) = (a.size, a.chunk);
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        std::thread::scope(|s| {
            let reader = s.spawn(move || {
                let mut buf = vec![0u8; chunk];
                let mut got = 0;
                while got < size {
                    let n = server.read(&mut buf)?;
                    anyhow::ensure!(n > 0, "stream ended after {got} bytes");
                    got += n;
                }
                Ok(())
            });
            let data = vec![0x5au8; chunk];
            let mut sent = 0;
            while sent < size {
                let len = chunk.min(size - sent);
                client.write_all(&data[..len])?;
                sent += len;
            }
            client.flush()?;
            reader
                .join()
                .map_err(|_| anyhow::anyhow!("reader thread panicked"))?
                .context("reader")
        })?;
        Ok(start.elapsed())
    })
    .await?
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

/// Options of `bench pingpong`.
#[derive(Debug, Args)]
pub struct PingPongArgs {
    /// Message sizes, comma separated, like 16,64,1KiB.
    #[arg(long, value_delimiter = ',', default_value = "16,64,1KiB", value_parser = args::size)]
    pub size: Vec<usize>,
    /// How long each case runs in each round, like 1s.
    #[arg(long, default_value = "1s", value_parser = args::duration)]
    pub time: Duration,
    /// Rounds; each runs every case once, in turn, and the medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Cases to run, comma separated (default: every case of this platform).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub case: Vec<Case>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One way of doing the round trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// Raw blocking I/O, one thread per side, no runtime: a byte pipe (Windows), a Unix socket.
    RawByte,
    /// Raw blocking I/O on a message pipe (Windows only; a Unix socket has no message mode).
    RawMessage,
    /// A pipewright stream in byte mode (`write_all`, `read_exact`).
    Byte,
    /// A pipewright stream in message mode (`send_message`, `recv_message`).
    Message,
    /// tokio's own named pipe in byte mode (Windows only): completions reach the runtime's
    /// own port, with no thread of ours in between; a reference for the stream's rows.
    Tokio,
    /// A pipewright stream in byte mode turned blocking (`into_blocking`), one thread per
    /// side, `io::Write`/`io::Read`.
    BlockingByte,
    /// A pipewright stream in message mode turned blocking, one thread per side.
    BlockingMessage,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::RawByte if cfg!(windows) => "raw blocking, byte pipe",
            Case::RawByte => "raw blocking, Unix socket",
            Case::RawMessage => "raw blocking, message pipe",
            Case::Byte => "pipewright byte mode",
            Case::Message => "pipewright message mode",
            Case::Tokio => "tokio named pipe, byte mode",
            Case::BlockingByte => "pipewright blocking, byte mode",
            Case::BlockingMessage => "pipewright blocking, message mode",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Case::RawByte => "raw-byte",
            Case::RawMessage => "raw-message",
            Case::Byte => "byte",
            Case::Message => "message",
            Case::Tokio => "tokio",
            Case::BlockingByte => "blocking-byte",
            Case::BlockingMessage => "blocking-message",
        }
    }

    /// The raw case this one is compared with.
    fn floor(self) -> Case {
        match self {
            Case::Message | Case::RawMessage | Case::BlockingMessage if cfg!(windows) => {
                Case::RawMessage
            }
            _ => Case::RawByte,
        }
    }
}

/// One ping-pong run, as both sides counted it.
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// Each round trip's latency, in order.
    pub latencies: Vec<Duration>,
    /// From the first measured request to the last answer.
    pub elapsed: Duration,
    /// Bytes the client read back and found equal to what it sent.
    pub bytes: u64,
    /// Requests the server answered, by its own count (warm-up included).
    pub echoed: u64,
    /// Round trips before the measured ones.
    pub warm_up: u64,
}

/// Ends a raw baseline run: joins its echo thread and puts the server's count into the
/// client's round trips. A failing server also fails the client: its error is the one to
/// report.
pub fn with_echoed(
    driven: io::Result<RoundTrips>,
    echo: std::thread::ScopedJoinHandle<'_, io::Result<u64>>,
) -> io::Result<RoundTrips> {
    let echoed = echo
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("echo thread panicked")))?;
    let mut trips = driven?;
    trips.echoed = echoed;
    Ok(trips)
}

/// Warm-up before each measured run.
const WARM_UP: Duration = Duration::from_millis(100);

/// Writes the round-trip number into the first bytes of a request.
fn stamp(msg: &mut [u8], n: u64) {
    let k = msg.len().min(8);
    msg[..k].copy_from_slice(&n.to_le_bytes()[..k]);
}

/// The client's side of a ping-pong run: [`WARM_UP`] round trips and then `run_for` of
/// measured ones, one at a time, each request stamped with its number and each answer
/// checked against it.
struct PingPong {
    msg: Vec<u8>,
    reply: Vec<u8>,
    out: RoundTrips,
    limits: [Duration; 2],
    phase: usize,
    start: Instant,
    now: Instant,
    n: u64,
}

impl PingPong {
    fn new(size: usize, run_for: Duration) -> PingPong {
        let start = Instant::now();
        PingPong {
            msg: vec![0x5au8; size],
            reply: vec![0u8; size],
            out: RoundTrips::default(),
            limits: [WARM_UP, run_for],
            phase: 0,
            start,
            now: start,
            n: 0,
        }
    }

    /// Stamps the next request, or returns `false` when the run is over.
    fn next(&mut self) -> bool {
        while self.now - self.start >= self.limits[self.phase] {
            self.out.elapsed = self.now - self.start;
            if self.phase == 1 {
                return false;
            }
            self.phase = 1;
            self.start = Instant::now();
            self.now = self.start;
        }
        stamp(&mut self.msg, self.n);
        true
    }

    /// Checks the answer in `reply` against the request and counts the round trip: with its
    /// latency once measured, as warm-up before.
    fn answered(&mut self) -> io::Result<()> {
        let t = Instant::now();
        let n = self.n;
        if self.reply != self.msg {
            return Err(io::Error::other(format!(
                "round trip {n}: the answer differs from the request"
            )));
        }
        if self.phase == 1 {
            self.out.latencies.push(t - self.now);
            self.out.bytes += self.msg.len() as u64;
        } else {
            self.out.warm_up += 1;
        }
        self.now = t;
        self.n += 1;
        Ok(())
    }
}

/// The client side of a blocking ping-pong: calls `trip(request, answer)` (one round trip)
/// for [`WARM_UP`] and then for `run_for`, timing each, checking each answer against its
/// request.
pub fn drive(
    size: usize,
    run_for: Duration,
    mut trip: impl FnMut(&[u8], &mut [u8]) -> io::Result<()>,
) -> io::Result<RoundTrips> {
    let mut p = PingPong::new(size, run_for);
    while p.next() {
        trip(&p.msg, &mut p.reply)?;
        p.answered()?;
    }
    Ok(p.out)
}

/// [`drive`] through a pipewright stream: `send_message`/`recv_message` in message mode,
/// `write_all`/`read_exact` in byte mode.
async fn drive_stream(conn: &mut PipeStream, size: usize, run_for: Duration) -> Result<RoundTrips> {
    if conn.mode() == PipeMode::Byte {
        return drive_bytes(conn, size, run_for).await;
    }
    let mut p = PingPong::new(size, run_for);
    while p.next() {
        conn.send_message(&p.msg).await?;
        let got = conn
            .recv_message()
            .await?
            .context("the server ended the stream")?;
        anyhow::ensure!(
            got.len() == size,
            "round trip {}: a {}-byte answer to a {size}-byte request",
            p.n,
            got.len()
        );
        p.reply.copy_from_slice(&got);
        p.answered()?;
    }
    Ok(p.out)
}

/// [`drive`] through any byte stream: `write_all`, then `read_exact` of the answer.
async fn drive_bytes<S>(conn: &mut S, size: usize, run_for: Duration) -> Result<RoundTrips>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut p = PingPong::new(size, run_for);
    while p.next() {
        conn.write_all(&p.msg).await?;
        conn.read_exact(&mut p.reply).await?;
        p.answered()?;
    }
    Ok(p.out)
}

/// The server side through pipewright: echoes each request until the client's end.
async fn echo_stream(mut conn: PipeStream, size: usize) -> Result<u64> {
    if conn.mode() == PipeMode::Byte {
        return echo_bytes(conn, size).await;
    }
    let mut echoed = 0u64;
    while let Some(m) = conn.recv_message().await? {
        conn.send_message(&m).await?;
        echoed += 1;
    }
    Ok(echoed)
}

/// Echoes `size`-byte requests on any byte stream until the client's end.
async fn echo_bytes<S>(mut conn: S, size: usize) -> Result<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut echoed = 0u64;
    let mut buf = vec![0u8; size];
    loop {
        // A clean end comes before a request's first byte.
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        conn.read_exact(&mut buf[n..]).await?;
        conn.write_all(&buf).await?;
        echoed += 1;
    }
    Ok(echoed)
}

/// A fresh pipewright client and server in `mode` (the listener is gone again).
async fn ping_pong_pair(name: &str, mode: PipeMode) -> Result<(PipeStream, PipeStream)> {
    let listener = Listener::bind_with(name, &ListenerOptions::new().backlog(1).mode(mode))?;
    let client = connect_with(name, &ConnectOptions::new().mode(mode)).await?;
    let server = listener.accept().await?;
    Ok((client, server))
}

/// Round trips of `size` bytes through a fresh pipewright listener and client in `mode`;
/// client and server are tasks of this runtime.
async fn pipewright_ping_pong(
    name: &str,
    mode: PipeMode,
    size: usize,
    run_for: Duration,
) -> Result<RoundTrips> {
    let (mut client, server) = ping_pong_pair(name, mode).await?;
    let driven = async move {
        let driven = drive_stream(&mut client, size, run_for).await;
        // Dropping the client ends the echo task (orderly in both modes).
        drop(client);
        driven
    };
    echo_and_drive(echo_stream(server, size), driven).await
}

/// Runs the echo server and the client as tasks of this runtime and puts the server's count
/// into the client's round trips. A failing server also fails the client: its error is the
/// one to report.
async fn echo_and_drive(
    echo: impl std::future::Future<Output = Result<u64>> + Send + 'static,
    drive: impl std::future::Future<Output = Result<RoundTrips>> + Send + 'static,
) -> Result<RoundTrips> {
    let echo = tokio::spawn(echo);
    let driven = tokio::spawn(drive).await?;
    let echoed = echo.await?.context("echo server")?;
    let mut trips = driven?;
    trips.echoed = echoed;
    Ok(trips)
}

/// Round trips of `size` bytes through a fresh pipewright listener and client in `mode`, both
/// turned blocking (`into_blocking`), one thread per side, as the raw rows do.
async fn blocking_ping_pong(
    name: &str,
    mode: PipeMode,
    size: usize,
    run_for: Duration,
) -> Result<RoundTrips> {
    let (client, server) = ping_pong_pair(name, mode).await?;
    let mut client = client.into_blocking().await?;
    let server = server.into_blocking().await?;
    let trips = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let echo = s.spawn(move || blocking_echo(server, size));
            let driven = drive(size, run_for, |msg, reply| {
                use std::io::{Read, Write};
                if mode == PipeMode::Byte {
                    client.write_all(msg)?;
                    return client.read_exact(reply);
                }
                client.send_message(msg)?;
                let got = client
                    .recv_message()?
                    .ok_or_else(|| io::Error::other("the server ended the stream"))?;
                if got.len() != reply.len() {
                    return Err(io::Error::other(format!(
                        "a {}-byte answer to a {}-byte request",
                        got.len(),
                        reply.len()
                    )));
                }
                reply.copy_from_slice(&got);
                Ok(())
            });
            // Dropping the client ends the echo thread (orderly in both modes).
            drop(client);
            with_echoed(driven, echo)
        })
    })
    .await?;
    Ok(trips?)
}

/// The server side of [`blocking_ping_pong`]: echoes each request until the client's end.
fn blocking_echo(mut conn: pipewright::BlockingPipeStream, size: usize) -> io::Result<u64> {
    use std::io::{Read, Write};
    let mut echoed = 0u64;
    if conn.mode() == PipeMode::Message {
        while let Some(m) = conn.recv_message()? {
            conn.send_message(&m)?;
            echoed += 1;
        }
        return Ok(echoed);
    }
    let mut buf = vec![0u8; size];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(echoed);
        }
        conn.read_exact(&mut buf[n..])?;
        conn.write_all(&buf)?;
        echoed += 1;
    }
}

/// Round trips of `size` bytes through tokio's own named pipe (byte mode); client and server
/// are tasks of this runtime.
#[cfg(windows)]
async fn tokio_ping_pong(name: &str, size: usize, run_for: Duration) -> Result<RoundTrips> {
    use tokio::net::windows::named_pipe::{ClientOptions, ServerOptions};
    let path = pipewright::PipeName::parse(name)?.platform_path();
    let server = ServerOptions::new()
        .first_pipe_instance(true)
        .create(&path)?;
    let mut client = ClientOptions::new().open(&path)?;
    server.connect().await?;
    let driven = async move {
        let driven = drive_bytes(&mut client, size, run_for).await;
        drop(client);
        driven
    };
    echo_and_drive(echo_bytes(server, size), driven).await
}

#[cfg(not(windows))]
async fn tokio_ping_pong(_name: &str, _size: usize, _run_for: Duration) -> Result<RoundTrips> {
    anyhow::bail!("--case tokio compares tokio's named pipes, which exist only on Windows")
}

/// The median, p50 and p99 of one case at one size.
#[derive(Debug, Clone, Copy)]
struct Row {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    round_trips: u64,
}

fn row(t: &RoundTrips) -> Row {
    let mut lat = t.latencies.clone();
    lat.sort_unstable();
    let pick = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Row {
        rate: lat.len() as f64 / t.elapsed.as_secs_f64().max(1e-9),
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        round_trips: lat.len() as u64,
    }
}

/// Checks that every round trip was answered: the server echoed exactly the requests the
/// client sent (warm-up included) and the client got every byte back.
fn verify(case: Case, size: usize, t: &RoundTrips) -> Result<()> {
    let measured = t.latencies.len() as u64;
    anyhow::ensure!(
        measured > 0,
        "{}: no round trip completed in the time given (use a longer --time)",
        case.name()
    );
    anyhow::ensure!(
        t.echoed == measured + t.warm_up && t.bytes == measured * size as u64,
        "{}, {size} B: the client counted {measured} round trips (+{} warm-up, {} bytes), the \
         server {}",
        case.name(),
        t.warm_up,
        t.bytes,
        t.echoed
    );
    Ok(())
}

async fn run_case(case: Case, size: usize, run_for: Duration, tag: &str) -> Result<RoundTrips> {
    let name = format!("pipewright-bench-pp-{}-{tag}", std::process::id());
    match case {
        Case::RawByte | Case::RawMessage => {
            let path = pipewright::PipeName::parse(&name)?.platform_path();
            let message = case == Case::RawMessage;
            tokio::task::spawn_blocking(move || {
                crate::sys::baseline::raw_ping_pong(&path, size, message, run_for)
                    .with_context(|| format!("{path}: raw ping-pong"))
            })
            .await?
        }
        Case::Byte => pipewright_ping_pong(&name, PipeMode::Byte, size, run_for).await,
        Case::Message => pipewright_ping_pong(&name, PipeMode::Message, size, run_for).await,
        Case::Tokio => tokio_ping_pong(&name, size, run_for).await,
        Case::BlockingByte => blocking_ping_pong(&name, PipeMode::Byte, size, run_for).await,
        Case::BlockingMessage => blocking_ping_pong(&name, PipeMode::Message, size, run_for).await,
    }
}

async fn ping_pong(a: PingPongArgs) -> Result<()> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        !a.size.is_empty() && a.size.iter().all(|&s| s > 0 && s <= 16 << 20),
        "--size takes message sizes from 1 byte to 16MiB"
    );
    let all: &[Case] = if cfg!(windows) {
        &[
            Case::RawByte,
            Case::RawMessage,
            Case::Byte,
            Case::Message,
            Case::Tokio,
            Case::BlockingByte,
            Case::BlockingMessage,
        ]
    } else {
        &[
            Case::RawByte,
            Case::Byte,
            Case::Message,
            Case::BlockingByte,
            Case::BlockingMessage,
        ]
    };
    let mut cases: Vec<Case> = if a.case.is_empty() {
        all.to_vec()
    } else {
        all.iter().copied().filter(|c| a.case.contains(c)).collect()
    };
    anyhow::ensure!(
        !cases.is_empty(),
        "--case raw-message needs a Windows message pipe (and --case tokio Windows named pipes); on Unix use raw-byte, byte or message"
    );
    cases.dedup();
    // figures[size][case][round]
    let mut figures = vec![vec![Vec::<Row>::new(); cases.len()]; a.size.len()];
    for round in 0..a.rounds {
        for (si, &size) in a.size.iter().enumerate() {
            for (ci, &case) in cases.iter().enumerate() {
                let tag = format!("{}-{round}-{si}", case.name());
                let t = run_case(case, size, a.time, &tag).await?;
                verify(case, size, &t)?;
                figures[si][ci].push(row(&t));
            }
        }
    }
    let med = |v: &[Row], f: fn(&Row) -> f64| median(v.iter().map(f).collect());
    let mut rows = Vec::new();
    for (si, &size) in a.size.iter().enumerate() {
        for (ci, &case) in cases.iter().enumerate() {
            let v = &figures[si][ci];
            // Ratios per round against the floor of the same round, then the median.
            let ratio = cases.iter().position(|&c| c == case.floor()).map(|fi| {
                median(
                    v.iter()
                        .zip(&figures[si][fi])
                        .map(|(o, r)| o.rate / r.rate)
                        .collect(),
                )
            });
            rows.push(serde_json::json!({
                "size": size,
                "case": case.name(),
                "label": case.label(),
                "round_trips_per_s": med(v, |r| r.rate),
                "p50_us": med(v, |r| r.p50_us),
                "p99_us": med(v, |r| r.p99_us),
                "ratio_to_raw": ratio,
                "raw_case": case.floor().name(),
                "round_trips": v.iter().map(|r| r.round_trips).collect::<Vec<_>>(),
                "verified": true,
            }));
        }
    }
    if a.json {
        let v = serde_json::json!({
            "platform": if cfg!(windows) { "windows" } else { "unix" },
            "wine": pipewright::platform::wine_version(),
            "rounds": a.rounds,
            "seconds_per_case": a.time.as_secs_f64(),
            "rows": rows,
        });
        outln!("{v}");
        return Ok(());
    }
    outln!(
        "bench pingpong: one request in flight, rounds: {}, {} per case, alternating; medians",
        a.rounds,
        humantime::format_duration(a.time)
    );
    outln!(
        "  {:<6} {:<34} {:>12} {:>9} {:>9} {:>8}",
        "size",
        "case",
        "round trips/s",
        "p50 us",
        "p99 us",
        "vs raw"
    );
    for r in &rows {
        let ratio = r["ratio_to_raw"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
        outln!(
            "  {:<6} {:<34} {:>12.0} {:>9.1} {:>9.1} {:>8}",
            size_label(r["size"].as_u64().unwrap_or(0)),
            r["label"].as_str().unwrap_or(""),
            r["round_trips_per_s"].as_f64().unwrap_or(0.0),
            r["p50_us"].as_f64().unwrap_or(0.0),
            r["p99_us"].as_f64().unwrap_or(0.0),
            ratio
        );
    }
    outln!("  every round trip checked: the answer equals the request, both sides' counts agree");
    Ok(())
}

fn size_label(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n / 1024)
    } else {
        format!("{n}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trips(measured: usize, warm_up: u64, echoed: u64, size: u64) -> RoundTrips {
        RoundTrips {
            latencies: vec![Duration::from_micros(5); measured],
            elapsed: Duration::from_millis(1),
            bytes: measured as u64 * size,
            echoed,
            warm_up,
        }
    }

    #[test]
    fn verify_accepts_agreeing_counts_and_rejects_the_rest() {
        verify(Case::Byte, 64, &trips(10, 3, 13, 64)).unwrap();
        // The server answered one request fewer than the client counted.
        let e = verify(Case::Byte, 64, &trips(10, 3, 12, 64)).unwrap_err();
        assert!(e.to_string().contains("the server 12"), "{e}");
        // Bytes that do not add up to the round trips.
        let e = verify(Case::Message, 64, &trips(10, 0, 10, 63)).unwrap_err();
        assert!(e.to_string().contains("message, 64 B"), "{e}");
        // Nothing measured.
        let e = verify(Case::RawByte, 64, &trips(0, 5, 5, 64)).unwrap_err();
        assert!(e.to_string().contains("longer --time"), "{e}");
    }

    #[test]
    fn drive_times_every_round_trip_and_checks_the_answer() {
        let t = drive(16, Duration::from_millis(20), |msg, reply| {
            reply.copy_from_slice(msg);
            Ok(())
        })
        .unwrap();
        assert!(!t.latencies.is_empty() && t.warm_up > 0);
        assert_eq!(t.bytes, t.latencies.len() as u64 * 16);
        let e = drive(16, Duration::from_millis(20), |_, reply| {
            reply.fill(0);
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("differs"), "{e}");
    }
}
