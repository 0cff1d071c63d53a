//! The blocking client, against connections served as tasks and on threads of their own:
//! calls answered in order with the right values, the server's Err kept apart from the
//! transport's failures, a call past its timeout fails and the next one reconnects, and a
//! stopping or vanishing server ends its connection threads without waiting for clients.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use pipewright_rpc::demo::{Request, Response};
use pipewright_rpc::{blocking, ClientOptions, RpcError, Server};
use serde_json::json;

/// `test_router` plus `Where`: the name of the thread the handler runs on.
fn router_with_where() -> pipewright_rpc::Router {
    test_router().handle("Where", |_: serde_json::Value| async {
        Ok::<_, String>(std::thread::current().name().unwrap_or("").to_owned())
    })
}

/// One client's session on its own thread: `calls` checked calls of every kind; returns the
/// thread names its `Where` calls saw. The first call waits at `all_served` until every
/// session's connection is being served, so no connection ends before the last is accepted.
fn session(name: String, client_no: usize, calls: usize, all_served: &Barrier) -> HashSet<String> {
    let mut client = blocking::Client::connect(name.as_str()).expect("connect");
    let mut seen = HashSet::from([client.call::<_, String>("Where", &()).expect("where")]);
    all_served.wait();
    for i in 0..calls {
        let text = format!("client {client_no} call {i} {}", "é".repeat(i % 40));
        let answer: Response = client
            .request(&Request::Echo {
                payload: text.clone().into(),
            })
            .expect("echo");
        assert_eq!(answer, Response::Json(text.into()));
        let n = (i % 20) as u64;
        let answer: Response = client
            .call("Factorial", &json!({ "n": n }))
            .expect("factorial");
        assert_eq!(answer, Response::Number((1..=n).product()));
        if i % 50 == 0 {
            // The server's Err is an answer: the connection goes on.
            let err = client.call::<_, ()>("Fail", &json!({})).unwrap_err();
            assert!(
                matches!(&err, RpcError::Remote(m) if m.contains("Fail always fails")),
                "{err}"
            );
            let err = client.call::<_, ()>("Nope", &json!({})).unwrap_err();
            assert!(
                matches!(&err, RpcError::Remote(m) if m.contains(r#"unknown method "Nope""#)),
                "{err}"
            );
            let err = client.call::<_, u64>("Echo", &json!({})).unwrap_err();
            assert!(matches!(err, RpcError::Remote(_)), "{err}");
            seen.insert(client.call::<_, String>("Where", &()).expect("where"));
        }
    }
    seen
}

/// Each client's call fails because its connection is closed (and the name is no longer
/// served, so reconnecting fails too): the next call, or with `eventually` a later one (a
/// dropped server's tasks are cancelled soon after, not at once; the watchdog bounds the wait).
async fn expect_closed(clients: Vec<blocking::Client>, after: &'static str, eventually: bool) {
    tokio::task::spawn_blocking(move || {
        for mut client in clients {
            let err = loop {
                match client.call::<_, String>("Where", &()) {
                    Err(err) => break err,
                    Ok(at) if eventually => {
                        assert!(at.starts_with("rpc-connection-"), "{at}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(at) => panic!("answered on {at} after {after}"),
                }
            };
            assert!(
                matches!(err, RpcError::Disconnected { .. } | RpcError::Transport(_)),
                "after {after}: {err}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_clients_are_answered_by_task_and_thread_connections() {
    watchdog(async {
        for threads in [0, 2] {
            let server = RunningServer::start(
                "blk",
                Server::new(router_with_where()).connection_threads(threads),
            );
            // Three clients at once: with two connection threads, one is served as a task.
            let all_served = Arc::new(Barrier::new(3));
            let sessions: Vec<_> = (0..3)
                .map(|k| {
                    let (name, all_served) = (server.name.clone(), all_served.clone());
                    std::thread::spawn(move || session(name, k, 300, &all_served))
                })
                .collect();
            let mut on_threads = 0;
            for s in sessions {
                let seen = tokio::task::spawn_blocking(move || s.join())
                    .await
                    .unwrap()
                    .expect("a client session");
                let connection_threads = seen
                    .iter()
                    .filter(|n| n.starts_with("rpc-connection-"))
                    .count();
                // A client calling one request at a time stays where it was first served.
                assert!(
                    connection_threads == 0 || seen.len() == 1,
                    "one connection served by several threads: {seen:?}"
                );
                on_threads += connection_threads;
            }
            assert_eq!(
                on_threads, threads,
                "connections served on threads of their own with connection_threads({threads})"
            );
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_fails_and_the_next_call_reconnects() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "blk-timeout",
                Server::new(router_with_where()).connection_threads(threads),
            );
            let name = server.name.clone();
            tokio::task::spawn_blocking(move || {
                let options = ClientOptions::new().call_timeout(Duration::from_secs(30));
                let mut client = blocking::Client::connect_with(name.as_str(), options).unwrap();
                let before: String = client.call("Where", &()).unwrap();
                // `Wait` answers only once some `Open` has run: this call cannot be answered.
                let timeout = Duration::from_millis(300);
                let started = Instant::now();
                let err = client
                    .call_with_timeout::<_, String>("Wait", &json!({}), timeout)
                    .unwrap_err();
                assert!(
                    matches!(&err, RpcError::TimedOut { method, timeout: t } if method == "Wait" && *t == timeout),
                    "{err}"
                );
                assert!(started.elapsed() >= timeout, "timed out early: {:?}", started.elapsed());
                // The next call goes over a new connection: with threads, a new thread.
                let after: String = client.call("Where", &()).unwrap();
                if threads > 0 {
                    assert_ne!(before, after, "the timed-out connection was reused");
                }
                // Release the handler still waiting: its late answer goes to a closed
                // connection, never to a later call.
                assert_eq!(client.call::<_, String>("Open", &json!({})).unwrap(), "opened");
                for i in 0..50u64 {
                    let answer: Response = client
                        .call("Factorial", &json!({ "n": i % 10 }))
                        .unwrap();
                    assert_eq!(answer, Response::Number((1..=i % 10).product()));
                }
            })
            .await
            .unwrap();
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_ends_idle_connection_threads_at_once() {
    watchdog(async {
        // A grace far beyond the watchdog: the server returns in time only if idle
        // connection threads end at the signal.
        let server = RunningServer::start(
            "blk-stop",
            Server::new(router_with_where())
                .connection_threads(8)
                .shutdown_grace(Duration::from_secs(3600)),
        );
        let name = server.name.clone();
        let (clients, where_) = tokio::task::spawn_blocking(move || {
            let mut clients: Vec<_> = (0..3)
                .map(|_| blocking::Client::connect(name.as_str()).unwrap())
                .collect();
            let where_: Vec<String> = clients
                .iter_mut()
                .map(|c| c.call("Where", &()).unwrap())
                .collect();
            (clients, where_)
        })
        .await
        .unwrap();
        assert!(
            where_.iter().all(|n| n.starts_with("rpc-connection-")),
            "{where_:?}"
        );
        server.shutdown().await;
        expect_closed(clients, "the server stopped", false).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_closes_its_connection_threads() {
    watchdog(async {
        let name = unique_name("blk-drop");
        let listener = pipewright::Listener::bind(name.as_str()).unwrap();
        let server = tokio::spawn(
            Server::new(router_with_where())
                .connection_threads(8)
                .serve(listener),
        );
        let client_name = name.clone();
        let client = tokio::task::spawn_blocking(move || {
            let options = ClientOptions::new().connect_timeout(Duration::from_millis(200));
            let mut client = blocking::Client::connect_with(client_name.as_str(), options).unwrap();
            let at: String = client.call("Where", &()).unwrap();
            assert!(at.starts_with("rpc-connection-"), "{at}");
            client
        })
        .await
        .unwrap();
        server.abort();
        let _ = server.await;
        expect_closed(vec![client], "the server was dropped", true).await;
    })
    .await
}
