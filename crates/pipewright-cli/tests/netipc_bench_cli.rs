//! `pipewright netipc bench` against `pipewright netipc serve`, both real processes: UDS
//! SEQPACKET and shared memory on Linux, named pipes and shared memory on Windows.

mod cli_support;

use cli_support::{finish, netipc_serve, pipewright, stderr, stdout, RunDir, Served};

use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};

/// The token Netdata's benchmarks use.
const TOKEN: &str = "0xBE4C400000C0FFEE";

const HEADER: &str = "scenario,client,server,throughput_rps,p50_us,p95_us,p99_us,client_cpu_pct,server_cpu_pct,total_cpu_pct";

/// Starts `netipc serve --service inc --token TOKEN` with `extra` and waits for its ready
/// line; the server is killed when the result is dropped.
/// Starts `netipc serve --service inc --token TOKEN` with `extra`; see [`netipc_serve`].
fn serve(dir: &RunDir, extra: &[&str]) -> Served {
    netipc_serve(dir, "inc", &[&["--token", TOKEN], extra].concat())
}

fn spawn_bench(dir: &RunDir, args: &[&str]) -> Child {
    pipewright()
        .args([
            "netipc",
            "bench",
            "--run-dir",
            dir.arg(),
            "--service",
            "inc",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netipc bench")
}

fn bench(dir: &RunDir, args: &[&str]) -> Output {
    finish(spawn_bench(dir, args), 120)
}

/// Runs the bench, asserts exit 0, and returns (stdout, stderr).
fn bench_ok(dir: &RunDir, args: &[&str]) -> (String, String) {
    let o = bench(dir, args);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    (out, err)
}

/// The columns of one CSV values line, checked for shape: 10 fields, the numeric ones
/// numeric, throughput above 0, p50 <= p95 <= p99; the server and total CPU columns numeric
/// when `server_cpu` (they are empty without --server-pid).
struct Row {
    scenario: String,
    server: String,
    client_cpu: f64,
    server_cpu: Option<f64>,
    total_cpu: Option<f64>,
}

fn row(line: &str, server_cpu: bool) -> Row {
    let f: Vec<&str> = line.split(',').collect();
    assert_eq!(f.len(), 10, "{line}");
    assert!(!f[0].is_empty(), "{line}");
    assert_eq!(f[1], "pipewright", "{line}");
    let num = |i: usize| -> f64 {
        f[i].parse()
            .unwrap_or_else(|_| panic!("column {i} is not numeric: {line}"))
    };
    assert!(num(3) > 0.0, "throughput: {line}");
    let (p50, p95, p99) = (num(4), num(5), num(6));
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "percentiles: {line}");
    assert!(num(7) >= 0.0, "{line}");
    let (server_cpu, total_cpu) = if server_cpu {
        let (s, t) = (num(8), num(9));
        assert!(s >= 0.0, "{line}");
        // Each is rounded to 0.1 on its own.
        assert!(
            (t - (num(7) + s)).abs() <= 0.15,
            "total = client + server: {line}"
        );
        (Some(s), Some(t))
    } else {
        assert_eq!((f[8], f[9]), ("", ""), "{line}");
        (None, None)
    };
    Row {
        scenario: f[0].to_owned(),
        server: f[2].to_owned(),
        client_cpu: num(7),
        server_cpu,
        total_cpu,
    }
}

/// The number of answered requests and the seconds the -v summary reports.
fn summary(err: &str) -> (u64, f64) {
    let line = err
        .lines()
        .find(|l| l.contains("requests answered in"))
        .unwrap_or_else(|| panic!("no summary on stderr: {err}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "requests")
        .expect("requests");
    (
        words[at - 1].parse().expect("count"),
        words[at + 3].parse().expect("seconds"),
    )
}

/// A one-second run per profile, with the header and the server's CPU columns.
fn profile_run(profile: &str, transport: &str) {
    let dir = RunDir::new("pw-nbench");
    let server = serve(&dir, &["--method", "increment", "--profile", profile]);
    let pid = server.id().to_string();
    let (out, err) = bench_ok(
        &dir,
        &[
            "--token",
            TOKEN,
            "--profile",
            profile,
            "--duration",
            "1s",
            "--header",
            "--server-pid",
            &pid,
            "--server-name",
            "pipewright",
            "-v",
        ],
    );
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], HEADER);
    // Wine cannot tell another process's CPU time (docs/wine.md): the columns stay empty and
    // stderr says why.
    let wine = pipewright::platform::is_wine();
    let r = row(lines[1], !wine);
    assert_eq!(r.scenario, format!("increment-{transport}"));
    assert_eq!(r.server, "pipewright");
    if wine {
        assert!(err.contains("are left empty"), "{err}");
    } else {
        // The server answered every request: it used CPU for them.
        assert!(r.server_cpu.unwrap() > 0.0, "{out}");
        assert!(r.total_cpu.unwrap() >= r.client_cpu, "{out}");
    }
    let want = if profile == "shm" {
        "shared memory"
    } else {
        "BASELINE"
    };
    assert!(err.contains(want), "{err}");
}

#[test]
fn baseline_ping_pong_against_our_server() {
    profile_run("baseline", if cfg!(windows) { "npipe" } else { "uds" });
}

#[test]
fn shm_ping_pong_against_our_server() {
    profile_run("shm", "shm");
}

#[test]
fn without_server_pid_one_line_and_empty_server_columns() {
    let dir = RunDir::new("pw-nbench");
    let _s = serve(&dir, &["--method", "increment"]);
    let (out, _) = bench_ok(&dir, &["--token", TOKEN, "--requests", "200"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let r = row(&out, false);
    assert_eq!(r.server, "unknown");
    assert!(r.server_cpu.is_none() && r.total_cpu.is_none());
}

#[test]
fn requests_stops_after_exactly_that_many_answers() {
    let dir = RunDir::new("pw-nbench");
    let _s = serve(&dir, &["--method", "increment", "--profile", "shm"]);
    for profile in ["baseline", "shm"] {
        let (out, err) = bench_ok(
            &dir,
            &[
                "--token",
                TOKEN,
                "--profile",
                profile,
                "--requests",
                "300",
                "-v",
            ],
        );
        row(&out, false);
        assert_eq!(summary(&err).0, 300, "{profile}: {err}");
    }
}

#[test]
fn depth_pipelines_on_the_baseline_and_opens_sessions_over_shm() {
    let dir = RunDir::new("pw-nbench");
    let _s = serve(&dir, &["--method", "increment", "--profile", "shm"]);
    let args = |profile| {
        [
            "--token",
            TOKEN,
            "--profile",
            profile,
            "--depth",
            "4",
            "--requests",
            "1000",
            "--scenario",
            "deep",
            "-v",
        ]
    };
    let (out, err) = bench_ok(&dir, &args("baseline"));
    assert_eq!(row(&out, false).scenario, "deep");
    assert_eq!(summary(&err).0, 1000, "{err}");
    assert!(err.contains("over 1 session(s), depth 4"), "{err}");
    let (out, err) = bench_ok(&dir, &args("shm"));
    row(&out, false);
    assert_eq!(summary(&err).0, 1000, "{err}");
    assert!(err.contains("over 4 session(s), depth 4"), "{err}");
}

#[test]
fn rate_bounds_the_number_of_requests() {
    let dir = RunDir::new("pw-nbench");
    let _s = serve(&dir, &["--method", "increment"]);
    let (out, err) = bench_ok(
        &dir,
        &[
            "--token",
            TOKEN,
            "--rate",
            "20",
            "--depth",
            "2",
            "--duration",
            "1s",
            "-v",
        ],
    );
    assert_eq!(
        row(&out, false).scenario,
        if cfg!(windows) {
            "increment-npipe-d2-r20"
        } else {
            "increment-uds-d2-r20"
        }
    );
    // Request k is sent no earlier than k/20 s after the start, so however slow the machine,
    // at most 20 per reported second plus the one sent at the start.
    let (n, secs) = summary(&err);
    assert!(n >= 1, "{err}");
    assert!(n as f64 <= 20.0 * secs + 1.0, "{err}");
}

#[test]
fn wrong_token_is_a_clear_error() {
    let dir = RunDir::new("pw-nbench");
    let _s = serve(&dir, &["--method", "increment"]);
    let o = bench(&dir, &["--token", "1", "--duration", "1s"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(7), "{err}");
    assert!(
        err.contains("AUTH_FAILED") && err.contains("--token"),
        "{err}"
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn a_wrong_answer_is_an_error_not_a_count() {
    // An echo server answers INCREMENT(n) with n.
    for profile in ["baseline", "shm"] {
        let (err, out) = bench_fails(
            &["--method", "echo", "--profile", profile],
            &["--token", TOKEN, "--profile", profile, "--duration", "1s"],
            7,
        );
        assert!(
            err.contains("wrong answer: INCREMENT(0) answered 0, expected 1"),
            "{profile}: {err}"
        );
        assert_eq!(out, "", "{profile}");
    }
}

/// Runs the bench against a fresh server started with `server`, expecting exit `code`:
/// its stderr and stdout.
fn bench_fails(server: &[&str], args: &[&str], code: i32) -> (String, String) {
    let dir = RunDir::new("pw-nbench");
    let _s = serve(&dir, server);
    let o = bench(&dir, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    (err, stdout(&o))
}

#[test]
fn shm_from_a_baseline_server_is_refused() {
    let (err, _) = bench_fails(
        &["--method", "increment"],
        &["--token", TOKEN, "--profile", "shm"],
        7,
    );
    assert!(err.contains("--profile baseline"), "{err}");
}

#[test]
fn a_server_that_goes_away_ends_the_run_with_an_error() {
    for profile in ["baseline", "shm"] {
        let dir = RunDir::new("pw-nbench");
        let server = serve(&dir, &["--method", "increment", "--profile", profile]);
        let mut child = spawn_bench(
            &dir,
            &[
                "--token",
                TOKEN,
                "--profile",
                profile,
                "--duration",
                "60s",
                "-v",
            ],
        );
        // Wait until the bench has its session, then take the server away.
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        while !line.contains("netipc bench: session") {
            line.clear();
            let n = stderr.read_line(&mut line).expect("read stderr");
            assert!(n > 0, "{profile}: the bench ended before its session");
        }
        drop(server);
        let o = finish(child, 120);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read stderr");
        assert!(
            !matches!(o.status.code(), Some(0) | None),
            "{profile}: {:?} {rest}",
            o.status
        );
        assert!(
            rest.contains("pipewright netipc bench: "),
            "{profile}: {rest}"
        );
        assert_eq!(stdout(&o), "", "{profile}");
    }
}

#[test]
fn server_pid_of_no_process_is_a_usage_error() {
    let (err, _) = bench_fails(
        &["--method", "increment"],
        &[
            "--token",
            TOKEN,
            "--duration",
            "1s",
            "--server-pid",
            "4000000000",
        ],
        2,
    );
    assert!(err.contains("--server-pid 4000000000"), "{err}");
}
