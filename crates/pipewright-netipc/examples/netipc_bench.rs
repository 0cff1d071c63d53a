//! Ping-pong benchmark of the netipc baseline profile (UDS SEQPACKET on Linux, named pipe
//! on Windows) and the shared-memory profile: INCREMENT requests/s with p50/p99 latency,
//! beside a raw round-trip of the same transport measured in the same run.
//!
//! Run: `cargo run --release -p pipewright-netipc --example netipc_bench -- [SECONDS [ROUNDS]]`
//! (Windows under Wine: `scripts/cargo-win run --release -p pipewright-netipc --example
//! netipc_bench -- [SECONDS [ROUNDS]]`). Each round runs every mode once; the table shows
//! medians over rounds, ratios taken per round.
//!
//! Modes, each a single client doing one request at a time against a server thread:
//! * `raw transport`: 40-byte packets echoed through the same `PacketTransport` type the
//!   sessions use, without netipc framing;
//! * `raw blocking` (Linux): a SEQPACKET socket pair with blocking calls on two threads, the
//!   kernel floor;
//! * `netipc L1`: `Session::call(INCREMENT)` against the managed server;
//! * `netipc L2`: `Client::increment` (reconnecting, learning client) against the same server.
//! * `netipc L2 blocking`: `blocking::Client::increment` against the same server: on Windows
//!   both ends of the pipe are blocking (the client waits on the caller's thread, the server
//!   serves the session on a thread of its own), the form a blocking C peer has.
//! * `raw shm`: 40-byte messages published and received through one shared-memory region
//!   (the same region code the sessions use: `shm::platform`), an echo thread on the other
//!   side, no session layer;
//! * `shm L1 session`, `shm L2 async`, `shm L2 blocking`: the same INCREMENT calls over the
//!   SHM profile (0x04) against a managed server offering it.
//!
//! * `raw blocking pipe` (Windows): 40-byte messages over a message pipe with synchronous
//!   `ReadFile`/`WriteFile`, one thread per side, no runtime: the floor. It is `pipewright
//!   bench pingpong --case raw-message` run as a child process, so the one implementation
//!   lives in the CLI's baseline; the `pipewright` binary is taken from `$PIPEWRIGHT_BIN` or
//!   next to this example (build it first: `cargo build --release -p pipewright-cli`, or
//!   `scripts/cargo-win build --release -p pipewright-cli`), and the row is left out without it.
//!
//! The `vs raw` column compares each mode with the raw round-trip of its own transport; `vs
//! blocking` compares the baseline-profile modes with the raw blocking row of the same round.

use pipewright_netipc::blocking;
use pipewright_netipc::client::{Client, ClientConfig};
use pipewright_netipc::codec::increment;
use pipewright_netipc::endpoint::{self, DefaultTransport};
use pipewright_netipc::handshake::EndpointConfig;
use pipewright_netipc::header::method;
use pipewright_netipc::hello::profile;
use pipewright_netipc::managed::{ManagedConfig, ManagedServer};
use pipewright_netipc::service::Increment;
use pipewright_netipc::session::Session;
use pipewright_netipc::shm::{platform, RegionParams, ShmError};
use pipewright_netipc::transport::{PacketListener, PacketTransport};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::runtime::{Builder, Runtime};

const TOKEN: u64 = 0x5eed;

struct Stats {
    name: &'static str,
    /// Index of the raw row this mode is compared with.
    raw: usize,
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

fn summarize(name: &'static str, mut lat: Vec<Duration>, elapsed: Duration) -> Stats {
    lat.sort_unstable();
    let pick = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Stats {
        name,
        raw: 0,
        requests: lat.len(),
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// Runs the `op` block repeatedly for `secs` seconds (after a 300 ms warm-up), recording
/// each latency; evaluates to the [`Stats`].
macro_rules! measure {
    ($name:expr, $secs:expr, $op:block) => {{
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(300) {
            $op
        }
        let mut lat = Vec::with_capacity(1 << 20);
        let start = Instant::now();
        let budget = Duration::from_secs_f64($secs);
        while start.elapsed() < budget {
            let t = Instant::now();
            $op
            lat.push(t.elapsed());
        }
        summarize($name, lat, start.elapsed())
    }};
}

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `serve` on its own thread and runtime; returns when it signalled ready.
fn server_thread<F, Fut>(serve: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce(std::sync::mpsc::Sender<()>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || runtime().block_on(serve(tx)));
    rx.recv().expect("server thread ready");
    t
}

fn raw_transport(dir: &Path, secs: f64) -> Stats {
    let d = dir.to_owned();
    let server = server_thread(move |ready| async move {
        let listener = endpoint::bind(&d, "raw", 0).expect("bind raw");
        ready.send(()).expect("ready");
        let mut t = PacketListener::accept(&listener).await.expect("accept");
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = t.recv_packet(&mut buf).await {
            if t.send_packet(&[&buf[..n]]).await.is_err() {
                break;
            }
        }
    });
    let stats = runtime().block_on(async {
        let mut t: DefaultTransport = endpoint::connect(dir, "raw", 0).await.expect("connect");
        let packet = [7u8; 40];
        let mut buf = vec![0u8; 65536];
        measure!("raw transport", secs, {
            t.send_packet(&[&packet]).await.expect("send");
            let n = t.recv_packet(&mut buf).await.expect("recv");
            assert_eq!(n, 40);
        })
    });
    server.join().expect("raw server");
    stats
}

#[cfg(target_os = "linux")]
fn raw_blocking(secs: f64) -> Stats {
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    let (mut a, mut b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).expect("socketpair");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = b.read(&mut buf) {
            if n == 0 || b.write(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let packet = [7u8; 40];
    let mut buf = [0u8; 256];
    let stats = measure!("raw blocking", secs, {
        a.write_all(&packet).expect("send");
        assert_eq!(a.read(&mut buf).expect("recv"), 40);
    });
    drop(a);
    echo.join().expect("echo thread");
    stats
}

/// The `pipewright` binary: `$PIPEWRIGHT_BIN`, else next to this example's directory.
fn pipewright_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PIPEWRIGHT_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir.join(format!("pipewright{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// `pipewright bench pingpong --case CASE --size 40` for `secs`, as a child process: the raw
/// blocking ping-pong of the CLI's baseline. `None` (with a note) when there is no binary.
fn raw_blocking_child(case: &str, secs: f64) -> Option<Stats> {
    let Some(bin) = pipewright_bin() else {
        eprintln!(
            "raw blocking row left out: no pipewright binary next to this example (build \
             pipewright-cli in the same profile, or set PIPEWRIGHT_BIN)"
        );
        return None;
    };
    let out = std::process::Command::new(&bin)
        .args([
            "bench", "pingpong", "--rounds", "1", "--size", "40", "--json",
        ])
        .args([
            "--case",
            case,
            "--time",
            &format!("{}ms", (secs * 1000.0) as u64),
        ])
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
    let rate = num("round_trips_per_s");
    let requests = row["round_trips"][0].as_u64().expect("round trips") as usize;
    Some(Stats {
        name: "raw blocking pipe",
        raw: 0,
        requests,
        elapsed: Duration::from_secs_f64(requests as f64 / rate),
        p50: Duration::from_secs_f64(num("p50_us") / 1e6),
        p99: Duration::from_secs_f64(num("p99_us") / 1e6),
    })
}

fn endpoint_config() -> EndpointConfig {
    EndpointConfig {
        auth_token: TOKEN,
        ..EndpointConfig::default()
    }
}

fn netipc(dir: &Path, secs: f64) -> [Stats; 3] {
    let d = dir.to_owned();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<pipewright_netipc::managed::Stopper>();
    let server = server_thread(move |ready| async move {
        let cfg = ManagedConfig::new(endpoint_config());
        let server = ManagedServer::bind(&d, "inc", cfg, Increment).expect("bind inc");
        stop_tx.send(server.stopper()).expect("stopper");
        ready.send(()).expect("ready");
        server.run().await.expect("server run");
    });
    let stopper = stop_rx.recv().expect("stopper");
    let (l1, l2) = runtime().block_on(async {
        let mut s = Session::connect(dir, "inc", &endpoint_config())
            .await
            .expect("connect");
        let mut v = 0u64;
        let l1 = measure!("netipc L1 session", secs, {
            let r = s
                .call(method::INCREMENT, &increment::encode(v))
                .await
                .expect("call");
            v = increment::decode(&r).expect("decode");
        });
        drop(s);
        let mut c = Client::new(dir, "inc", ClientConfig::new(endpoint_config()));
        let mut v = 0u64;
        let l2 = measure!("netipc L2 client", secs, {
            v = c.increment(v).await.expect("increment");
        });
        (l1, l2)
    });
    let mut c = blocking::Client::new(dir, "inc", ClientConfig::new(endpoint_config()))
        .expect("blocking client");
    let mut v = 0u64;
    let l2b = measure!("netipc L2 blocking", secs, {
        v = c.increment(v).expect("increment");
    });
    drop(c);
    stopper.stop();
    server.join().expect("server thread");
    [l1, l2, l2b]
}

fn shm_endpoint_config() -> EndpointConfig {
    EndpointConfig {
        supported_profiles: profile::BASELINE | profile::SHM_HYBRID | profile::SHM_FUTEX,
        preferred_profiles: profile::SHM_FUTEX,
        ..endpoint_config()
    }
}

fn raw_shm(dir: &Path, secs: f64) -> Stats {
    let params = RegionParams {
        run_dir: dir.to_str().expect("Unicode temp dir").to_owned(),
        service: "rawshm".into(),
        session_id: 1,
        auth_token: TOKEN,
        max_request_payload: 1024,
        max_response_payload: 1024,
    };
    let regions = platform::ServerRegions::create(&params, platform::SUPPORTED_PROFILES)
        .expect("create region");
    let mut server = regions.select(profile::SHM_FUTEX).expect("profile 0x04");
    let mut client = platform::attach_client(&params, profile::SHM_FUTEX, Duration::from_secs(5))
        .expect("attach region");
    let echo = std::thread::spawn(move || {
        let mut buf = Vec::new();
        loop {
            match server.receive(&mut buf, Duration::from_millis(100)) {
                Ok(()) if buf.len() == 1 => return,
                Ok(()) => server.send(&buf).expect("echo"),
                Err(ShmError::TimedOut(_)) => {}
                Err(e) => panic!("raw shm echo: {e}"),
            }
        }
    });
    let packet = [7u8; 40];
    let mut buf = Vec::new();
    let stats = measure!("raw shm", secs, {
        client.send(&packet).expect("send");
        client
            .receive(&mut buf, Duration::from_secs(10))
            .expect("receive");
        assert_eq!(buf.len(), 40);
    });
    client.send(&[0]).expect("stop");
    echo.join().expect("echo thread");
    stats
}

/// INCREMENT over the SHM profile: L1 session, L2 async client, blocking client.
fn netipc_shm(dir: &Path, secs: f64) -> [Stats; 3] {
    let server = blocking::ManagedServer::start(
        dir,
        "incshm",
        ManagedConfig::new(shm_endpoint_config()),
        Increment,
    )
    .expect("bind incshm");
    let (l1, l2) = runtime().block_on(async {
        let mut s = Session::connect(dir, "incshm", &shm_endpoint_config())
            .await
            .expect("connect");
        assert_eq!(
            s.shm_profile(),
            Some(profile::SHM_FUTEX),
            "SHM not selected"
        );
        let mut v = 0u64;
        let l1 = measure!("shm L1 session", secs, {
            let r = s
                .call(method::INCREMENT, &increment::encode(v))
                .await
                .expect("call");
            v = increment::decode(&r).expect("decode");
        });
        drop(s);
        let mut c = Client::new(dir, "incshm", ClientConfig::new(shm_endpoint_config()));
        let mut v = 0u64;
        let l2 = measure!("shm L2 async", secs, {
            v = c.increment(v).await.expect("increment");
        });
        assert_eq!(
            c.shm_profile(),
            Some(profile::SHM_FUTEX),
            "SHM not selected"
        );
        (l1, l2)
    });
    let mut c = blocking::Client::new(dir, "incshm", ClientConfig::new(shm_endpoint_config()))
        .expect("blocking client");
    let mut v = 0u64;
    let b = measure!("shm L2 blocking", secs, {
        v = c.increment(v).expect("increment");
    });
    assert_eq!(
        c.shm_profile(),
        Some(profile::SHM_FUTEX),
        "SHM not selected"
    );
    drop(c);
    server.stop();
    [l1, l2, b]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(2.0);
    let rounds: usize = args
        .next()
        .map(|s| s.parse().expect("ROUNDS must be a whole number"))
        .unwrap_or(3)
        .max(1);
    let dir: PathBuf = std::env::temp_dir().join(format!("nipc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let transport = if cfg!(target_os = "linux") {
        "UDS SEQPACKET"
    } else {
        "named pipe (message mode)"
    };
    let wine = if pipewright::platform::is_wine() {
        " under Wine"
    } else {
        ""
    };
    println!(
        "netipc ping-pong over {transport} and shared memory{wine}, {rounds} rounds of {secs} s \
         per mode"
    );
    // rounds[r] = the modes of round r, in a fixed order; ratios are per round.
    let mut per_round: Vec<Vec<Stats>> = Vec::new();
    for r in 0..rounds {
        let round_dir = dir.join(format!("r{r}"));
        std::fs::create_dir_all(&round_dir).expect("round dir");
        let mut all = vec![raw_transport(&round_dir, secs)];
        #[cfg(target_os = "linux")]
        all.push(raw_blocking(secs));
        if cfg!(windows) {
            all.extend(raw_blocking_child("raw-message", secs));
        }
        all.extend(netipc(&round_dir, secs));
        if platform::SUPPORTED_PROFILES & profile::SHM_FUTEX != 0 {
            let raw = all.len();
            all.push(raw_shm(&round_dir, secs));
            for mut st in netipc_shm(&round_dir, secs) {
                st.raw = raw;
                all.push(st);
            }
        }
        per_round.push(all);
    }
    // The baseline L2 client is the second reference: how much SHM buys.
    let l2 = per_round[0]
        .iter()
        .position(|st| st.name == "netipc L2 client")
        .expect("L2 row");
    // The floor of the baseline-profile rows: the raw blocking ping-pong, where there is one.
    let blocking = per_round[0]
        .iter()
        .position(|st| st.name.starts_with("raw blocking"));
    println!(
        "{:<20} {:>12} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "mode (median)", "req/s", "p50 us", "p99 us", "vs raw", "vs base L2", "vs blocking"
    );
    for m in 0..per_round[0].len() {
        let col = |f: &dyn Fn(&[Stats]) -> f64| median(per_round.iter().map(|r| f(r)).collect());
        let vs_blocking = match blocking {
            Some(b) if per_round[0][m].raw == 0 && !per_round[0][m].name.contains("shm") => {
                format!("{:.2}x", col(&|r| r[m].rate() / r[b].rate()))
            }
            _ => "-".to_owned(),
        };
        println!(
            "{:<20} {:>12.0} {:>10.1} {:>10.1} {:>11.2}x {:>11.2}x {vs_blocking:>12}",
            per_round[0][m].name,
            col(&|r| r[m].rate()),
            col(&|r| r[m].p50.as_secs_f64() * 1e6),
            col(&|r| r[m].p99.as_secs_f64() * 1e6),
            col(&|r| r[m].rate() / r[r[m].raw].rate()),
            col(&|r| r[m].rate() / r[l2].rate()),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
