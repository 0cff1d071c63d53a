//! The server and the pooled client over real pipes (Unix sockets on Linux).

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use common::{get_from_child, serve_test_service_on_pipe, text, unique_name, watchdog};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use pipewright::{ErrorKind, Listener};
use pipewright_http::{client_builder, Endpoint, PipeConnector, PipeUrl, Server};

fn url(name: &str, path: &str) -> hyper::Uri {
    Endpoint::parse(name).unwrap().uri(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_keep_alive_clients_all_get_their_answers() {
    watchdog(120, async {
        let name = serve_test_service_on_pipe("k100");
        let mut tasks = Vec::new();
        for client_id in 0..100 {
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                // One pooled client per task: its requests reuse one kept-alive connection.
                let client = client_builder().build::<_, Full<Bytes>>(PipeConnector::new());
                for round in 0..5 {
                    let body = format!("client {client_id} round {round}");
                    let req = Request::post(url(&name, "/echo"))
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    let resp = client.request(req).await.expect("request");
                    assert_eq!(resp.status(), StatusCode::OK);
                    let got = resp.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(got, body.as_bytes());
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_connection() {
    watchdog(60, async {
        let name = unique_name("reuse");
        let listener = Listener::bind(name.as_str()).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        // Count connections by accepting them here and serving each with the test service.
        tokio::spawn(async move {
            while let Ok(stream) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = builder
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            service_fn(common::handle),
                        )
                        .await;
                });
            }
        });
        let client = pipewright_http::client::<Empty<Bytes>>();
        for _ in 0..20 {
            let resp = client.get(url(&name, "/hello")).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "GET /hello HTTP/1.1");
            // The connection returns to the pool in the background after the body ends.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let opened = connections.load(Ordering::SeqCst);
        assert!(
            opened <= 3,
            "20 requests opened {opened} connections; the pool should reuse one"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_a_pipe() {
    watchdog(60, async {
        let name = serve_test_service_on_pipe("h2");
        let client = client_builder()
            .http2_only(true)
            .build::<_, Full<Bytes>>(PipeConnector::new());
        let mut tasks = Vec::new();
        for i in 0..20 {
            let client = client.clone();
            let uri = url(&name, "/echo");
            tasks.push(tokio::spawn(async move {
                let req = Request::post(uri)
                    .body(Full::new(Bytes::from(format!("stream {i}"))))
                    .unwrap();
                let resp = client.request(req).await.expect("h2 request");
                assert_eq!(resp.version(), hyper::Version::HTTP_2);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("stream {i}").as_bytes());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let resp = client.get(url(&name, "/x")).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "GET /x HTTP/2.0");
    })
    .await;
}

/// Plays the child of `common::get_from_child`; does nothing in the parent.
#[test]
fn child_get() {
    common::child_get_role();
}

/// The request comes from a child process, so a pid taken from the wrong end (or from this
/// process) cannot pass: the server must see the child's pid, the child the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_carries_the_client_pid_and_responses_the_server_pid() {
    watchdog(60, async {
        let name = serve_test_service_on_pipe("peer");
        let got = get_from_child("child_get", &name, "/peer").await;
        let me = std::process::id();
        assert_ne!(got.pid, me);
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(
            got.body,
            format!("{:?}", Some(got.pid)),
            "the server saw the child's pid"
        );
        assert_eq!(got.server_pid, Some(me), "the child saw the server's pid");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_style_endpoint_and_url_forms_reach_the_server() {
    watchdog(60, async {
        let name = serve_test_service_on_pipe("forms");
        let client = pipewright_http::client::<Empty<Bytes>>();
        for endpoint in [
            format!("npipe:////./pipe/{name}"),
            format!("npipe://./pipe/{name}"),
            format!(r"\\.\pipe\{name}"),
        ] {
            let uri = Endpoint::parse(&endpoint)
                .unwrap()
                .uri("/v1/_ping")
                .unwrap();
            let resp = client.get(uri).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "GET /v1/_ping HTTP/1.1", "{endpoint}");
        }
        let url = PipeUrl::parse(&format!("npipe:////./pipe/{name}/a/b?c=d")).unwrap();
        let resp = client.get(url.uri().unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_missing_pipe_fails_within_the_timeout() {
    watchdog(60, async {
        let name = unique_name("missing");
        let connector = PipeConnector::new().connect_timeout(Duration::from_millis(300));
        let client = client_builder().build::<_, Empty<Bytes>>(connector);
        let err = client.get(url(&name, "/")).await.unwrap_err();
        let err = pipewright_http::Error::from(err);
        assert_eq!(err.transport_kind(), Some(ErrorKind::NotFound), "{err:?}");
    })
    .await;
}

/// The connector's timeout is a retry window: its first attempt (made in its first poll)
/// finds no server, the server appears only then, and a later attempt reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_retries_until_a_late_server_appears() {
    watchdog(60, async {
        let name = unique_name("late");
        let connector = PipeConnector::new().connect_timeout(Duration::from_secs(30));
        let uri = url(&name, "/");
        let mut connecting = Box::pin(connector.connect_uri(&uri));
        let first = std::future::poll_fn(|cx| Poll::Ready(connecting.as_mut().poll(cx))).await;
        if let Poll::Ready(r) = first {
            panic!("the first attempt had no server to reach, yet it ended: {r:?}");
        }
        let listener = Listener::bind(name.as_str()).unwrap();
        connecting.await.expect("the retry reaches the late server");
        listener
            .accept()
            .await
            .expect("the server sees the connection");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    watchdog(60, async {
        let name = unique_name("graceful");
        let listener = Listener::bind(name.as_str()).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            Server::new()
                .serve_with_shutdown(listener, service_fn(common::handle), async {
                    let _ = stop_rx.await;
                })
                .await
        });
        let client = pipewright_http::client::<Empty<Bytes>>();
        let slow = tokio::spawn({
            let client = client.clone();
            let uri = url(&name, "/slow?ms=1500");
            async move { client.get(uri).await }
        });
        // Let the slow request reach the server, then ask the server to stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(()).unwrap();
        let resp = slow
            .await
            .unwrap()
            .expect("the in-flight request is answered");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "slept 1500");
        server.await.unwrap().expect("serve returns Ok");
        // The server is gone: a new client finds no pipe.
        let err = pipewright::connect_with(
            name.as_str(),
            &pipewright::ConnectOptions::new().timeout(Duration::ZERO),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_connection_limit_holds_further_clients_back() {
    watchdog(60, async {
        let name = unique_name("limit");
        let listener = Listener::bind(name.as_str()).unwrap();
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, p) = (active.clone(), peak.clone());
        let service = service_fn(move |_req| {
            let (a, p) = (a.clone(), p.clone());
            async move {
                let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                a.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(text(StatusCode::OK, "done"))
            }
        });
        tokio::spawn(async move {
            Server::new()
                .max_connections(2)
                .serve(listener, service)
                .await
        });
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let uri = url(&name, "/");
            tasks.push(tokio::spawn(async move {
                // A fresh client each time, and the connection closed after the answer.
                let client = client_builder()
                    .pool_max_idle_per_host(0)
                    .build::<_, Empty<Bytes>>(
                        PipeConnector::new().connect_timeout(Duration::from_secs(30)),
                    );
                let resp = client.get(uri).await.expect("request");
                resp.into_body().collect().await.unwrap().to_bytes()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "done");
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "at most two connections were served at once"
        );
    })
    .await;
}
