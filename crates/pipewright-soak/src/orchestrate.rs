//! The orchestrator: starts the server process and the bridge chain, runs the clients,
//! collects the figures and decides the checks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

use crate::client::{self, Behaviour, Outcome, Target, Worker};
use crate::names::Names;
use crate::proto::Rng;
use crate::sys::Sample;

/// Open handles (Windows) or fds (Unix) the server process may hold at the end beyond its
/// count at the start: runtime and blocking-pool threads that linger, the forwarder's (at
/// most 2) idle upstream connections, allocator and timer handles created on first use.
/// Windows counts more per thread and per pipe (both ends of the forwarder's pooled
/// connections are in the process), and ends at start + 3 to + 9 whatever the run's length
/// (20 s and 60 s alike). A leak of one handle per connection shows as hundreds: a run makes
/// hundreds of connections.
pub const HANDLE_TOLERANCE: u64 = if cfg!(windows) { 16 } else { 8 };
/// How long the server process may take, after the last client is gone, to come back within
/// the tolerance (connections that end asynchronously, lingering writes).
pub const SETTLE_SECONDS: u64 = 15;
/// An operation that takes longer than this is counted as hung.
const OP_WATCHDOG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub seconds: u64,
    pub clients: usize,
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: 60,
            clients: 24,
            seed: None,
        }
    }
}

/// Counts per target.
#[derive(Debug, Default)]
struct Counts {
    done: AtomicU64,
    bytes: AtomicU64,
    slow: AtomicU64,
    cancelled: AtomicU64,
    abandoned: AtomicU64,
    killed: AtomicU64,
    connect_failed: AtomicU64,
    mismatch: AtomicU64,
    errors: AtomicU64,
    hung: AtomicU64,
}

#[derive(Debug, Default)]
struct Tally {
    per_target: [Counts; 7],
    /// The first problems seen (at most 40).
    problems: Mutex<Vec<String>>,
}

impl Tally {
    fn note(&self, target: Target, what: &str) {
        let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < 40 {
            p.push(format!("{}: {what}", target.name()));
        }
    }

    fn record(&self, target: Target, behaviour: Behaviour, o: Outcome) {
        let c = &self.per_target[target.index()];
        let add = |a: &AtomicU64| {
            a.fetch_add(1, Ordering::Relaxed);
        };
        match o {
            Outcome::Done(bytes) => {
                add(&c.done);
                if behaviour == Behaviour::Slow {
                    add(&c.slow);
                }
                c.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Outcome::Cancelled => add(&c.cancelled),
            Outcome::Abandoned => add(&c.abandoned),
            Outcome::Killed => add(&c.killed),
            Outcome::ConnectFailed(m) => {
                add(&c.connect_failed);
                self.note(target, &format!("connect failed: {m}"));
            }
            Outcome::Mismatch(m) => {
                add(&c.mismatch);
                self.note(target, &format!("MISMATCH: {m}"));
            }
            Outcome::Error(m) => {
                add(&c.errors);
                self.note(target, &format!("error: {m}"));
            }
        }
    }

    fn sum(&self, f: impl Fn(&Counts) -> &AtomicU64) -> u64 {
        self.per_target
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .sum()
    }
}

/// The server process and its command channel.
struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ServerProcess {
    async fn start(exe: &Path, tag: &str) -> Result<ServerProcess, String> {
        let mut child = Command::new(exe)
            .args(["serve", tag])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start the server process {}: {e}", exe.display()))?;
        let stdin = child.stdin.take().ok_or("server process: no stdin")?;
        let stdout = child.stdout.take().ok_or("server process: no stdout")?;
        let mut p = ServerProcess {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let ready = p.line(Duration::from_secs(60)).await?;
        if ready != "ready" {
            return Err(format!("server process: expected `ready`, got {ready:?}"));
        }
        Ok(p)
    }

    async fn line(&mut self, within: Duration) -> Result<String, String> {
        match timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(l))) => Ok(l),
            Ok(Ok(None)) => Err("the server process ended (see its output above)".into()),
            Ok(Err(e)) => Err(format!("server process stdout: {e}")),
            Err(_) => Err(format!(
                "the server process did not answer within {within:?}"
            )),
        }
    }

    async fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| format!("server process stdin: {e}"))
    }

    async fn sample(&mut self, kind: &str) -> Result<Sample, String> {
        let l = self.line(Duration::from_secs(60)).await?;
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            [k, rss, private, handles] if *k == kind => Ok(Sample {
                rss: rss.parse().unwrap_or(0),
                private: private.parse().unwrap_or(0),
                handles: handles.parse().unwrap_or(0),
            }),
            _ => Err(format!("server process: expected `{kind} ...`, got {l:?}")),
        }
    }
}

/// The `pipewright` binary: `PIPEWRIGHT_BIN`, else the one next to this executable (the same
/// cargo build directory).
fn pipewright_bin(exe: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PIPEWRIGHT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = exe.with_file_name(format!("pipewright{}", std::env::consts::EXE_SUFFIX));
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "no pipewright binary at {}: build it with `cargo build -p pipewright-cli` (the same \
             profile as this soak binary) or set PIPEWRIGHT_BIN",
            p.display()
        ))
    }
}

fn bridge(bin: &Path, a: &str, b: &str) -> Result<Child, String> {
    Command::new(bin)
        .args(["bridge", a, b])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start {} bridge {a} {b}: {e}", bin.display()))
}

/// Starts `npipe-listen:FRONT -> tcp:127.0.0.1:P` and `tcp-listen:127.0.0.1:P -> npipe:ECHO`
/// and waits until both serve.
async fn start_bridges(bin: &Path, names: &Names) -> Result<[Child; 2], String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("pick a free TCP port: {e}"))?
        .port();
    let tcp = format!("127.0.0.1:{port}");
    let back = bridge(
        bin,
        &format!("tcp-listen:{tcp}"),
        &format!("npipe:{}", names.echo),
    )?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(&tcp).await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the tcp-listen bridge never listened on {tcp}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let front = bridge(
        bin,
        &format!("npipe-listen:{}", names.front),
        &format!("tcp:{tcp}"),
    )?;
    let opts = pipewright::ConnectOptions::new().timeout(Duration::from_secs(60));
    pipewright::connect_with(names.front.as_str(), &opts)
        .await
        .map_err(|e| format!("the npipe-listen bridge never served {}: {e}", names.front))?;
    Ok([back, front])
}

fn pick_behaviour(rng: &mut Rng) -> Behaviour {
    match rng.range(0, 100) {
        0..55 => Behaviour::Normal,
        55..72 => Behaviour::Cancel,
        72..84 => Behaviour::Slow,
        84..96 => Behaviour::NeverRead,
        _ => Behaviour::Kill,
    }
}

async fn worker(
    mut w: Worker,
    exe: PathBuf,
    tag: String,
    deadline: Instant,
    tally: Arc<Tally>,
    kill_slots: Arc<tokio::sync::Semaphore>,
) {
    while Instant::now() < deadline {
        let target = Target::ALL[w.rng.range(0, Target::ALL.len() as u64) as usize];
        let mut behaviour = pick_behaviour(&mut w.rng);
        // Process starts are costly (most of all under Wine): two killed clients at a time.
        let permit = if behaviour == Behaviour::Kill {
            match kill_slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    behaviour = Behaviour::Normal;
                    None
                }
            }
        } else {
            None
        };
        let op = async {
            if behaviour == Behaviour::Kill {
                client::spawn_and_kill(&exe, &tag, target, &mut w.rng).await
            } else {
                w.run(target, behaviour).await
            }
        };
        match timeout(OP_WATCHDOG, op).await {
            Ok(o) => tally.record(target, behaviour, o),
            Err(_) => {
                tally.per_target[target.index()]
                    .hung
                    .fetch_add(1, Ordering::Relaxed);
                tally.note(
                    target,
                    &format!("HUNG: a {behaviour:?} operation took over {OP_WATCHDOG:?}"),
                );
            }
        }
        drop(permit);
    }
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

pub async fn run(opts: Options) -> Result<bool, String> {
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let platform = if pipewright::platform::is_wine() {
        "windows (under Wine)"
    } else {
        std::env::consts::OS
    };
    println!(
        "soak: {platform}, {} s, {} clients, seed {seed} (repeat with --seed {seed})",
        opts.seconds, opts.clients
    );
    let exe = std::env::current_exe().map_err(|e| format!("find this executable: {e}"))?;
    let tag = format!("{}-{:x}", std::process::id(), seed & 0xffff_ffff);
    let names = Names::new(&tag);
    let bin = pipewright_bin(&exe)?;
    let mut server = ServerProcess::start(&exe, &tag).await?;
    let server_pid = server.child.id().unwrap_or(0);
    let mut bridges = start_bridges(&bin, &names).await?;
    // Let the connections of the readiness probes end before the start figure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.send("sample").await?;
    let start = server.sample("sample").await?;

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let kill_slots = Arc::new(tokio::sync::Semaphore::new(2));
    let mut workers = tokio::task::JoinSet::new();
    let mut seeder = Rng::new(seed);
    for _ in 0..opts.clients {
        let w = Worker::new(seeder.next_u64(), names.clone());
        workers.spawn(worker(
            w,
            exe.clone(),
            tag.clone(),
            deadline,
            tally.clone(),
            kill_slots.clone(),
        ));
    }
    let mut client_panics = 0u64;
    while let Some(r) = workers.join_next().await {
        if let Err(e) = r {
            if e.is_panic() {
                client_panics += 1;
            }
        }
    }
    let ran = started.elapsed();
    // Every client is gone: the server process settles, then reports.
    server
        .send(&format!(
            "settle {} {HANDLE_TOLERANCE} {SETTLE_SECONDS}",
            start.handles
        ))
        .await?;
    let end = server.sample("end").await?;
    let peak = server.sample("peak").await?;
    let kinds = server.line(Duration::from_secs(60)).await?;
    let bridges_alive = bridges.iter_mut().all(|b| matches!(b.try_wait(), Ok(None)));
    for b in &mut bridges {
        let _ = b.start_kill();
        let _ = b.wait().await;
    }
    server.send("quit").await?;
    let bye = server.line(Duration::from_secs(60)).await;
    let status = timeout(Duration::from_secs(30), server.child.wait()).await;
    let (server_panics, accept_errors, server_stopped) = match &bye {
        Ok(l) => {
            let w: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            (
                w.first().copied().unwrap_or(0),
                w.get(1).copied().unwrap_or(0),
                w.get(2) == Some(&1),
            )
        }
        Err(_) => (0, 0, false),
    };
    let exited_ok = matches!(status, Ok(Ok(s)) if s.success());
    let _ = std::fs::remove_dir_all(&names.netipc_dir);

    // The table.
    println!();
    println!(
        "{:<11} {:>6} {:>9} {:>5} {:>9} {:>10} {:>6} {:>8} {:>8} {:>6} {:>4}",
        "target",
        "done",
        "MiB",
        "slow",
        "cancelled",
        "never-read",
        "killed",
        "conn-err",
        "mismatch",
        "errors",
        "hung"
    );
    for t in Target::ALL {
        let c = &tally.per_target[t.index()];
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "{:<11} {:>6} {:>9} {:>5} {:>9} {:>10} {:>6} {:>8} {:>8} {:>6} {:>4}",
            t.name(),
            l(&c.done),
            mib(l(&c.bytes)),
            l(&c.slow),
            l(&c.cancelled),
            l(&c.abandoned),
            l(&c.killed),
            l(&c.connect_failed),
            l(&c.mismatch),
            l(&c.errors),
            l(&c.hung)
        );
    }
    let done = tally.sum(|c| &c.done);
    let bytes = tally.sum(|c| &c.bytes);
    let cancelled = tally.sum(|c| &c.cancelled);
    let abandoned = tally.sum(|c| &c.abandoned);
    let killed = tally.sum(|c| &c.killed);
    let slow = tally.sum(|c| &c.slow);
    let connect_failed = tally.sum(|c| &c.connect_failed);
    let mismatch = tally.sum(|c| &c.mismatch);
    let errors = tally.sum(|c| &c.errors);
    let hung = tally.sum(|c| &c.hung);
    println!(
        "{:<11} {:>6} {:>9} {:>5} {:>9} {:>10} {:>6} {:>8} {:>8} {:>6} {:>4}",
        "total",
        done,
        mib(bytes),
        slow,
        cancelled,
        abandoned,
        killed,
        connect_failed,
        mismatch,
        errors,
        hung
    );
    println!(
        "operations: {} in {:.1} s; checked transfers {done}, {} MiB moved and verified",
        done + cancelled + abandoned + killed + connect_failed + mismatch + errors + hung,
        ran.as_secs_f64(),
        mib(bytes)
    );
    let handles_word = if cfg!(windows) { "handles" } else { "fds" };
    println!();
    println!("server process (pid {server_pid}; the figures are its own):");
    println!(
        "{:<6} {:>9} {:>13} {:>8}",
        "", "RSS MiB", "private MiB", handles_word
    );
    for (k, s) in [("start", start), ("peak", peak), ("end", end)] {
        println!(
            "{k:<6} {:>9} {:>13} {:>8}",
            mib(s.rss),
            if cfg!(windows) {
                mib(s.private)
            } else {
                "-".into()
            },
            s.handles
        );
    }
    if let ["kinds", start_kinds, end_kinds] = kinds.split_whitespace().collect::<Vec<_>>()[..] {
        if start_kinds != "-" {
            println!("{handles_word} by kind at start: {start_kinds}");
            println!("{handles_word} by kind at end:   {end_kinds}");
        }
    }
    let problems = tally
        .problems
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !problems.is_empty() {
        println!();
        println!("first problems:");
        for p in &problems {
            println!("  {p}");
        }
    }

    // The checks.
    let mut checks: Vec<(bool, String)> = Vec::new();
    let mut check = |ok: bool, what: String| checks.push((ok, what));
    check(
        connect_failed == 0,
        format!("connect failures with retrying clients: {connect_failed} (goal 0)"),
    );
    check(
        mismatch == 0,
        format!("checksum mismatches (bytes reported written that did not arrive): {mismatch}"),
    );
    check(
        errors == 0,
        format!("unexpected errors in transfers that were not cancelled: {errors}"),
    );
    check(
        hung == 0,
        format!("operations hung past {OP_WATCHDOG:?}: {hung}"),
    );
    let panics = client_panics + server_panics + crate::server::PANICS.load(Ordering::Relaxed);
    check(
        panics == 0,
        format!("panics (clients and server process): {panics}"),
    );
    let idle: Vec<&str> = Target::ALL
        .iter()
        .filter(|t| tally.per_target[t.index()].done.load(Ordering::Relaxed) == 0)
        .map(|t| t.name())
        .collect();
    check(
        idle.is_empty(),
        format!("every server completed checked transfers (none: {idle:?})"),
    );
    check(
        end.handles <= start.handles + HANDLE_TOLERANCE && start.handles > 0,
        format!(
            "server {handles_word} back to start after the clients: start {}, peak {}, end {} \
             (tolerance +{HANDLE_TOLERANCE}, settle up to {SETTLE_SECONDS} s)",
            start.handles, peak.handles, end.handles
        ),
    );
    check(
        accept_errors == 0,
        format!("listener accept errors in the server process: {accept_errors}"),
    );
    check(
        bridges_alive,
        "both bridge processes still running at the end".into(),
    );
    check(
        server_stopped && exited_ok,
        format!(
            "the server process stopped every server and exited cleanly (stopped: \
             {server_stopped}, exit: {status:?})"
        ),
    );
    println!();
    let passed = checks.iter().filter(|(ok, _)| *ok).count();
    let failed = checks.len() - passed;
    for (ok, what) in &checks {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    println!("soak: {passed} passed, {failed} failed");
    Ok(failed == 0)
}
