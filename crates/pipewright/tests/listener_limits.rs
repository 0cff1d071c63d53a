//! The listener's limits and the connect's refusal of remote names: `max_instances` makes
//! `accept` wait (not fail), `backlog` bounds the clients waiting to be accepted, and a remote
//! `\\HOST\pipe\NAME` is opened only when asked for, without stalling the runtime.

mod common;

use std::time::Duration;

use common::{run, unique_name};
use pipewright::{connect_with, ConnectOptions, ErrorKind, Listener, ListenerOptions, PipeName};

/// At `max_instances`, `accept` waits instead of failing with `Busy` (which ended the
/// documented `while let Ok(..) = listener.accept()` loop); closing an accepted connection
/// frees an instance, the listener tops up and the waiting `accept` and client complete.
#[cfg(windows)]
#[test]
fn accept_waits_at_max_instances_until_a_connection_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    run(async {
        let name = unique_name("maxwait");
        let opts = ListenerOptions::new().backlog(1).max_instances(2);
        let listener = std::sync::Arc::new(Listener::bind_with(&name, &opts).unwrap());
        let once = ConnectOptions::new().timeout(Duration::ZERO);
        let c1 = connect_with(name.as_str(), &once).await.unwrap();
        let s1 = listener.accept().await.unwrap();
        let _c2 = connect_with(name.as_str(), &once).await.unwrap();
        let _s2 = listener.accept().await.unwrap();

        let third_accept = tokio::spawn({
            let listener = listener.clone();
            async move { listener.accept().await }
        });
        let third_client = tokio::spawn({
            let name = name.clone();
            async move {
                let retry = ConnectOptions::new().timeout(Duration::from_secs(60));
                connect_with(name.as_str(), &retry).await
            }
        });
        // Both instances are taken: the accept waits and the client keeps retrying busy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !third_accept.is_finished(),
            "accept at max_instances must wait, got {:?}",
            third_accept.await.unwrap().map(|_| ())
        );
        assert!(!third_client.is_finished(), "the third client got in");

        drop(s1);
        drop(c1);
        let mut s3 = third_accept
            .await
            .unwrap()
            .expect("accept completes once a connection closed");
        let mut c3 = third_client
            .await
            .unwrap()
            .expect("the third client gets in");
        c3.write_all(b"third").await.unwrap();
        let mut b = [0u8; 5];
        s3.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"third");
    });
}

/// A flood of clients against a listener nobody accepts from: at most `backlog` of them get
/// in on Windows (on Unix the kernel's listen queue, at least 128, plus one on Linux), the others see a busy
/// server and give up at their timeout, and clients that keep retrying get through once
/// `accept` runs. (On Windows the unit test in `sys/windows/listener.rs` also counts the
/// instances.)
#[test]
fn a_flood_beyond_the_backlog_waits_busy_and_gets_through_once_accepted() {
    run(async {
        let name = unique_name("flood");
        let backlog = 4;
        let listener =
            Listener::bind_with(&name, &ListenerOptions::new().backlog(backlog)).unwrap();
        let short = ConnectOptions::new().timeout(Duration::from_millis(300));
        // On Unix the kernel's listen queue is at least 128: flood past it.
        let clients = if cfg!(windows) { 64 } else { 256 };
        let flood: Vec<_> = (0..clients)
            .map(|_| {
                let (name, short) = (name.clone(), short.clone());
                tokio::spawn(async move { connect_with(name.as_str(), &short).await })
            })
            .collect();
        let mut connected = Vec::new();
        for task in flood {
            match task.await.unwrap() {
                Ok(conn) => connected.push(conn),
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::Busy | ErrorKind::TimedOut),
                    "a client beyond the backlog must see busy or time out: {e}"
                ),
            }
        }
        // Linux admits one more than its listen queue.
        let admitted = if cfg!(windows) { backlog } else { 128 + 1 };
        assert!(
            connected.len() <= admitted,
            "{} of {clients} clients got in with backlog {backlog} and nobody accepting",
            connected.len()
        );

        let patient = ConnectOptions::new().timeout(Duration::from_secs(60));
        let waiting: Vec<_> = (0..16)
            .map(|_| {
                let (name, patient) = (name.clone(), patient.clone());
                tokio::spawn(async move { connect_with(name.as_str(), &patient).await })
            })
            .collect();
        let mut served = Vec::new();
        for _ in 0..connected.len() + waiting.len() {
            served.push(listener.accept().await.unwrap());
        }
        let mut clients = Vec::new();
        for w in waiting {
            clients.push(w.await.unwrap().expect("a retrying client gets through"));
        }
        assert_eq!(clients.len(), 16);
    });
}

/// A remote `\\HOST\pipe\NAME` is refused unless the caller allows it, with the fix named.
#[test]
fn a_remote_name_is_refused_unless_allowed() {
    run(async {
        let name = PipeName::parse_remote(r"\\buildhost\pipe\pw-remote").unwrap();
        let err = connect_with(name, &ConnectOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
        let text = err.to_string();
        assert!(text.contains("allow_remote(true)"), "{text}");
        assert!(text.contains("buildhost"), "{text}");
    });
}

/// With `allow_remote(true)`, opening a pipe on a host that does not answer ends as an
/// error within the connect timeout, and the open (which can block on the network) does
/// not stall the runtime: a task on the same single-threaded runtime keeps running.
#[cfg(windows)]
#[test]
fn a_remote_open_ends_within_the_timeout_and_does_not_stall_the_runtime() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ticks = Arc::new(AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Loopback only: no traffic leaves the machine.
        let name =
            PipeName::parse_remote(&format!(r"\\127.0.0.1\pipe\{}", unique_name("rmt"))).unwrap();
        let opts = ConnectOptions::new()
            .allow_remote(true)
            .timeout(Duration::from_secs(1));
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(60), connect_with(name, &opts))
            .await
            .expect("the connect must end at its own timeout");
        let elapsed = started.elapsed();
        let err = result.map(|_| ()).unwrap_err();
        eprintln!("remote open ended after {elapsed:?}: {err}");
        if elapsed > Duration::from_millis(200) {
            assert!(
                ticks.load(Ordering::Relaxed) > 0,
                "the runtime's other task never ran during a {elapsed:?} connect"
            );
        }
        ticker.abort();
    });
}
