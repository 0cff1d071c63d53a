//! `pipewright netipc bench`: INCREMENT ping-pong against any netipc server for a duration
//! (or a number of requests), printed as one CSV line in the form other netipc
//! implementations' benchmarks print:
//! `scenario,client,server,throughput_rps,p50_us,p95_us,p99_us,client_cpu_pct,server_cpu_pct,total_cpu_pct`.
//!
//! Every answer is checked (INCREMENT(n) must answer n + 1 with status OK); a wrong answer, a
//! status answer, a dropped session or an answer that does not come within `--timeout` ends
//! the run with an error, never a silent count.
//!
//! `--depth N` is the number of requests in flight. On the baseline transport (UDS SEQPACKET,
//! named pipe) they are pipelined on one session: N requests with distinct message ids, each
//! answer matched by id in whatever order the server sends them. A shared-memory session
//! carries one request at a time (the protocol's rule), so over SHM `--depth N` is N sessions,
//! each driven on a thread of its own by the blocking client (the fast path: publish and wait on
//! the caller's thread) with one request in flight.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use pipewright_netipc::blocking;
use pipewright_netipc::client::{status_name, ClientConfig, ClientError};
use pipewright_netipc::codec::increment;
use pipewright_netipc::endpoint::DefaultTransport;
use pipewright_netipc::handshake::HandshakeError;
use pipewright_netipc::header::{method, TransportStatus};
use pipewright_netipc::session::{Session, SessionError};

use super::{describe, profile_name, profiles, session_exit, ProfileArg};
use crate::{args, exit};

/// The CSV header, the column order other netipc benchmarks print.
pub const CSV_HEADER: &str = "scenario,client,server,throughput_rps,p50_us,p95_us,p99_us,client_cpu_pct,server_cpu_pct,total_cpu_pct";

/// Most requests in flight: a pipelining client writes requests while it is not reading
/// answers, so both directions' buffers must hold them (a SEQPACKET socket's default buffer
/// holds a few hundred small packets).
pub const MAX_DEPTH: u32 = 128;

/// How long a run lasts when neither `--duration` nor `--requests` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(5);

/// Arguments of `netipc bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The run directory: the socket is DIR/SERVICE.sock on Linux; on Windows the pipe
    /// name hashes DIR byte for byte.
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,
    /// The service name of the INCREMENT server.
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// Transport profile: baseline (UDS SEQPACKET / named pipe) or shm (the run fails when the
    /// server does not select shared memory).
    #[arg(long, value_enum, default_value = "baseline")]
    pub profile: ProfileArg,
    /// The auth token, decimal or 0x hex.
    #[arg(long, default_value = "0", value_parser = super::token)]
    pub token: u64,
    /// How long to send requests, like 500ms, 5s, 1m (default 5s; with --requests alone,
    /// until that many are answered).
    #[arg(long, value_parser = args::duration)]
    pub duration: Option<Duration>,
    /// Stop after N answered requests (or at --duration, whichever comes first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Requests per second over all requests in flight; 0: as fast as the server answers.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Requests in flight: pipelined on one session over the baseline, one session each
    /// over shared memory (at most 128).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEPTH)))]
    pub depth: u32,
    /// Print the CSV header line before the values.
    #[arg(long)]
    pub header: bool,
    /// The scenario column (default: increment-uds, increment-npipe or increment-shm, with
    /// -dN for a depth above 1 and -rN for a rate).
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// The server column.
    #[arg(long, value_name = "NAME", default_value = "unknown")]
    pub server_name: String,
    /// The server's process id: fills server_cpu_pct and total_cpu_pct (left empty without
    /// it, and under Wine, which cannot tell another process's CPU time).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// How long the handshake, and each request's answer, may take, like 500ms, 10s.
    #[arg(long, short = 't', default_value = "10s", value_parser = args::duration)]
    pub timeout: Duration,
}

/// Why a run failed: the message for stderr and the exit code.
#[derive(Debug)]
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    fn new(code: u8, message: impl Into<String>) -> Fail {
        Fail {
            code,
            message: message.into(),
        }
    }

    fn session(e: &SessionError, answered: u64) -> Fail {
        let what = match e {
            SessionError::Closed => "the server closed the session".to_owned(),
            SessionError::Handshake(h) => handshake(h),
            other => describe(other),
        };
        Fail::new(session_exit(e), format!("{what}{}", after(answered)))
    }

    fn client(e: &ClientError, answered: u64) -> Fail {
        let what = match e {
            ClientError::Rejected(h) => handshake(h),
            ClientError::Session(SessionError::Closed) => "the server closed the session".into(),
            other => other.to_string(),
        };
        Fail::new(super::client_exit(e), format!("{what}{}", after(answered)))
    }

    fn timed_out(timeout: Duration, answered: u64) -> Fail {
        Fail::new(
            exit::TIMED_OUT,
            format!(
                "no answer within {timeout:?}{}; a slower server needs a longer --timeout",
                after(answered)
            ),
        )
    }

    fn wrong(sent: u64, got: u64, answered: u64) -> Fail {
        Fail::peer(
            format!(
                "wrong answer: INCREMENT({sent}) answered {got}, expected {}",
                sent + 1
            ),
            answered,
        )
    }

    /// The server broke the protocol: `what`, and how far the run got.
    fn peer(what: impl std::fmt::Display, answered: u64) -> Fail {
        Fail::new(exit::PEER_ERROR, format!("{what}{}", after(answered)))
    }
}

/// How far the run got, for an error message (nothing before the first answer).
fn after(answered: u64) -> String {
    match answered {
        0 => String::new(),
        n => format!(" (after {n} answered requests)"),
    }
}

/// A handshake failure, with the fix where the status names one.
fn handshake(e: &HandshakeError) -> String {
    match e {
        HandshakeError::AuthFailed => format!("{e}; the server expects another --token"),
        HandshakeError::Rejected(s) => format!("handshake rejected with {}", status_name(*s)),
        other => other.to_string(),
    }
}

/// What every driver shares: the request tickets, the stop conditions and the pacing.
struct Plan {
    next: AtomicU64,
    /// Set by a driver that failed, so the others stop at once.
    abort: AtomicBool,
    limit: Option<u64>,
    end: Option<Instant>,
    start: Instant,
    rate: u64,
    timeout: Duration,
}

impl Plan {
    /// The next request's number, or `None` when the run is over.
    fn ticket(&self, now: Instant) -> Option<u64> {
        if self.end.is_some_and(|end| now >= end) || self.abort.load(Ordering::Relaxed) {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(n) if k >= n => None,
            _ => Some(k),
        }
    }

    /// When request `k` is due (`None`: at once).
    fn due(&self, k: u64) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate);
        Some(self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

/// Latencies in a log-linear histogram: exact below 128 ns, then 64 buckets per power of
/// two (under 1 % error), so a run of millions of requests needs a few KiB.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; (2 * SUB + (63 - u64::from(SUB_BITS)) * SUB) as usize],
            total: 0,
        }
    }

    fn index(ns: u64) -> usize {
        if ns < 2 * SUB {
            return ns as usize;
        }
        let e = 63 - u64::from(ns.leading_zeros());
        let shift = e - u64::from(SUB_BITS);
        (2 * SUB + (e - u64::from(SUB_BITS) - 1) * SUB + ((ns >> shift) - SUB)) as usize
    }

    /// The middle of bucket `i`, in nanoseconds.
    fn value(i: usize) -> f64 {
        let i = i as u64;
        if i < 2 * SUB {
            return i as f64;
        }
        let e = (i - 2 * SUB) / SUB + u64::from(SUB_BITS) + 1;
        let shift = e - u64::from(SUB_BITS);
        let low = ((i - 2 * SUB) % SUB + SUB) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Histogram::index(ns)] += 1;
        self.total += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `q` quantile (nearest rank) in microseconds; 0 when empty.
    fn quantile_us(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Histogram::value(i) / 1000.0;
            }
        }
        0.0
    }
}

/// One driver's outcome.
struct Driven {
    hist: Histogram,
    answered: u64,
    finished: Instant,
}

/// Runs `netipc bench` and returns the exit code.
pub async fn run(a: BenchArgs, verbose: bool) -> u8 {
    if let Err(e) = pipewright_netipc::naming::validate_service_name(&a.service) {
        eprintln!("pipewright netipc bench: {e}");
        return exit::USAGE;
    }
    for (flag, v) in [
        ("--scenario", a.scenario.as_deref()),
        ("--server-name", Some(a.server_name.as_str())),
    ] {
        if v.is_some_and(|v| v.contains([',', '"', '\n', '\r'])) {
            eprintln!("pipewright netipc bench: {flag} {v:?} holds a comma, quote or line break; the CSV line needs a plain name");
            return exit::USAGE;
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The drivers block their threads (shared-memory waits, their own runtimes): keep them off
    // the command's runtime.
    std::thread::spawn(move || {
        let _ = tx.send(bench(&a, verbose));
    });
    match rx.await {
        Ok(Ok(lines)) => {
            for l in lines {
                outln!("{l}");
            }
            exit::OK
        }
        Ok(Err(f)) => {
            eprintln!("pipewright netipc bench: {}", f.message);
            f.code
        }
        Err(_) => {
            eprintln!("pipewright netipc bench: the benchmark thread ended without a result");
            exit::FAILURE
        }
    }
}

/// The CPU time of the server process, or a usage error naming the pid.
fn server_cpu(pid: u32) -> Result<Duration, Fail> {
    pipewright::platform::process_cpu_time_of(pid).map_err(|e| {
        Fail::new(
            exit::USAGE,
            format!("--server-pid {pid}: cannot read that process's CPU time ({e}); give the pid of a running server this user may query"),
        )
    })
}

fn client_cpu() -> Result<Duration, Fail> {
    pipewright::platform::process_cpu_time().map_err(|e| {
        Fail::new(
            exit::FAILURE,
            format!("cannot read this process's CPU time: {e}"),
        )
    })
}

/// Connects, runs, and returns the CSV lines.
fn bench(a: &BenchArgs, verbose: bool) -> Result<Vec<String>, Fail> {
    // The server's CPU time, when it can be read (not under Wine: docs/wine.md).
    let server_pid = match a.server_pid {
        Some(pid) => match pipewright::platform::process_cpu_time_of(pid) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                eprintln!("pipewright netipc bench: --server-pid {pid}: {e}; server_cpu_pct and total_cpu_pct are left empty");
                None
            }
            _ => server_cpu(pid).map(|_| Some(pid))?,
        },
        None => None,
    };
    let (supported_profiles, preferred_profiles) = profiles(a.profile);
    let endpoint = pipewright_netipc::handshake::EndpointConfig {
        supported_profiles,
        preferred_profiles,
        auth_token: a.token,
        ..Default::default()
    };
    let end_after = match (a.duration, a.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let mut plan = Plan {
        next: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        limit: a.requests,
        end: None,
        start: Instant::now(),
        rate: a.rate,
        timeout: a.timeout,
    };
    let begin = |plan: &mut Plan| -> Result<(Duration, Option<Duration>), Fail> {
        let server = server_pid.map(server_cpu).transpose()?;
        let cpu = client_cpu()?;
        plan.start = Instant::now();
        plan.end = end_after.map(|d| plan.start + d);
        Ok((cpu, server))
    };
    let (transport, driven, cpu0, server0, sessions) = match a.profile {
        ProfileArg::Baseline => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Fail::new(exit::FAILURE, format!("cannot start a runtime: {e}")))?;
            runtime.block_on(async {
                let connect = Session::connect(&a.run_dir, &a.service, &endpoint);
                let mut session = match tokio::time::timeout(a.timeout, connect).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(Fail::session(&e, 0)),
                    Err(_) => {
                        return Err(Fail::new(
                            exit::TIMED_OUT,
                            format!("no handshake within {:?}", a.timeout),
                        ))
                    }
                };
                let selected = session.negotiated().selected_profile;
                if verbose {
                    eprintln!(
                        "pipewright netipc bench: session {} over {}",
                        session.negotiated().session_id,
                        profile_name(selected)
                    );
                }
                let (cpu0, server0) = begin(&mut plan)?;
                let driven = pipelined(&mut session, &plan, a.depth as usize).await?;
                let name = if cfg!(windows) { "npipe" } else { "uds" };
                Ok((name, vec![driven], cpu0, server0, 1))
            })?
        }
        ProfileArg::Shm => {
            let mut clients = Vec::with_capacity(a.depth as usize);
            for _ in 0..a.depth {
                let config = ClientConfig {
                    call_timeout: a.timeout,
                    ..ClientConfig::new(endpoint)
                };
                let mut client =
                    blocking::Client::new(&a.run_dir, &a.service, config).map_err(|e| {
                        Fail::new(exit::FAILURE, format!("cannot start the client: {e}"))
                    })?;
                let n = client.connect().map_err(|e| Fail::client(&e, 0))?;
                if client.shm_profile().is_none() {
                    return Err(Fail::new(
                        exit::PEER_ERROR,
                        format!(
                            "--profile shm: the server selected {} for session {}: it does not offer shared memory, has no session slot left for it (--depth above its workers), or its region could not be attached; use --profile baseline or a smaller --depth",
                            profile_name(n.selected_profile),
                            n.session_id
                        ),
                    ));
                }
                if verbose {
                    eprintln!(
                        "pipewright netipc bench: session {} over {}",
                        n.session_id,
                        profile_name(n.selected_profile)
                    );
                }
                clients.push((client, n.session_id));
            }
            let (cpu0, server0) = begin(&mut plan)?;
            let plan = &plan;
            let driven = std::thread::scope(|s| {
                let handles: Vec<_> = clients
                    .into_iter()
                    .map(|(client, id)| {
                        s.spawn(move || {
                            let r = one_at_a_time(client, id, plan);
                            if r.is_err() {
                                plan.abort.store(true, Ordering::Relaxed);
                            }
                            r
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Fail::new(exit::FAILURE, "a benchmark thread panicked"))
                        })
                    })
                    .collect::<Result<Vec<_>, Fail>>()
            })?;
            ("shm", driven, cpu0, server0, a.depth)
        }
    };
    let cpu = client_cpu()?.saturating_sub(cpu0);
    let server = match (server_pid, server0) {
        (Some(pid), Some(before)) => Some(server_cpu(pid)?.saturating_sub(before)),
        _ => None,
    };
    let finished = driven
        .iter()
        .map(|d| d.finished)
        .max()
        .unwrap_or(plan.start);
    let wall = finished
        .duration_since(plan.start)
        .max(Duration::from_nanos(1));
    let mut hist = Histogram::new();
    let mut answered = 0;
    for d in &driven {
        hist.merge(&d.hist);
        answered += d.answered;
    }
    if verbose {
        eprintln!(
            "pipewright netipc bench: {answered} requests answered in {:.3} s over {sessions} session(s), depth {}, rate {}",
            wall.as_secs_f64(),
            a.depth,
            a.rate
        );
    }
    let pct = |d: Duration| d.as_secs_f64() * 100.0 / wall.as_secs_f64();
    let scenario = a.scenario.clone().unwrap_or_else(|| {
        let mut s = format!("increment-{transport}");
        if a.depth > 1 {
            s.push_str(&format!("-d{}", a.depth));
        }
        if a.rate > 0 {
            s.push_str(&format!("-r{}", a.rate));
        }
        s
    });
    let (server_pct, total_pct) = match server {
        Some(s) => (
            format!("{:.1}", pct(s)),
            format!("{:.1}", pct(s) + pct(cpu)),
        ),
        None => (String::new(), String::new()),
    };
    let line = format!(
        "{scenario},pipewright,{},{:.0},{:.2},{:.2},{:.2},{:.1},{server_pct},{total_pct}",
        a.server_name,
        answered as f64 / wall.as_secs_f64(),
        hist.quantile_us(0.50),
        hist.quantile_us(0.95),
        hist.quantile_us(0.99),
        pct(cpu),
    );
    let mut lines = Vec::new();
    if a.header {
        lines.push(CSV_HEADER.to_owned());
    }
    lines.push(line);
    Ok(lines)
}

/// The baseline driver: up to `depth` requests pipelined on one session, answers matched by
/// message id.
async fn pipelined(
    session: &mut Session<DefaultTransport>,
    plan: &Plan,
    depth: usize,
) -> Result<Driven, Fail> {
    let mut hist = Histogram::new();
    let mut answered = 0u64;
    // message id -> (value sent, when)
    let mut pending: HashMap<u64, (u64, Instant)> = HashMap::with_capacity(depth);
    let mut held: Option<u64> = None;
    let mut done = false;
    loop {
        // Send while a slot is free and a request is due.
        while !done && pending.len() < depth {
            let now = Instant::now();
            let k = match held.take().or_else(|| plan.ticket(now)) {
                Some(k) => k,
                None => {
                    done = true;
                    break;
                }
            };
            if let Some(due) = plan.due(k).filter(|&due| due > now) {
                if !pending.is_empty() {
                    // Not due yet: take an answer first.
                    held = Some(k);
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
            }
            let id = k + 1;
            let payload = increment::encode(k);
            let send = session.send_request_with_id(method::INCREMENT, id, &payload);
            match tokio::time::timeout(plan.timeout, send).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(Fail::session(&e, answered)),
                Err(_) => return Err(Fail::timed_out(plan.timeout, answered)),
            }
            pending.insert(id, (k, Instant::now()));
        }
        if pending.is_empty() {
            if done {
                break;
            }
            continue;
        }
        let m = match tokio::time::timeout(plan.timeout, session.recv_response()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(Fail::session(&e, answered)),
            Err(_) => return Err(Fail::timed_out(plan.timeout, answered)),
        };
        let received = Instant::now();
        let h = &m.header;
        let Some((sent, at)) = pending.remove(&h.message_id) else {
            return Err(Fail::peer(
                format!(
                    "an answer for message id {}, which is not in flight",
                    h.message_id
                ),
                answered,
            ));
        };
        if h.transport_status != TransportStatus::OK {
            return Err(Fail::peer(
                format!(
                    "INCREMENT({sent}) answered with status {}",
                    status_name(h.transport_status)
                ),
                answered,
            ));
        }
        if h.code != method::INCREMENT {
            return Err(Fail::peer(
                format!("INCREMENT({sent}) answered with method code {}", h.code),
                answered,
            ));
        }
        let got = increment::decode(&m.payload).map_err(|e| {
            Fail::peer(
                format!("INCREMENT({sent}): malformed answer ({e})"),
                answered,
            )
        })?;
        if got != sent.wrapping_add(1) {
            return Err(Fail::wrong(sent, got, answered));
        }
        hist.record(received.duration_since(at));
        answered += 1;
    }
    Ok(Driven {
        hist,
        answered,
        finished: Instant::now(),
    })
}

/// The shared-memory driver: one session, one request at a time, on the caller's thread.
/// The L2 client would reconnect after a dropped session; a new session id ends the run.
fn one_at_a_time(
    mut client: blocking::Client,
    session_id: u64,
    plan: &Plan,
) -> Result<Driven, Fail> {
    let mut hist = Histogram::new();
    let mut answered = 0u64;
    let mut now = Instant::now();
    while let Some(k) = plan.ticket(now) {
        if let Some(due) = plan.due(k).filter(|&due| due > now) {
            std::thread::sleep(due - now);
            now = Instant::now();
        }
        let got = match client.increment(k) {
            Ok(v) => v,
            Err(ClientError::TimedOut(t)) => return Err(Fail::timed_out(t, answered)),
            Err(e) => {
                let mut f = Fail::client(&e, answered);
                f.message = format!("session {session_id} ended: {}", f.message);
                return Err(f);
            }
        };
        let received = Instant::now();
        let current = client.negotiated().map(|n| n.session_id);
        if current != Some(session_id) {
            return Err(Fail::new(
                exit::PEER_ERROR,
                format!(
                    "the server dropped session {session_id}{} (the client had to reconnect)",
                    after(answered)
                ),
            ));
        }
        if got != k.wrapping_add(1) {
            return Err(Fail::wrong(k, got, answered));
        }
        hist.record(received.duration_since(now));
        answered += 1;
        now = received;
    }
    Ok(Driven {
        hist,
        answered,
        finished: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_one_percent() {
        for ns in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            10_000_000_000,
        ] {
            let i = Histogram::index(ns);
            let v = Histogram::value(i);
            let err = (v - ns as f64).abs() / (ns as f64).max(1.0);
            assert!(err < 0.01, "{ns} -> bucket {i} -> {v}");
        }
        assert!(Histogram::index(u64::MAX) < Histogram::new().counts.len());
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut h = Histogram::new();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let near = |a: f64, b: f64| (a - b).abs() / b < 0.01;
        assert!(near(h.quantile_us(0.50), 50.0), "{}", h.quantile_us(0.50));
        assert!(near(h.quantile_us(0.95), 95.0), "{}", h.quantile_us(0.95));
        assert!(near(h.quantile_us(0.99), 99.0), "{}", h.quantile_us(0.99));
        assert_eq!(Histogram::new().quantile_us(0.5), 0.0);
    }
}
