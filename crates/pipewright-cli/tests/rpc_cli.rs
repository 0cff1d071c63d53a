//! `pipewright rpc serve-demo` and `pipewright rpc call`, run as real processes.

mod cli_support;

use cli_support::{pipewright, run, stderr, stdout, Served};

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pw-rpc-cli-{tag}-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Starts `serve-demo` with `cmd`'s arguments and waits for its ready line.
fn demo_server(cmd: &mut Command) -> Served {
    Served::start(cmd, "serving the demo RPC service")
}

#[test]
fn serve_demo_and_call_print_the_answers_as_json() {
    // Connections served as tasks, then on threads of their own.
    for served_on in [&[][..], &["--connection-threads", "4"][..]] {
        let name = unique_name("demo");
        let _server = demo_server(
            pipewright()
                .args(["rpc", "serve-demo", &name])
                .args(served_on),
        );

        let o = run(pipewright().args(["rpc", "call", &name, "Factorial", r#"{"n": 5}"#]));
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        assert_eq!(stdout(&o), r#"{"status":"Ok","params":{"Number":120}}"#);

        let o = run(pipewright().args(["rpc", "call", &name, "Reverse", r#"{"text": "pipes"}"#]));
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        assert_eq!(stdout(&o), r#"{"status":"Ok","params":{"Text":"sepip"}}"#);

        // Echo takes any JSON value and answers it as Json, as pipe-rpc's does.
        let o =
            run(pipewright().args(["rpc", "call", &name, "Echo", r#"{"payload": "hi there"}"#]));
        assert_eq!(
            stdout(&o),
            r#"{"status":"Ok","params":{"Json":"hi there"}}"#
        );
        let o = run(pipewright().args([
            "rpc",
            "call",
            &name,
            "Echo",
            r#"{"payload": {"a": [1, 2, 3]}}"#,
        ]));
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            r#"{"status":"Ok","params":{"Json":{"a":[1,2,3]}}}"#
        );

        // An Err answer is printed and exits 1.
        let o = run(pipewright().args(["rpc", "call", &name, "Factorial", r#"{"n": 21}"#]));
        assert_eq!(o.status.code(), Some(1));
        let answer: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
        assert_eq!(answer["status"], "Err");
        assert!(
            answer["params"].as_str().unwrap().contains("21! overflows"),
            "{answer}"
        );

        let o = run(pipewright().args(["rpc", "call", &name, "Launch", "{}"]));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stdout(&o).contains(r#"unknown method \"Launch\""#),
            "{}",
            stdout(&o)
        );

        let o = run(pipewright().args(["rpc", "call", &name, "Factorial", r#"{"n": "five"}"#]));
        assert_eq!(o.status.code(), Some(1));
        assert!(stdout(&o).contains("invalid params"), "{}", stdout(&o));
    }
}

#[test]
fn call_usage_and_transport_errors_use_the_documented_exit_codes() {
    // PARAMS that are not JSON: usage error, 2, before any connection.
    let o = run(pipewright().args(["rpc", "call", "whatever", "Factorial", "{n: 5}"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not JSON"), "{}", stderr(&o));
    // Too few words: clap's usage error.
    let o = run(pipewright().args(["rpc", "call", "Factorial"]));
    assert_eq!(o.status.code(), Some(2));
    // No server: 3.
    let missing = unique_name("missing");
    let o = run(pipewright().args(["rpc", "call", &missing, "Echo", "{}", "--timeout", "200ms"]));
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
}

#[test]
fn a_second_serve_demo_on_the_same_name_exits_8() {
    let name = unique_name("twice");
    let _server = demo_server(pipewright().args(["rpc", "serve-demo", &name]));
    let o = run(pipewright().args(["rpc", "serve-demo", &name]));
    assert_eq!(o.status.code(), Some(8), "stderr: {}", stderr(&o));
}

/// A client that pipelines 60 KB Echo requests to `serve-demo` and never reads the answers
/// is pushed back: its writes block after a bounded amount (the server stops reading it),
/// and `rpc call` from another process is answered all the while.
#[test]
fn serve_demo_pushes_back_on_a_client_that_never_reads_and_serves_others() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// Generous: the 1 MiB mark, 64 answers in flight, kernel buffers both ways.
    const BOUND: u64 = 64 << 20;
    /// A server that has read this much does not push back.
    const GIVE_UP: u64 = 256 << 20;

    let name = unique_name("flood");
    let _server = demo_server(pipewright().args([
        "rpc",
        "serve-demo",
        &name,
        "--max-queued-answer-bytes",
        "1048576",
    ]));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let written = Arc::new(AtomicU64::new(0));
    let flood = {
        let (name, written) = (name.clone(), written.clone());
        runtime.spawn(async move {
            let stream = pipewright::connect(name.as_str())
                .await
                .expect("connect the flooding client");
            let (_never_read, mut requests) = tokio::io::split(stream);
            let text = "x".repeat(60_000);
            for seq in 0u64.. {
                let body =
                    format!(r#"{{"method":"Echo","params":{{"payload":"{text}"}},"id":{seq}}}"#);
                let mut frame = (body.len() as u32).to_le_bytes().to_vec();
                frame.extend_from_slice(body.as_bytes());
                if requests.write_all(&frame).await.is_err() {
                    return;
                }
                if written.fetch_add(frame.len() as u64, Ordering::SeqCst) > GIVE_UP {
                    return;
                }
            }
        })
    };
    let mut unchanged = 0;
    let stalled_at = loop {
        let before = written.load(Ordering::SeqCst);
        let o = run(pipewright().args([
            "rpc",
            "call",
            &name,
            "Echo",
            r#"{"payload": "still served"}"#,
            "--timeout",
            "30s",
        ]));
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            r#"{"status":"Ok","params":{"Json":"still served"}}"#
        );
        std::thread::sleep(Duration::from_millis(200));
        let after = written.load(Ordering::SeqCst);
        assert!(
            after < GIVE_UP,
            "serve-demo read {} MiB from a client that never reads its answers: no backpressure",
            after >> 20
        );
        unchanged = if after == before && after > 0 {
            unchanged + 1
        } else {
            0
        };
        if unchanged == 3 {
            break after;
        }
    };
    println!(
        "the flooding client's writes blocked after {} KiB",
        stalled_at >> 10
    );
    assert!(
        stalled_at <= BOUND,
        "the flooding client wrote {stalled_at} bytes before its writes blocked; expected at most {BOUND}"
    );
    flood.abort();
    runtime.shutdown_background();
}

/// The default name, `rpc_demo`, in a runtime directory of this test's own (Unix only: on
/// Windows the name is machine-wide and another program may hold it).
#[cfg(unix)]
#[test]
fn default_name_is_rpc_demo() {
    let dir = std::env::temp_dir().join(unique_name("dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let _server = demo_server(
        pipewright()
            .env("PIPEWRIGHT_RUNTIME_DIR", &dir)
            .args(["rpc", "serve-demo"]),
    );
    assert!(
        dir.join("rpc_demo.sock").exists(),
        "the socket is rpc_demo.sock"
    );
    let o = run(pipewright().env("PIPEWRIGHT_RUNTIME_DIR", &dir).args([
        "rpc",
        "call",
        "Factorial",
        r#"{"n": 3}"#,
    ]));
    assert_eq!(
        stdout(&o),
        r#"{"status":"Ok","params":{"Number":6}}"#,
        "stderr: {}",
        stderr(&o)
    );
    drop(_server);
    let _ = std::fs::remove_dir_all(&dir);
}
