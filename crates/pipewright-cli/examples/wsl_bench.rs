//! `pipewright wsl` against the recipe it replaces, in one run: new connections per second
//! for a 1 KiB request/response, bulk throughput of one stream, and the resident memory of
//! the daemon and the Windows host (idle, with idle connections, after a long transfer).
//!
//! ```text
//! cargo build --release -p pipewright-cli --bin pipewright --example wsl_bench
//! scripts/cargo-win build --release -p pipewright-cli --bin pipewright
//! PIPEWRIGHT_WIN_EXE=target/windows/x86_64-win7-windows-gnu/release/pipewright.exe \
//!     target/release/examples/wsl_bench
//! target/release/examples/wsl_bench --native    # the "Windows" side is the Linux binary
//! ```
//!
//! Options (defaults under Wine): `--rounds 3 --recipe-conns 20 --wsl-conns 500 --bulk-mib 256
//! --after-mib 1024 --idle-conns 100`, and `--no-nofork` to leave out the `nofork` recipe;
//! `--native` defaults to 200 and 2000 connections. Needs `socat`. Figures: docs/bench.md,
//! "`pipewright wsl`: connections, bulk and memory".
//!
//! The Windows side runs under Wine (`$WINE`, default `/usr/lib/wine/wine64`, with
//! `$WINEPREFIX`, default `~/.wine-pipewright`); with `--native` it is the Linux `pipewright`
//! itself (`$PIPEWRIGHT_BIN`, default beside this example's directory), a quick check
//! without Wine. Both paths reach the same pipe servers, `pipewright.exe bridge
//! npipe-listen:X tcp:127.0.0.1:PORT`, in front of an echo server and a counting sink in
//! this process:
//! - recipe: client -> `socat UNIX-LISTEN:SOCK,fork EXEC:"wine64 pipewright.exe relay -ei -s
//!   //./pipe/X"` (one Windows process per connection) -> pipe; also with `,nofork` (the
//!   relay's stdio is the socket itself, as docs/relay.md writes the recipe);
//! - wsl: client -> `pipewright wsl up` (Linux daemon) -> a yamux stream over the host's
//!   stdin and stdout -> `pipewright.exe wsl-host` (one Windows process) -> pipe.
//!
//! Connections are sequential: connect, write 1 KiB, read the 1 KiB echo, close (no
//! half-close: the shape of an ssh-agent exchange). Setup latency is connect until the first
//! reply byte. The paths alternate within each round; rates are medians of the rounds,
//! latencies percentiles of all connections. Memory is `VmRSS` from `/proc/PID/status`; for
//! a Windows program, of the Linux process that runs it under Wine (checked by its
//! `/proc/PID/cmdline`). CPU (user + system ticks from `/proc/PID/stat`) is split between
//! each route's own processes, the pipe server and, under Wine, wineserver, to show what
//! dominates. Ratios against the baselines measured in the same run are what to compare:
//! the machines are shared.

#[cfg(unix)]
mod bench {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, UnixStream};
    use tokio::process::{Child, Command};
    use tokio::sync::mpsc;

    const BLOCK: usize = 64 * 1024;
    const REQUEST: usize = 1024;
    const MIB: f64 = 1024.0 * 1024.0;
    /// How long one exchange or one bulk transfer may take before the bench gives up.
    const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
    const BULK_TIMEOUT: Duration = Duration::from_secs(600);
    /// How long memory is left to settle before it is read.
    const SETTLE: Duration = Duration::from_secs(3);

    struct Options {
        native: bool,
        rounds: usize,
        recipe_conns: usize,
        wsl_conns: usize,
        bulk_mib: u64,
        after_mib: u64,
        idle_conns: usize,
        nofork: bool,
    }

    fn parse_options() -> Options {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let native = argv.iter().any(|a| a == "--native");
        let mut o = Options {
            native,
            rounds: 3,
            recipe_conns: if native { 200 } else { 20 },
            wsl_conns: if native { 2000 } else { 500 },
            bulk_mib: 256,
            after_mib: 1024,
            idle_conns: 100,
            nofork: true,
        };
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let mut value = || -> u64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{a} wants a number"))
            };
            match a.as_str() {
                "--native" => {}
                "--no-nofork" => o.nofork = false,
                "--rounds" => o.rounds = value() as usize,
                "--recipe-conns" => o.recipe_conns = value() as usize,
                "--wsl-conns" => o.wsl_conns = value() as usize,
                "--bulk-mib" => o.bulk_mib = value(),
                "--after-mib" => o.after_mib = value(),
                "--idle-conns" => o.idle_conns = value() as usize,
                other => {
                    panic!("unknown argument {other}; see the doc comment of examples/wsl_bench.rs")
                }
            }
        }
        o
    }

    /// The Linux `pipewright`: `$PIPEWRIGHT_BIN`, else beside this example's directory.
    fn pipewright_binary() -> PathBuf {
        if let Some(p) = std::env::var_os("PIPEWRIGHT_BIN") {
            return p.into();
        }
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
        dir.join("pipewright")
    }

    /// How the "Windows" side is started: `wine64 pipewright.exe ...`, or the Linux binary.
    struct WinSide {
        native: bool,
        wine: PathBuf,
        exe: PathBuf,
        prefix: OsString,
    }

    impl WinSide {
        fn new(native: bool) -> Self {
            let exe = if native {
                pipewright_binary()
            } else {
                std::env::var_os("PIPEWRIGHT_WIN_EXE")
                    .map(PathBuf::from)
                    .expect(
                        "set PIPEWRIGHT_WIN_EXE to the Windows pipewright.exe (or pass --native)",
                    )
            };
            let exe =
                std::fs::canonicalize(&exe).unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
            let wine = std::env::var_os("WINE")
                .map_or_else(|| PathBuf::from("/usr/lib/wine/wine64"), PathBuf::from);
            let prefix = std::env::var_os("WINEPREFIX").unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                let mut p = PathBuf::from(home);
                p.push(".wine-pipewright");
                p.into_os_string()
            });
            WinSide {
                native,
                wine,
                exe,
                prefix,
            }
        }

        fn argv(&self, args: &[&str]) -> Vec<String> {
            let mut v = Vec::new();
            if !self.native {
                v.push(self.wine.display().to_string());
            }
            v.push(self.exe.display().to_string());
            v.extend(args.iter().map(|a| (*a).to_owned()));
            v
        }

        /// Sets Wine's environment on a command (inherited by what it starts).
        fn env(&self, c: &mut Command) {
            if !self.native {
                c.env("WINEPREFIX", &self.prefix).env("WINEDEBUG", "-all");
            }
        }

        fn command(&self, args: &[&str]) -> Command {
            let argv = self.argv(args);
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]).kill_on_drop(true);
            self.env(&mut c);
            c
        }

        /// The command as one line, for `/bin/sh` and socat's `EXEC:` (no quoting needed:
        /// checked).
        fn line(&self, args: &[&str]) -> String {
            let argv = self.argv(args);
            for a in &argv {
                assert!(
                    !a.contains([' ', ',', ':', '!', '"', '\'', '\\', '$', '`']),
                    "{a}: a path without spaces and shell or socat specials, please"
                );
            }
            argv.join(" ")
        }

        fn describe(&self) -> String {
            if self.native {
                "Linux (--native: the \"Windows\" side is the Linux binary)".to_owned()
            } else {
                let version = std::process::Command::new(&self.wine)
                    .arg("--version")
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default();
                format!("the Windows target under {version}")
            }
        }
    }

    fn unique(tag: &str) -> String {
        format!(
            "pw-wslb-{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    }

    /// A TCP echo server; returns its port.
    async fn tcp_echo() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                tokio::spawn(echo(conn));
            }
        });
        port
    }

    async fn echo(conn: impl AsyncRead + AsyncWrite + Unpin) {
        let (mut r, mut w) = tokio::io::split(conn);
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }

    /// An echo server on a pipe of this machine (Linux): the far end of the Linux relay
    /// whose idle memory is the daemon's baseline.
    fn native_echo(name: &str) {
        let listener = pipewright::Listener::bind(name).expect("bind");
        tokio::spawn(async move {
            while let Ok(conn) = listener.accept().await {
                tokio::spawn(echo(conn));
            }
        });
    }

    /// A TCP sink: counts each connection's bytes until `expected` have arrived (or the
    /// connection ended) and sends the count.
    struct Sink {
        port: u16,
        expected: Arc<AtomicU64>,
        counts: mpsc::UnboundedReceiver<u64>,
    }

    async fn tcp_sink() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let expected = Arc::new(AtomicU64::new(0));
        let (tx, counts) = mpsc::unbounded_channel();
        let want = expected.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let tx = tx.clone();
                let want = want.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024 * 1024];
                    let mut total = 0u64;
                    while let Ok(n) = conn.read(&mut buf).await {
                        total += n as u64;
                        if n == 0 || total >= want {
                            break;
                        }
                    }
                    let _ = tx.send(total);
                });
            }
        });
        Sink {
            port,
            expected,
            counts,
        }
    }

    /// One request/response on a new connection; returns the time from connect to the
    /// first reply byte.
    async fn exchange(path: &Path, request: &[u8]) -> std::io::Result<Duration> {
        let run = async {
            let start = Instant::now();
            let mut s = UnixStream::connect(path).await?;
            s.write_all(request).await?;
            let mut reply = vec![0u8; request.len()];
            let n = s.read(&mut reply).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before the reply",
                ));
            }
            let first = start.elapsed();
            s.read_exact(&mut reply[n..]).await?;
            if reply != request {
                return Err(std::io::Error::other("the echo differs from the request"));
            }
            Ok((first, s))
        };
        let (first, s) = tokio::time::timeout(EXCHANGE_TIMEOUT, run)
            .await
            .map_err(|_| std::io::Error::other("no reply within 60 s"))??;
        drop(s);
        Ok(first)
    }

    fn request() -> Vec<u8> {
        (0..REQUEST).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// `n` sequential exchanges: connections per second (failed ones count as time spent,
    /// not as connections), each setup latency, and the failures (with the first error).
    async fn batch(path: &Path, n: usize) -> (f64, Vec<Duration>, Vec<String>) {
        let request = request();
        let mut latencies = Vec::with_capacity(n);
        let mut failures = Vec::new();
        let start = Instant::now();
        for i in 0..n {
            match exchange(path, &request).await {
                Ok(l) => latencies.push(l),
                Err(e) => failures.push(format!("connection {i}: {e}")),
            }
        }
        assert!(
            failures.len() * 2 <= n,
            "{}: most connections failed: {failures:?}",
            path.display()
        );
        let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
        (rate, latencies, failures)
    }

    /// Writes `bytes` into a new connection, half-closes, and waits for the sink's count.
    /// Returns MiB/s from connect until the sink has counted the last byte.
    async fn bulk(path: &Path, sink: &mut Sink, bytes: u64) -> f64 {
        sink.expected.store(bytes, Ordering::SeqCst);
        let block = vec![0x5au8; BLOCK];
        let run = async {
            let start = Instant::now();
            let mut s = UnixStream::connect(path).await.expect("connect");
            let mut sent = 0u64;
            while sent < bytes {
                let n = (BLOCK as u64).min(bytes - sent) as usize;
                s.write_all(&block[..n]).await.expect("write");
                sent += n as u64;
            }
            s.shutdown().await.expect("shutdown");
            let got = sink.counts.recv().await.expect("a count from the sink");
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(got, bytes, "the sink counted {got} of {bytes} bytes");
            drop(s);
            bytes as f64 / MIB / secs
        };
        tokio::time::timeout(BULK_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("{}: bulk transfer timed out", path.display()))
    }

    async fn wait_for_file(path: &Path) {
        for _ in 0..600 {
            if path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not appear", path.display());
    }

    /// Retries one exchange until it works (the pipe servers start under Wine meanwhile).
    async fn ready(path: &Path, what: &str) {
        let request = request();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match exchange(path, &request).await {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("{what} never answered: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// `pipewright wsl up` in the foreground, serving the echo and sink pipes.
    struct Wsl {
        _daemon: Child,
        dir: PathBuf,
        echo: PathBuf,
        sink: PathBuf,
        daemon_pid: u32,
        host_pid: u32,
    }

    async fn start_wsl(win: &WinSide, dir: &Path, echo_pipe: &str, sink_pipe: &str) -> Wsl {
        let echo = dir.join("echo.sock");
        let sink = dir.join("sink.sock");
        let log = std::fs::File::create(dir.join("daemon.stderr")).expect("log");
        let mut c = Command::new(pipewright_binary());
        c.arg("wsl")
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .arg("--windows-command")
            .arg(win.line(&["wsl-host"]))
            .arg("--socket")
            .arg(format!("{}=npipe:{echo_pipe}", echo.display()))
            .arg("--socket")
            .arg(format!("{}=npipe:{sink_pipe}", sink.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        win.env(&mut c);
        let daemon = c.spawn().expect("start the wsl daemon");
        wait_for_file(&echo).await;
        wait_for_file(&sink).await;
        ready(&echo, "the wsl daemon's echo socket").await;
        let (daemon_pid, host_pid) = wsl_pids(dir).await;
        Wsl {
            _daemon: daemon,
            dir: dir.to_owned(),
            echo,
            sink,
            daemon_pid,
            host_pid,
        }
    }

    /// The daemon's and the host's pids, from `pipewright wsl status --json`.
    async fn wsl_pids(dir: &Path) -> (u32, u32) {
        let out = Command::new(pipewright_binary())
            .args(["wsl", "status", "--json", "--dir"])
            .arg(dir)
            .output()
            .await
            .expect("wsl status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("wsl status: {e}: {}", String::from_utf8_lossy(&out.stderr))
        });
        let daemon = v["daemon_pid"].as_u64().expect("daemon_pid") as u32;
        let host = v["windows_host"]["pid"].as_u64().expect("windows_host.pid") as u32;
        (daemon, host)
    }

    /// Connections the daemon holds open now (all sockets), from `pipewright wsl status --json`.
    async fn wsl_active(dir: &Path) -> u64 {
        let out = Command::new(pipewright_binary())
            .args(["wsl", "status", "--json", "--dir"])
            .arg(dir)
            .output()
            .await
            .expect("wsl status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["sockets"]
            .as_array()
            .map_or(0, |s| s.iter().filter_map(|s| s["active"].as_u64()).sum())
    }

    /// The highest RSS (KiB) of each of `pids` while `run` runs, sampled every 50 ms.
    async fn peak_rss<T>(pids: &[u32], run: impl std::future::Future<Output = T>) -> (T, Vec<u64>) {
        let mut peaks = vec![0u64; pids.len()];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tokio::pin!(run);
        loop {
            tokio::select! {
                out = &mut run => return (out, peaks),
                _ = tick.tick() => {
                    for (peak, pid) in peaks.iter_mut().zip(pids) {
                        *peak = (*peak).max(mem(*pid).rss_kib);
                    }
                }
            }
        }
    }

    /// The socat recipe on `sock`: a new relay process per connection.
    fn start_recipe(win: &WinSide, sock: &Path, pipe: &str, nofork: bool) -> Child {
        let log = std::fs::File::create(sock.with_extension("stderr")).expect("log");
        let relay = win.line(&["relay", "-ei", "-s", &format!("//./pipe/{pipe}")]);
        let mut c = Command::new("socat");
        c.arg(format!("UNIX-LISTEN:{},fork", sock.display()))
            .arg(format!(
                "EXEC:{relay}{}",
                if nofork { ",nofork" } else { "" }
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        win.env(&mut c);
        c.stderr(log);
        c.spawn().expect("start socat (apt-get install socat)")
    }

    #[derive(Debug, Clone, Copy, Default)]
    struct Mem {
        rss_kib: u64,
        hwm_kib: u64,
        threads: u64,
    }

    fn mem(pid: u32) -> Mem {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Mem {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        }
    }

    fn cmdline(pid: u32) -> String {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    }

    fn parent(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        after.split_whitespace().nth(1)?.parse().ok()
    }

    /// The process that runs `needle` (a subcommand of pipewright): `pid` itself when its
    /// command line says so (Wine's loader execs in place), else a descendant.
    fn holder(pid: u32, needle: &str) -> (u32, String) {
        let matches = |p: u32| {
            let c = cmdline(p);
            c.contains("pipewright") && c.contains(needle)
        };
        if matches(pid) {
            return (pid, cmdline(pid));
        }
        let mut family = vec![pid];
        let mut found = None;
        for _ in 0..4 {
            let procs: Vec<u32> = std::fs::read_dir("/proc")
                .expect("/proc")
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for p in procs {
                if parent(p).is_some_and(|pp| family.contains(&pp)) && !family.contains(&p) {
                    family.push(p);
                    if found.is_none() && matches(p) {
                        found = Some(p);
                    }
                }
            }
        }
        let p = found.unwrap_or_else(|| {
            panic!(
                "no process running pipewright {needle} under pid {pid}: {}",
                cmdline(pid)
            )
        });
        (p, cmdline(p))
    }

    /// An idle `relay -ei -s` to `pipe`, after one exchange through it: (child, pid).
    async fn idle_relay(mut command: Command, pipe: &str) -> (Child, u32) {
        command
            .arg("relay")
            .arg("-ei")
            .arg("-s")
            .arg(format!("//./pipe/{pipe}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start the relay");
        let request = request();
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        stdin.write_all(&request).await.expect("write to the relay");
        let mut reply = vec![0u8; request.len()];
        tokio::time::timeout(EXCHANGE_TIMEOUT, stdout.read_exact(&mut reply))
            .await
            .expect("the relay's reply in time")
            .expect("read from the relay");
        assert_eq!(reply, request);
        // Keep both ends open: an idle relay.
        child.stdin = Some(stdin);
        child.stdout = Some(stdout);
        let pid = child.id().expect("pid");
        (child, pid)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        v[v.len() / 2]
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(v: &[Duration], p: f64) -> f64 {
        let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }

    fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    /// A way through to the pipe servers: its sockets and its results.
    struct Route {
        name: &'static str,
        echo: PathBuf,
        sink: PathBuf,
        /// The processes of this route behind its echo and its sink socket (their waited-for
        /// children included: socat's relays).
        echo_own: Vec<u32>,
        sink_own: Vec<u32>,
        /// Whether `*_own` covers all of the route's processes: socat's relays count only
        /// with `nofork` (without it a relay outlives the socat child that started it and is
        /// never reaped by it).
        own_complete: bool,
        conns: usize,
        rates: Vec<f64>,
        latencies: Vec<Duration>,
        failures: Vec<String>,
        conn_cpu: CpuUse,
        bulk: Vec<f64>,
        bulk_cpu: CpuUse,
    }

    impl Route {
        fn new(name: &'static str, echo: PathBuf, sink: PathBuf, conns: usize) -> Self {
            Route {
                name,
                echo,
                sink,
                echo_own: Vec::new(),
                sink_own: Vec::new(),
                own_complete: true,
                conns,
                rates: Vec::new(),
                latencies: Vec::new(),
                failures: Vec::new(),
                conn_cpu: CpuUse::default(),
                bulk: Vec::new(),
                bulk_cpu: CpuUse::default(),
            }
        }
    }

    /// CPU clock ticks (1/100 s) a route used: its own processes, the pipe server, wineserver.
    #[derive(Debug, Clone, Copy, Default)]
    struct CpuUse {
        own: u64,
        server: u64,
        wineserver: u64,
    }

    /// CPU ticks of a process, user and system, its own plus those of its waited-for
    /// children (Linux `/proc/PID/stat`; 0 once it is gone).
    fn ticks(pid: u32) -> u64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0;
        };
        let Some(end) = stat.rfind(')') else {
            return 0;
        };
        stat[end + 2..]
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum()
    }

    fn ticks_of(pids: &[u32]) -> u64 {
        pids.iter().map(|p| ticks(*p)).sum()
    }

    /// The wineserver of `prefix` (`wineserver64` here; found by its environment), if one
    /// runs.
    fn wineserver(prefix: &std::ffi::OsStr) -> Option<u32> {
        let want = format!("WINEPREFIX={}", prefix.to_string_lossy());
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.starts_with("wineserver"))
                    && std::fs::read(format!("/proc/{p}/environ"))
                        .is_ok_and(|e| e.split(|b| *b == 0).any(|v| v == want.as_bytes()))
            })
    }

    /// Ticks of the pipe server and of wineserver around `run`, added to `cpu`.
    async fn metered<T>(
        server: u32,
        wine: Option<u32>,
        cpu: &mut CpuUse,
        run: impl std::future::Future<Output = T>,
    ) -> T {
        let (s0, w0) = (ticks(server), wine.map_or(0, ticks));
        let out = run.await;
        cpu.server += ticks(server).saturating_sub(s0);
        cpu.wineserver += wine.map_or(0, ticks).saturating_sub(w0);
        out
    }

    pub(crate) async fn main() {
        let o = parse_options();
        let win = WinSide::new(o.native);
        let dir = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir(&dir).expect("create the bench directory");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 700");
        let load_before = loadavg();
        let echo_pipe = unique("echo");
        let sink_pipe = unique("sink");

        // The pipe servers, in front of this process's echo and sink.
        let echo_port = tcp_echo().await;
        let mut sink = tcp_sink().await;
        let echo_server = win
            .command(&[
                "bridge",
                &format!("npipe-listen:{echo_pipe}"),
                &format!("tcp:127.0.0.1:{echo_port}"),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the echo pipe server");
        let sink_server = win
            .command(&[
                "bridge",
                &format!("npipe-listen:{sink_pipe}"),
                &format!("tcp:127.0.0.1:{}", sink.port),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the sink pipe server");

        // The daemon, then the recipes.
        let wsl = start_wsl(&win, &dir, &echo_pipe, &sink_pipe).await;
        let (host_pid, host_cmdline) = holder(wsl.host_pid, "wsl-host");
        let (echo_server_pid, _) = holder(echo_server.id().expect("pid"), "bridge");
        let (sink_server_pid, _) = holder(sink_server.id().expect("pid"), "bridge");
        let wine_server = if o.native {
            None
        } else {
            wineserver(&win.prefix)
        };
        let mut recipes = Vec::new();
        let mut routes = Vec::new();
        for (name, nofork) in [
            ("recipe: socat fork EXEC relay", false),
            ("recipe: same, nofork", true),
        ] {
            if nofork && !o.nofork {
                continue;
            }
            let tag = if nofork { "nofork" } else { "fork" };
            let echo = dir.join(format!("recipe-{tag}-echo.sock"));
            let sink_sock = dir.join(format!("recipe-{tag}-sink.sock"));
            let echo_socat = start_recipe(&win, &echo, &echo_pipe, nofork);
            let sink_socat = start_recipe(&win, &sink_sock, &sink_pipe, nofork);
            wait_for_file(&echo).await;
            wait_for_file(&sink_sock).await;
            ready(&echo, name).await;
            let mut route = Route::new(name, echo, sink_sock, o.recipe_conns);
            route.echo_own = vec![echo_socat.id().expect("pid")];
            route.sink_own = vec![sink_socat.id().expect("pid")];
            route.own_complete = nofork;
            routes.push(route);
            recipes.push(echo_socat);
            recipes.push(sink_socat);
        }
        let mut route = Route::new(
            "pipewright wsl",
            wsl.echo.clone(),
            wsl.sink.clone(),
            o.wsl_conns,
        );
        route.echo_own = vec![wsl.daemon_pid, host_pid];
        route.sink_own = vec![wsl.daemon_pid, host_pid];
        routes.push(route);

        // Memory, idle: the daemon and host after one exchange, and idle relays.
        let native_pipe = unique("native-echo");
        native_echo(&native_pipe);
        let (_linux_relay, linux_relay_pid) =
            idle_relay(Command::new(pipewright_binary()), &native_pipe).await;
        let win_relay = if o.native {
            None
        } else {
            let mut c = Command::new(&win.wine);
            c.arg(&win.exe);
            win.env(&mut c);
            let (child, pid) = idle_relay(c, &echo_pipe).await;
            let (pid, line) = holder(pid, "relay");
            Some((child, pid, line))
        };
        tokio::time::sleep(SETTLE).await;
        let idle_daemon = mem(wsl.daemon_pid);
        let idle_host = mem(host_pid);
        let linux_relay = mem(linux_relay_pid);
        let win_relay_mem = win_relay.as_ref().map(|(_, pid, _)| mem(*pid));

        // Memory with idle connections through the daemon.
        let request = request();
        let mut open = Vec::with_capacity(o.idle_conns);
        for i in 0..o.idle_conns {
            let mut s = UnixStream::connect(&wsl.echo).await.expect("connect");
            s.write_all(&request).await.expect("write");
            let mut reply = vec![0u8; request.len()];
            tokio::time::timeout(EXCHANGE_TIMEOUT, s.read_exact(&mut reply))
                .await
                .unwrap_or_else(|_| panic!("idle connection {i}: no reply"))
                .expect("read");
            open.push(s);
        }
        tokio::time::sleep(SETTLE).await;
        let conns_daemon = mem(wsl.daemon_pid);
        let conns_host = mem(host_pid);
        drop(open);
        tokio::time::sleep(SETTLE).await;
        let closed_daemon = mem(wsl.daemon_pid);
        let closed_host = mem(host_pid);

        // Connections per second, alternating paths within each round. Each route's own
        // processes idle while the others run, so their CPU is taken over the whole phase
        // (socat's relays count once reaped); the shared ones around each batch.
        let own: Vec<u64> = routes.iter().map(|r| ticks_of(&r.echo_own)).collect();
        let split = [ticks(wsl.daemon_pid), ticks(host_pid)];
        let mut lingering = 0;
        for _ in 0..o.rounds {
            for p in routes.iter_mut() {
                let (rate, lat, failed) = metered(
                    echo_server_pid,
                    wine_server,
                    &mut p.conn_cpu,
                    batch(&p.echo, p.conns),
                )
                .await;
                p.rates.push(rate);
                p.latencies.extend(lat);
                p.failures.extend(failed);
            }
            // The clients have closed them all; whatever the daemon still holds lingers.
            lingering = lingering.max(wsl_active(&wsl.dir).await);
        }
        tokio::time::sleep(SETTLE).await;
        for (p, before) in routes.iter_mut().zip(own) {
            p.conn_cpu.own = ticks_of(&p.echo_own).saturating_sub(before);
        }
        let conn_split = [
            ticks(wsl.daemon_pid).saturating_sub(split[0]),
            ticks(host_pid).saturating_sub(split[1]),
        ];
        let rounds_daemon = mem(wsl.daemon_pid);
        let rounds_host = mem(host_pid);

        // Bulk, one stream each, alternating.
        let bytes = o.bulk_mib * 1024 * 1024;
        for p in &routes {
            bulk(&p.sink, &mut sink, 1024 * 1024).await;
        }
        tokio::time::sleep(SETTLE).await;
        let own: Vec<u64> = routes.iter().map(|r| ticks_of(&r.sink_own)).collect();
        let split = [ticks(wsl.daemon_pid), ticks(host_pid)];
        for _ in 0..o.rounds {
            for p in routes.iter_mut() {
                let rate = metered(
                    sink_server_pid,
                    wine_server,
                    &mut p.bulk_cpu,
                    bulk(&p.sink, &mut sink, bytes),
                )
                .await;
                p.bulk.push(rate);
            }
        }
        tokio::time::sleep(SETTLE).await;
        for (p, before) in routes.iter_mut().zip(own) {
            p.bulk_cpu.own = ticks_of(&p.sink_own).saturating_sub(before);
        }
        let bulk_split = [
            ticks(wsl.daemon_pid).saturating_sub(split[0]),
            ticks(host_pid).saturating_sub(split[1]),
        ];
        let bulk_daemon = mem(wsl.daemon_pid);
        let bulk_host = mem(host_pid);

        // One long transfer through the daemon, then memory once it has ended.
        let (after_rate, during) = peak_rss(
            &[wsl.daemon_pid, host_pid],
            bulk(&wsl.sink, &mut sink, o.after_mib * 1024 * 1024),
        )
        .await;
        tokio::time::sleep(SETTLE).await;
        let after_daemon = mem(wsl.daemon_pid);
        let after_host = mem(host_pid);
        let load_after = loadavg();

        // Report.
        let wsl_row = routes.len() - 1;
        println!(
            "wsl_bench on {}: {} rounds, load average {load_before} before, {load_after} after",
            win.describe(),
            o.rounds
        );
        println!(
            "wsl host pid {host_pid} (reported {}): {host_cmdline}",
            wsl.host_pid
        );
        if let Some((_, pid, line)) = &win_relay {
            println!("idle Windows relay pid {pid}: {line}");
        }
        println!();
        println!("New connections, 1 KiB request and 1 KiB echo each, sequential:");
        println!(
            "| path | connections per round | connections/s (median) | setup p50 ms | setup p99 ms | failed |"
        );
        println!("|---|---|---|---|---|---|");
        for p in &routes {
            println!(
                "| {} | {} | {:.1} | {:.2} | {:.2} | {} |",
                p.name,
                p.conns,
                median(p.rates.clone()),
                percentile_ms(&p.latencies, 50.0),
                percentile_ms(&p.latencies, 99.0),
                p.failures.len()
            );
        }
        for p in &routes {
            if let Some(first) = p.failures.first() {
                let mut log = p.echo.with_extension("stderr");
                if !log.exists() {
                    log = p.echo.with_file_name("daemon.stderr");
                }
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(3).collect();
                println!(
                    "{}: {} failed, first: {first}; its stderr ends: {tail:?}",
                    p.name,
                    p.failures.len()
                );
            }
        }
        println!();
        println!("CPU per connection, ms (own: the route's processes, socat's relays included):");
        println!("| path | own | pipe server | wineserver | total |");
        println!("|---|---|---|---|---|");
        for p in &routes {
            let n = (p.conns * o.rounds).max(1) as f64;
            let ms = |t: u64| t as f64 * 10.0 / n;
            let c = p.conn_cpu;
            let mark = if p.own_complete { "" } else { " (socat only)" };
            println!(
                "| {} | {:.2}{mark} | {:.2} | {:.2} | {:.2}{mark} |",
                p.name,
                ms(c.own),
                ms(c.server),
                ms(c.wineserver),
                ms(c.own + c.server + c.wineserver)
            );
        }
        let n = (o.wsl_conns * o.rounds).max(1) as f64;
        println!(
            "wsl own CPU per connection: daemon {:.2} ms, host {:.2} ms",
            conn_split[0] as f64 * 10.0 / n,
            conn_split[1] as f64 * 10.0 / n
        );
        let wsl_rate = median(routes[wsl_row].rates.clone());
        for p in &routes[..wsl_row] {
            println!(
                "wsl / {}: {:.1}x connections per second (goal >= 20x)",
                p.name,
                wsl_rate / median(p.rates.clone())
            );
        }
        println!();
        println!(
            "Bulk, one stream of {} MiB into a counting sink, 64 KiB writes:",
            o.bulk_mib
        );
        println!("| path | MiB/s (median) | runs |");
        println!("|---|---|---|");
        for p in &routes {
            let runs: Vec<String> = p.bulk.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "| {} | {:.0} | {} |",
                p.name,
                median(p.bulk.clone()),
                runs.join(", ")
            );
        }
        println!();
        println!("CPU per GiB moved, s:");
        println!("| path | own | pipe server | wineserver | total |");
        println!("|---|---|---|---|---|");
        for p in &routes {
            let gib = (bytes * o.rounds as u64) as f64 / (1024.0 * MIB);
            let s = |t: u64| t as f64 / 100.0 / gib;
            let c = p.bulk_cpu;
            let mark = if p.own_complete { "" } else { " (socat only)" };
            println!(
                "| {} | {:.2}{mark} | {:.2} | {:.2} | {:.2}{mark} |",
                p.name,
                s(c.own),
                s(c.server),
                s(c.wineserver),
                s(c.own + c.server + c.wineserver)
            );
        }
        let gib = (bytes * o.rounds as u64) as f64 / (1024.0 * MIB);
        println!(
            "wsl own CPU per GiB: daemon {:.2} s, host {:.2} s",
            bulk_split[0] as f64 / 100.0 / gib,
            bulk_split[1] as f64 / 100.0 / gib
        );
        let wsl_bulk = median(routes[wsl_row].bulk.clone());
        for p in &routes[..wsl_row] {
            println!(
                "wsl / {}: {:.2}x throughput (goal >= 0.8x)",
                p.name,
                wsl_bulk / median(p.bulk.clone())
            );
        }
        println!(
            "{} MiB through wsl: {after_rate:.0} MiB/s; RSS peak during it: daemon {:.1} MiB, host {:.1} MiB",
            o.after_mib,
            mib(during[0]),
            mib(during[1])
        );
        println!();
        let n = o.idle_conns.max(1) as f64;
        let per_conn = |a: Mem, b: Mem| (b.rss_kib as f64 - a.rss_kib as f64) / n;
        println!("Resident memory (VmRSS MiB; threads):");
        println!(
            "| process | idle | {} idle conns | per conn KiB | conns closed | after conn rounds | after bulk rounds | after {} MiB ended | peak (VmHWM) |",
            o.idle_conns, o.after_mib
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (name, m) in [
            (
                "wsl daemon (Linux)",
                [
                    idle_daemon,
                    conns_daemon,
                    closed_daemon,
                    rounds_daemon,
                    bulk_daemon,
                    after_daemon,
                ],
            ),
            (
                if o.native {
                    "wsl host (Linux, --native)"
                } else {
                    "wsl host (Windows, Wine)"
                },
                [
                    idle_host,
                    conns_host,
                    closed_host,
                    rounds_host,
                    bulk_host,
                    after_host,
                ],
            ),
        ] {
            println!(
                "| {name} | {:.1} ({}) | {:.1} ({}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} ({}) | {:.1} |",
                mib(m[0].rss_kib),
                m[0].threads,
                mib(m[1].rss_kib),
                m[1].threads,
                per_conn(m[0], m[1]),
                mib(m[2].rss_kib),
                mib(m[3].rss_kib),
                mib(m[4].rss_kib),
                mib(m[5].rss_kib),
                m[5].threads,
                mib(m[5].hwm_kib)
            );
        }
        println!(
            "| idle `relay -ei -s` (Linux) | {:.1} ({}) | | | | | | | {:.1} |",
            mib(linux_relay.rss_kib),
            linux_relay.threads,
            mib(linux_relay.hwm_kib)
        );
        if let Some(m) = win_relay_mem {
            println!(
                "| idle `relay -ei -s` (Windows, Wine) | {:.1} ({}) | | | | | | | {:.1} |",
                mib(m.rss_kib),
                m.threads,
                mib(m.hwm_kib)
            );
        }
        let host_base = win_relay_mem.unwrap_or(linux_relay);
        println!(
            "idle host / idle relay: {:.2}x; idle daemon / idle Linux relay: {:.2}x (goal <= 1.5x)",
            idle_host.rss_kib as f64 / host_base.rss_kib as f64,
            idle_daemon.rss_kib as f64 / linux_relay.rss_kib as f64
        );
        println!(
            "per idle connection: daemon {:.1} KiB, host {:.1} KiB (goal <= 64 KiB each)",
            per_conn(idle_daemon, conns_daemon),
            per_conn(idle_host, conns_host)
        );
        println!(
            "after the {} MiB transfer ended: daemon {:+.1} MiB over idle ({:+.1} over just before it), \
             host {:+.1} MiB over idle ({:+.1} over just before it)",
            o.after_mib,
            mib(after_daemon.rss_kib) - mib(idle_daemon.rss_kib),
            mib(after_daemon.rss_kib) - mib(bulk_daemon.rss_kib),
            mib(after_host.rss_kib) - mib(idle_host.rss_kib),
            mib(after_host.rss_kib) - mib(bulk_host.rss_kib)
        );
        println!(
            "connections the daemon still held right after a round's last wsl connection closed: \
             up to {lingering}"
        );
        println!(
            "after {} idle connections closed: daemon {:+.1} MiB over idle, host {:+.1} MiB",
            o.idle_conns,
            mib(closed_daemon.rss_kib) - mib(idle_daemon.rss_kib),
            mib(closed_host.rss_kib) - mib(idle_host.rss_kib)
        );

        // Stop the daemon orderly (it ends the host), then the rest by dropping.
        let _ = Command::new(pipewright_binary())
            .args(["wsl", "down", "--dir"])
            .arg(&wsl.dir)
            .status()
            .await;
        drop(recipes);
        let _ = std::fs::remove_dir_all(&dir);
        // Killed servers leave their socket files behind (Linux pipes are Unix sockets).
        for name in [&echo_pipe, &sink_pipe, &native_pipe] {
            if let Ok(pipe) = pipewright::PipeName::parse(name) {
                let path = pipe.unix_path();
                let mut lock = path.clone().into_os_string();
                lock.push(".lock");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(lock);
            }
        }
    }
}

#[cfg(unix)]
#[tokio::main]
async fn main() {
    bench::main().await;
}

#[cfg(not(unix))]
fn main() {
    eprintln!(
        "wsl_bench runs on Linux: it drives the Windows side under Wine (see its doc comment)"
    );
}
