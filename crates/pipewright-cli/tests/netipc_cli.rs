//! `pipewright netipc serve` and `pipewright netipc call`, run as real processes over UDS
//! SEQPACKET (Linux) or named pipes (Windows).

mod cli_support;

use cli_support::{netipc_serve, pipewright, run, stderr, stdout, RunDir};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn call(dir: &RunDir, service: &str, args: &[&str]) -> Output {
    run(pipewright()
        .args([
            "netipc",
            "call",
            "--run-dir",
            dir.arg(),
            "--service",
            service,
        ])
        .args(args))
}

/// Runs `netipc call`, asserts it succeeded and returns its stdout.
fn call_ok(dir: &RunDir, service: &str, args: &[&str]) -> String {
    let o = call(dir, service, args);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    stdout(&o)
}

/// The value of `key: value` in the -v output.
fn field(out: &str, key: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .and_then(|v| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        })
}

#[test]
fn increment_with_session_values_and_hex_token() {
    let dir = RunDir::new("pw-nipc");
    let _s = netipc_serve(
        &dir,
        "inc",
        &["--method", "increment", "--token", "0xDEADBEEFCAFEBABE"],
    );
    let token = "16045690984503098046"; // the same token in decimal
    let out = call_ok(&dir, "inc", &["--token", token, "--value", "41", "-v"]);
    assert_eq!(out.lines().last(), Some("42"), "{out}");
    assert_eq!(field(&out, "session_id"), Some(1), "{out}");
    assert_eq!(field(&out, "selected_profile"), Some(1), "{out}");
    assert_eq!(
        field(&out, "max_request_payload_bytes"),
        Some(1024),
        "{out}"
    );
    assert_eq!(
        field(&out, "max_response_payload_bytes"),
        Some(65536),
        "{out}"
    );
    let packet = field(&out, "packet_size").expect("packet_size printed");
    assert!(packet > 32, "{out}");
    // The second session gets the next id.
    let out = call_ok(
        &dir,
        "inc",
        &[
            "--token",
            "0xdeadbeefcafebabe",
            "--packet-size",
            "100",
            "-v",
        ],
    );
    assert_eq!(field(&out, "session_id"), Some(2), "{out}");
    assert_eq!(field(&out, "packet_size"), Some(100), "{out}");
    assert_eq!(out.lines().last(), Some("1"), "{out}");
}

#[test]
fn string_reverse_and_cgroups_snapshot() {
    let dir = RunDir::new("pw-nipc");
    let _r = netipc_serve(&dir, "rev", &["--method", "string-reverse", "--token", "7"]);
    let _c = netipc_serve(
        &dir,
        "cgroups-snapshot",
        &[
            "--method",
            "cgroups-snapshot",
            "--token",
            "7",
            "--items",
            "4",
        ],
    );
    assert_eq!(
        call_ok(
            &dir,
            "rev",
            &[
                "--method",
                "string-reverse",
                "--token",
                "7",
                "--string",
                "named pipes",
            ],
        ),
        "sepip deman"
    );

    let out = call_ok(
        &dir,
        "cgroups-snapshot",
        &["--method", "cgroups-snapshot", "--token", "7"],
    );
    assert_eq!(field(&out, "items"), Some(4), "{out}");
    assert_eq!(field(&out, "generation"), Some(1), "{out}");
    let items: Vec<&str> = out.lines().filter(|l| l.starts_with("hash=")).collect();
    assert_eq!(items.len(), 4, "{out}");
    // Every item's hash is Netdata's simple_hash of its name.
    for (i, line) in items.iter().enumerate() {
        let name = format!("netipc-test-{i}");
        let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            h.wrapping_mul(16_777_619) ^ u32::from(b)
        });
        let expected = format!(
            "hash={hash:#010x} options={i:#x} enabled={} name={name} path=/sys/fs/cgroup/netipc-test/{name}/cgroup.procs",
            u32::from(i % 2 == 0)
        );
        assert_eq!(*line, expected);
    }
    let o = call(
        &dir,
        "cgroups-snapshot",
        &["--method", "cgroups-snapshot", "--token", "7"],
    );
    assert_eq!(field(&stdout(&o), "generation"), Some(2));
}

/// The demo apps-lookup line for `pid` (KNOWN unless 0).
fn expected_app(pid: u32) -> String {
    if pid == 0 {
        return "pid=0 status=UNKNOWN ppid=0 uid=unset starttime=0 comm= cgroup_status=UNKNOWN_PERMANENT orchestrator=0 cgroup_path= cgroup_name= labels=-".into();
    }
    format!(
        "pid={pid} status=KNOWN ppid={} uid=1000 starttime={} comm=proc-{pid} cgroup_status=KNOWN orchestrator=0 cgroup_path=/sys/fs/cgroup/netipc-test/pid-{pid} cgroup_name=pid-{pid} labels=source=pipewright",
        pid / 2,
        u64::from(pid) * 100
    )
}

#[test]
fn cgroups_and_apps_lookups_stitch_what_the_server_splits() {
    let dir = RunDir::new("pw-nipc");
    let _c = netipc_serve(&dir, "cgroups-lookup", &["--method", "cgroups-lookup"]);
    // A 4 KiB response limit cannot carry 150 known processes at once.
    let _a = netipc_serve(
        &dir,
        "apps-lookup",
        &["--method", "apps-lookup", "--max-response", "4096"],
    );

    let out = call_ok(
        &dir,
        "cgroups-lookup",
        &[
            "--method",
            "cgroups-lookup",
            "--key",
            "/sys/fs/cgroup/system.slice",
            "--key",
            "/sys/fs/cgroup/unknown",
        ],
    );
    assert_eq!(field(&out, "generation"), Some(1), "{out}");
    assert_eq!(field(&out, "items"), Some(2), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("key=")).collect();
    assert_eq!(
        lines,
        [
            "key=/sys/fs/cgroup/system.slice status=KNOWN orchestrator=0 path=/sys/fs/cgroup/system.slice name=system.slice labels=source=pipewright,path_bytes=27",
            "key=/sys/fs/cgroup/unknown status=UNKNOWN_PERMANENT orchestrator=0 path= name= labels=-",
        ]
    );

    let pids: Vec<String> = (0..150).map(|p| p.to_string()).collect();
    let out = call_ok(
        &dir,
        "apps-lookup",
        &[
            "--method",
            "apps-lookup",
            "--max-response",
            "4096",
            "--pid",
            &pids.join(","),
        ],
    );
    assert_eq!(field(&out, "items"), Some(150), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("pid=")).collect();
    let expected: Vec<String> = (0..150).map(expected_app).collect();
    assert_eq!(lines, expected);

    // No key is a valid probe.
    assert_eq!(
        field(
            &call_ok(&dir, "apps-lookup", &["--method", "apps-lookup"]),
            "items"
        ),
        Some(0)
    );

    // A pid that is not a number is a usage error naming it.
    let o = call(
        &dir,
        "apps-lookup",
        &["--method", "apps-lookup", "--pid", "12,x"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'x'"), "{}", stderr(&o));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let dir = RunDir::new("pw-nipc");
    let _a = netipc_serve(&dir, "apps", &["--method", "apps-lookup"]);
    // About 400 KB of output: far more than a pipe buffers once the reader is gone.
    let pids: Vec<String> = (1..=2000).map(|p| p.to_string()).collect();
    let mut child = pipewright()
        .args([
            "netipc",
            "call",
            "--run-dir",
            dir.arg(),
            "--service",
            "apps",
        ])
        .args(["--method", "apps-lookup", "--pid", &pids.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pipewright netipc call");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    assert_eq!(first.trim(), "generation: 1");
    // The reader is dropped here, like `| head -1`.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let o = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("watchdog: pipewright did not finish within 60 s")
        .expect("pipewright output");
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn echo_small_chunked_and_one_mib() {
    let dir = RunDir::new("pw-nipc");
    let _s = netipc_serve(&dir, "echo", &["--method", "echo"]);
    for (size, extra) in [
        ("300", vec!["--packet-size", "100"]),
        ("1MiB", vec![]),
        ("0", vec![]),
    ] {
        let mut args = vec!["--method", "echo", "--size", size, "--code", "9"];
        args.extend(extra);
        let o = call(&dir, "echo", &args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "size {size}, stderr: {}",
            stderr(&o)
        );
        assert!(stdout(&o).starts_with("echo ok: "), "{}", stdout(&o));
    }
    let o = call(&dir, "echo", &["--method", "echo", "--size", "1MiB"]);
    assert!(stdout(&o).contains("1048576 bytes"), "{}", stdout(&o));
}

#[test]
fn rejections_and_mismatches_exit_non_zero_with_the_status_named() {
    let dir = RunDir::new("pw-nipc");
    let _s = netipc_serve(&dir, "inc", &["--token", "99"]);
    let cases: [(&[&str], i32, &str); 5] = [
        (&["--token", "98"], 7, "AUTH_FAILED"),
        (&["--token", "99", "--packet-size", "32"], 7, "INCOMPATIBLE"),
        (
            &["--token", "99", "--max-request", "2000000"],
            7,
            "LIMIT_EXCEEDED",
        ),
        (
            &["--token", "99", "--method", "string-reverse"],
            7,
            "UNSUPPORTED",
        ),
        // An echo against an INCREMENT endpoint: the 64-byte payload is no u64.
        (&["--token", "99", "--method", "echo"], 7, "BAD_ENVELOPE"),
    ];
    for (args, code, status) in cases {
        let o = call(&dir, "inc", args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(status), "{args:?}: {}", stderr(&o));
    }
    let o = call(&dir, "absent", &["--token", "99"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no netipc server"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = RunDir::new("pw-nipc");
    for args in [
        &["--token", "0xnope"][..],
        &["--token", "-5"][..],
        &["--method", "frobnicate"][..],
        &["--profile", "carrier-pigeon"][..],
        &["--size", "lots", "--method", "echo"][..],
    ] {
        let o = call(&dir, "svc", args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
    let o = call(&dir, "bad/name", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("[A-Za-z0-9._-]"), "{}", stderr(&o));
}

#[test]
fn a_served_name_is_not_served_twice() {
    let dir = RunDir::new("pw-nipc");
    let _s = netipc_serve(&dir, "once", &[]);
    let o = run(pipewright().args([
        "netipc",
        "serve",
        "--run-dir",
        dir.arg(),
        "--service",
        "once",
    ]));
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    // The first server still answers.
    let o = call(&dir, "once", &["--value", "1"]);
    assert_eq!(stdout(&o), "2", "{}", stderr(&o));
}

/// The `.ipcshm` region files in the run directory (POSIX shared memory).
fn region_files(dir: &RunDir) -> Vec<PathBuf> {
    std::fs::read_dir(dir.path())
        .expect("read run dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipcshm"))
        .collect()
}

#[test]
fn shm_profile_for_every_method_and_fallbacks() {
    let dir = RunDir::new("pw-nipc");
    let shm = ["--profile", "shm", "--token", "5"];
    let _inc = netipc_serve(
        &dir,
        "inc",
        &[&shm[..], &["--method", "increment"]].concat(),
    );
    let out = call_ok(&dir, "inc", &[&shm[..], &["--value", "41", "-v"]].concat());
    assert_eq!(out.lines().last(), Some("42"), "{out}");
    assert_eq!(field(&out, "selected_profile"), Some(4), "{out}");
    assert!(out.contains("profile: SHM_"), "{out}");
    assert!(out.contains("(shared memory)"), "{out}");
    // A baseline client of an SHM server, and an SHM client of a baseline server.
    assert_eq!(
        field(
            &call_ok(&dir, "inc", &["--token", "5", "-v"]),
            "selected_profile"
        ),
        Some(1)
    );
    let _plain = netipc_serve(&dir, "plain", &["--token", "5"]);
    assert_eq!(
        field(
            &call_ok(&dir, "plain", &[&shm[..], &["-v"]].concat()),
            "selected_profile"
        ),
        Some(1)
    );

    let _rev = netipc_serve(
        &dir,
        "rev",
        &[&shm[..], &["--method", "string-reverse"]].concat(),
    );
    let out = call_ok(
        &dir,
        "rev",
        &[
            &shm[..],
            &[
                "--method",
                "string-reverse",
                "--string",
                "shared memory",
                "-v",
            ],
        ]
        .concat(),
    );
    assert_eq!(field(&out, "selected_profile"), Some(4));
    assert_eq!(out.lines().last(), Some("yromem derahs"));

    let _snap = netipc_serve(
        &dir,
        "snap",
        &[&shm[..], &["--method", "cgroups-snapshot", "--items", "3"]].concat(),
    );
    let out = call_ok(
        &dir,
        "snap",
        &[&shm[..], &["--method", "cgroups-snapshot", "-v"]].concat(),
    );
    assert_eq!(field(&out, "selected_profile"), Some(4));
    assert_eq!(field(&out, "items"), Some(3));

    let _echo = netipc_serve(&dir, "echo", &[&shm[..], &["--method", "echo"]].concat());
    for size in ["0", "40", "1MiB"] {
        let o = call(
            &dir,
            "echo",
            &[&shm[..], &["--method", "echo", "--size", size, "-v"]].concat(),
        );
        assert_eq!(o.status.code(), Some(0), "size {size}: {}", stderr(&o));
        assert_eq!(field(&stdout(&o), "selected_profile"), Some(4));
        assert!(stdout(&o).contains("echo ok: "), "{}", stdout(&o));
    }
    // Each server removes a session's region once its client is gone.
    if cfg!(target_os = "linux") {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !region_files(&dir).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "regions left behind: {:?}",
                region_files(&dir)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
