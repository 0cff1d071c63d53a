//! Behaviour across processes: the peer's process id, and the first-instance guard.
//!
//! The test binary re-runs itself as the child (see `common::spawn_role`): a test called in
//! the child with the role variable set plays that role and exits.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{role, run, spawn_role, unique_name};
use pipewright::{connect, ErrorKind, Listener, ListenerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exit code of a child whose bind failed with `AlreadyInUse`.
const CHILD_ALREADY_IN_USE: i32 = 17;
/// Exit code of a child whose bind succeeded.
const CHILD_BOUND: i32 = 18;

/// The child roles. Does nothing in the parent.
#[test]
fn child_entry() {
    let Some((role, pipe)) = role() else {
        return;
    };
    let code = match role.as_str() {
        // Connect, tell the server our own pid, wait for it to close.
        "report-pid" => {
            run(async move {
                let mut c = connect(pipe.as_str()).await.expect("child connect");
                c.write_all(&std::process::id().to_le_bytes())
                    .await
                    .unwrap();
                c.flush().await.unwrap();
                let mut rest = Vec::new();
                let _ = c.read_to_end(&mut rest).await;
            });
            0
        }
        // Try to serve the same name.
        "try-bind" => {
            let mut code = 1;
            run(async {
                code = match Listener::bind(pipe.as_str()) {
                    Ok(_) => CHILD_BOUND,
                    Err(e) if e.kind() == ErrorKind::AlreadyInUse => CHILD_ALREADY_IN_USE,
                    Err(e) => {
                        eprintln!("child bind failed: {e}");
                        1
                    }
                };
            });
            code
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

#[test]
fn peer_pid_is_the_child_process() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("childpid");
        let listener = Listener::bind(&name).unwrap();
        let mut child = spawn_role("child_entry", "report-pid", &name);
        let mut conn = listener.accept().await.unwrap();
        let mut pid = [0u8; 4];
        conn.read_exact(&mut pid).await.unwrap();
        let reported = u32::from_le_bytes(pid);
        let peer = conn.peer().unwrap();
        assert_eq!(
            peer.pid,
            Some(reported),
            "peer() disagrees with the child's own pid"
        );
        assert_eq!(
            peer.pid,
            Some(child.id()),
            "peer() disagrees with the spawned child's pid"
        );
        assert_ne!(peer.pid, Some(std::process::id()));
        assert_eq!(
            peer.user,
            Some(pipewright::platform::current_user().unwrap())
        );
        conn.shutdown().await.unwrap();
        drop(conn);
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "child failed: {status}");
    });
}

#[test]
fn second_process_cannot_serve_a_name_already_served() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("guard");
        let listener = Listener::bind(&name).unwrap();
        let wait = |mut child: std::process::Child| async move {
            tokio::task::spawn_blocking(move || child.wait())
                .await
                .unwrap()
                .unwrap()
        };
        let status = wait(spawn_role("child_entry", "try-bind", &name)).await;
        assert_eq!(
            status.code(),
            Some(CHILD_ALREADY_IN_USE),
            "second server was allowed: {status}"
        );
        drop(listener);
        // Once the first server is gone, the name is free again.
        let status = wait(spawn_role("child_entry", "try-bind", &name)).await;
        assert_eq!(
            status.code(),
            Some(CHILD_BOUND),
            "name stayed taken: {status}"
        );
    });
}

#[test]
fn guard_holds_while_all_instances_are_connected() {
    if role().is_some() {
        return;
    }
    run(async {
        let name = unique_name("guardbusy");
        let listener =
            Listener::bind_with(&name, &ListenerOptions::new().backlog(1).max_instances(1))
                .unwrap();
        let _client = connect(name.as_str()).await.unwrap();
        let _server = listener.accept().await.unwrap();
        // The only instance is taken: a second server must still be refused.
        let err = Listener::bind(name.as_str()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyInUse, "{err}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}

#[test]
fn of_two_simultaneous_binds_exactly_one_wins() {
    if role().is_some() {
        return;
    }
    if common::skip_under_wine(
        "FILE_FLAG_FIRST_PIPE_INSTANCE is not enforced by Wine 8, so two binds racing past the \
         live-server check both succeed; Windows refuses the second (docs/wine.md)",
    ) {
        return;
    }
    run(async {
        for round in 0..50 {
            let name = unique_name("race");
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let binds: Vec<_> = (0..2)
                .map(|_| {
                    let (name, barrier) = (name.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        let _guard = rt.enter();
                        barrier.wait();
                        let result = Listener::bind(name.as_str());
                        // Keep the winner alive until both have tried.
                        std::thread::sleep(Duration::from_millis(50));
                        result.map(|_| ()).map_err(|e| e.kind())
                    })
                })
                .collect();
            let results: Vec<_> = binds.into_iter().map(|t| t.join().unwrap()).collect();
            let wins = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(wins, 1, "round {round}: {results:?}");
            assert!(
                results.contains(&Err(ErrorKind::AlreadyInUse)),
                "round {round}: {results:?}"
            );
        }
    });
}
