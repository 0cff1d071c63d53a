//! Typed client against the server: many calls at once, limits, timeouts, cancellation,
//! reconnection and graceful shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pipewright::ErrorKind;
use pipewright_rpc::demo::{Request, Response};
use pipewright_rpc::{Client, ClientOptions, Router, RpcError, Server};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_on_one_connection_return_to_their_callers() {
    watchdog(async {
        let server = RunningServer::start("thousand", Server::new(test_router()));
        let client = Client::connect(&server.name).await.unwrap();
        let mut calls = Vec::new();
        for i in 0..1000u64 {
            let client = client.clone();
            let tag = i * 1_000_003 + rand::random::<u32>() as u64;
            let ms = rand::random::<u64>() % 25;
            calls.push(tokio::spawn(async move {
                let got: u64 = client
                    .call("Sleep", &json!({"ms": ms, "tag": tag}))
                    .await
                    .unwrap();
                (tag, got)
            }));
        }
        let mut matched = 0;
        for call in calls {
            let (sent, got) = call.await.unwrap();
            assert_eq!(sent, got, "an answer went to the wrong caller");
            matched += 1;
        }
        assert_eq!(matched, 1000);
        drop(client);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_demo_calls_over_many_connections() {
    watchdog(async {
        let server = RunningServer::start("many-conns", Server::new(test_router()));
        let mut clients = Vec::new();
        for c in 0..8u64 {
            let name = server.name.clone();
            clients.push(tokio::spawn(async move {
                let client = Client::connect(&name).await.unwrap();
                for n in 0..=20u64 {
                    let want = (1..=n).product::<u64>();
                    let got: Response = client.request(&Request::Factorial { n }).await.unwrap();
                    assert_eq!(got, Response::Number(want));
                }
                let text = format!("client {c} says hello");
                let got: Response = client
                    .request(&Request::Reverse { text: text.clone() })
                    .await
                    .unwrap();
                assert_eq!(got, Response::Text(text.chars().rev().collect()));
                let got: Response = client
                    .request(&Request::Echo {
                        payload: text.clone().into(),
                    })
                    .await
                    .unwrap();
                assert_eq!(got, Response::Json(text.into()));
                let err = client
                    .request::<_, Response>(&Request::Factorial { n: 21 })
                    .await
                    .unwrap_err();
                assert!(
                    matches!(&err, RpcError::Remote(m) if m.contains("21! overflows")),
                    "{err:?}"
                );
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_limit_bounds_the_calls_in_flight() {
    watchdog(async {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let router = Router::new().handle("Work", move |_: ()| {
            let (running, peak) = (r.clone(), p.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, String>(now)
            }
        });
        let server = RunningServer::start("limit", Server::new(router).max_in_flight(4));
        let client = Client::connect(&server.name).await.unwrap();
        let calls: Vec<_> = (0..60)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.call::<_, usize>("Work", &()).await.unwrap() })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= 4,
            "{peak} calls ran at once on one connection, over the limit of 4"
        );
        assert!(
            peak >= 2,
            "calls with ids should run concurrently; the peak was {peak}"
        );
        drop(client);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_dropped_calls_leave_the_connection_usable() {
    watchdog(async {
        let server = RunningServer::start("cancel", Server::new(test_router()));
        let client = Client::connect(&server.name).await.unwrap();
        // A per-call timeout.
        let err = client
            .call_with_timeout::<_, u64>(
                "Sleep",
                &json!({"ms": 2000, "tag": 1}),
                Duration::from_millis(50),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::TimedOut { method, .. } if method == "Sleep"),
            "{err:?}"
        );
        assert!(err.to_string().contains("within"), "{err}");
        // A call dropped by its caller before the answer.
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            client.call::<_, u64>("Sleep", &json!({"ms": 300, "tag": 2})),
        )
        .await;
        assert!(dropped.is_err(), "the call should still have been waiting");
        // Later calls get their own answers, while the abandoned ones' answers arrive and are
        // thrown away.
        for tag in 10..40u64 {
            let got: u64 = client
                .call("Sleep", &json!({"ms": 20, "tag": tag}))
                .await
                .unwrap();
            assert_eq!(got, tag);
        }
        drop(client);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_on_demand_after_the_server_restarts() {
    watchdog(async {
        let name = unique_name("reconnect");
        let server = RunningServer::start_on(&name, Server::new(test_router()));
        let client = Client::connect_with(
            &name,
            ClientOptions::new().connect_timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        let got: Response = client
            .request(&Request::Echo {
                payload: "one".into(),
            })
            .await
            .unwrap();
        assert_eq!(got, Response::Json("one".into()));
        server.shutdown().await;
        // The server restarts 300 ms later.
        let client2 = client.clone();
        let server_again = tokio::spawn({
            let name = name.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                RunningServer::start_on(&name, Server::new(test_router()))
            }
        });
        // Reconnecting costs at most the one call that finds the old connection dead
        // (`Disconnected`); the next call connects, retrying until the new server is there,
        // and is answered. Any other error, or a second `Disconnected`, fails.
        let mut answer = None;
        let mut disconnected = Vec::new();
        for _ in 0..2 {
            match client2
                .request::<_, Response>(&Request::Echo {
                    payload: "two".into(),
                })
                .await
            {
                Ok(r) => {
                    answer = Some(r);
                    break;
                }
                Err(e @ RpcError::Disconnected { .. }) => disconnected.push(e.to_string()),
                Err(e) => panic!("unexpected error across the restart: {e}"),
            }
        }
        assert!(
            disconnected.len() <= 1,
            "more than one call failed across the restart: {disconnected:?}"
        );
        assert_eq!(
            answer,
            Some(Response::Json("two".into())),
            "no answer after the restart; failed calls: {disconnected:?}"
        );
        server_again.await.unwrap().shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_a_server_that_starts_late_and_reports_a_missing_one() {
    watchdog(async {
        let name = unique_name("late");
        let late = tokio::spawn({
            let name = name.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                RunningServer::start_on(&name, Server::new(test_router()))
            }
        });
        let client = Client::connect(&name).await.unwrap();
        let got: Response = client.request(&Request::Factorial { n: 3 }).await.unwrap();
        assert_eq!(got, Response::Number(6));
        drop(client);
        late.await.unwrap().shutdown().await;

        let missing = unique_name("missing");
        let err = Client::connect_with(
            &missing,
            ClientOptions::new().connect_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.transport_kind(), Some(ErrorKind::NotFound), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_calls_already_read() {
    watchdog(async {
        for threads in SERVED_ON {
            let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let router = Router::new().handle("Slow", move |tag: u64| {
                let _ = started_tx.send(());
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(tag)
                }
            });
            let mut started_rx = started_rx;
            let server =
                RunningServer::start("graceful", Server::new(router).connection_threads(threads));
            let client = Client::connect(&server.name).await.unwrap();
            let slow = tokio::spawn({
                let client = client.clone();
                async move { client.call::<_, u64>("Slow", &77u64).await }
            });
            // Shut down while the handler runs.
            started_rx.recv().await.unwrap();
            let name = server.name.clone();
            server.shutdown().await;
            assert_eq!(
                slow.await.unwrap().unwrap(),
                77,
                "the call in flight was answered"
            );
            // The name is no longer served.
            let err = pipewright::probe(&name, Duration::ZERO).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_errors_name_the_problem() {
    watchdog(async {
        let server = RunningServer::start("client-errs", Server::new(test_router()));
        let client = Client::connect_with(&server.name, ClientOptions::new().max_frame_size(1024))
            .await
            .unwrap();
        // An Ok answer of the wrong type.
        let err = client
            .call::<_, u64>("Echo", &json!({"payload": "x"}))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("expected type"), "{err}");
        // A request over the client's frame limit is refused before sending.
        let err = client
            .call::<_, Response>("Echo", &json!({"payload": "y".repeat(2000)}))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Encode { .. }), "{err:?}");
        assert!(err.to_string().contains("frame limit"), "{err}");
        // A request type that is not an object.
        let err = client.request::<_, Response>(&"Echo").await.unwrap_err();
        assert!(err.to_string().contains(r#"tag = "method""#), "{err}");
        // An answer over the client's frame limit ends the connection with a clear reason,
        // and the next call reconnects.
        let err = client
            .call::<_, String>("Big", &json!({"len": 4000}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Disconnected { reason, .. } if reason.contains("frame limit")),
            "{err:?}"
        );
        let got: Response = client
            .request(&Request::Echo {
                payload: "still here".into(),
            })
            .await
            .unwrap();
        assert_eq!(got, Response::Json("still here".into()));
        drop(client);
        server.shutdown().await;
    })
    .await
}
