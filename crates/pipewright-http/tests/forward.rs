//! The forwarder: from a pipe to a TCP server on 127.0.0.1, to a helper process, and what
//! happens when the upstream is down, slow, or the client goes away.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{
    eventually, get_from_child, serve_test_service_on_tcp, unique_name, watchdog, TcpUpstream,
};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, StatusCode};
use pipewright::{ConnectOptions, Listener};
use pipewright_http::forward::{Forwarder, Upstream};
use pipewright_http::{ws, Endpoint, PipeUrl, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `forwarder` on a fresh pipe and returns the pipe's name.
fn start_forwarder(forwarder: Forwarder) -> String {
    let name = unique_name("fwd");
    let listener = Listener::bind(name.as_str()).expect("bind");
    let service = forwarder.service();
    tokio::spawn(async move { Server::new().serve(listener, service).await });
    name
}

fn to_tcp(upstream: &TcpUpstream) -> Forwarder {
    Forwarder::new(Upstream::parse(&format!("tcp:127.0.0.1:{}", upstream.port)).unwrap())
}

fn uri(name: &str, path: &str) -> hyper::Uri {
    Endpoint::parse(name).unwrap().uri(path).unwrap()
}

async fn get_text(name: &str, path: &str) -> (StatusCode, String) {
    let client = pipewright_http::client::<Empty<Bytes>>();
    let resp = client
        .get(uri(name, path))
        .await
        .expect("request through the forwarder");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwards_to_tcp_with_pooled_upstream_connections() {
    watchdog(120, async {
        let upstream = serve_test_service_on_tcp().await;
        let name = start_forwarder(to_tcp(&upstream));
        let client = pipewright_http::client::<Full<Bytes>>();
        for i in 0..30 {
            let req = Request::post(uri(&name, "/echo"))
                .body(Full::new(Bytes::from(format!("payload {i}"))))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("payload {i}").as_bytes());
        }
        let big = vec![b'x'; 3 * 1024 * 1024];
        let req = Request::post(uri(&name, "/echo"))
            .body(Full::new(Bytes::from(big.clone())))
            .unwrap();
        let body = client
            .request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(body.to_bytes().len(), big.len());
        assert_eq!(
            upstream.accepted.load(Ordering::SeqCst),
            1,
            "sequential requests share one kept-alive upstream connection"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_clients_through_the_forwarder() {
    watchdog(120, async {
        let upstream = serve_test_service_on_tcp().await;
        let name = start_forwarder(to_tcp(&upstream));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let (status, body) = get_text(&name, &format!("/item/{i}")).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(body, format!("GET /item/{i} HTTP/1.1"));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
}

/// Plays the child of `common::get_from_child`; does nothing in the parent.
#[test]
fn child_get() {
    common::child_get_role();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_forwarding_headers_unless_turned_off() {
    watchdog(60, async {
        let upstream = serve_test_service_on_tcp().await;
        let with = start_forwarder(to_tcp(&upstream));
        // From a child process: the pid in the headers must be the client's, not this
        // process's (the forwarder's).
        let got = get_from_child("child_get", &with, "/headers").await;
        assert_eq!(got.status, 200, "{got:?}");
        let (headers, pid) = (got.body, got.pid);
        assert_ne!(pid, std::process::id());
        assert!(
            headers.contains(&format!("x-forwarded-for: _pipe-pid-{pid}")),
            "{headers}"
        );
        assert!(headers.contains("x-forwarded-proto: http"), "{headers}");
        assert!(
            headers.contains(&format!("forwarded: for=_pipe-pid-{pid};proto=http")),
            "{headers}"
        );
        let without = start_forwarder(to_tcp(&upstream).forwarding_headers(false));
        let (status, headers) = get_text(&without, "/headers").await;
        assert_eq!(status, StatusCode::OK, "{headers}");
        assert!(!headers.contains("forwarded"), "{headers}");
        assert!(
            headers.contains("host: "),
            "the Host header passes through: {headers}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_path_is_answered_locally_even_when_the_upstream_is_down() {
    watchdog(60, async {
        let port = closed_port().await;
        let forwarder = Forwarder::new(Upstream::parse(&format!("tcp:127.0.0.1:{port}")).unwrap())
            .health_path("/healthz");
        let name = start_forwarder(forwarder);
        assert_eq!(
            get_text(&name, "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        pipewright::probe(name.as_str(), Duration::from_secs(5))
            .await
            .expect("probe finds the forwarder ready");
    })
    .await;
}

/// A port on 127.0.0.1 with nothing listening.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_502_without_waiting_for_the_connect_timeout() {
    // The connect timeout is longer than the watchdog: a forwarder that kept retrying a
    // refused upstream until its timeout would trip the watchdog instead of answering 502.
    watchdog(60, async {
        let port = closed_port().await;
        let name = start_forwarder(
            Forwarder::new(Upstream::parse(&format!("tcp:127.0.0.1:{port}")).unwrap())
                .connect_timeout(Duration::from_secs(600)),
        );
        let (status, body) = get_text(&name, "/anything").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.starts_with("502 Bad Gateway"), "{body}");
        assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");

        let missing_pipe = unique_name("nothing-here");
        let name = start_forwarder(Forwarder::new(
            Upstream::parse(&format!("npipe:{missing_pipe}")).unwrap(),
        ));
        let (status, body) = get_text(&name, "/").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504() {
    watchdog(60, async {
        let upstream = serve_test_service_on_tcp().await;
        let name = start_forwarder(to_tcp(&upstream).response_timeout(Duration::from_millis(300)));
        let (status, body) = get_text(&name, "/slow?ms=5000").await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.starts_with("504 Gateway Timeout"), "{body}");
        let (status, _) = get_text(&name, "/slow?ms=10").await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_the_forwarder() {
    watchdog(120, async {
        let upstream = serve_test_service_on_tcp().await;
        let name = start_forwarder(to_tcp(&upstream));
        let url = PipeUrl::parse(&format!("npipe:////./pipe/{name}/ws")).unwrap();
        let mut socket = ws::connect(&url, &ConnectOptions::new(), None)
            .await
            .expect("handshake");
        let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        socket
            .send(ws::Message::binary(payload.clone()))
            .await
            .unwrap();
        match socket.next().await {
            Some(Ok(ws::Message::Binary(got))) => assert!(got[..] == payload[..]),
            other => panic!("expected the echo, got {other:?}"),
        }
        socket.send(ws::Message::text("close:4001")).await.unwrap();
        match socket.next().await {
            Some(Ok(ws::Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
            other => panic!("expected a close frame, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_an_exec_helper() {
    watchdog(120, async {
        let helper = common::example_binary("stdio_server");
        assert!(
            helper.exists(),
            "build the example first: {}",
            helper.display()
        );
        let cmdline = format!("exec:\"{}\"", helper.display());
        let name = start_forwarder(Forwarder::new(Upstream::parse(&cmdline).unwrap()));
        let (status, first) = get_text(&name, "/whoami").await;
        assert_eq!(status, StatusCode::OK);
        assert!(first.starts_with("stdio helper "), "{first}");
        let helper_pid: u32 = first["stdio helper ".len()..].parse().unwrap();
        assert_ne!(helper_pid, std::process::id());
        // The helper's connection is pooled: the next request goes to the same process.
        let (_, second) = get_text(&name, "/whoami").await;
        assert_eq!(first, second);
        let client = pipewright_http::client::<Full<Bytes>>();
        let req = Request::post(uri(&name, "/echo"))
            .body(Full::new(Bytes::from_static(b"through stdin and stdout")))
            .unwrap();
        let body = client
            .request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "through stdin and stdout");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_does_not_leak_the_upstream_connection() {
    watchdog(120, async {
        let upstream = serve_test_service_on_tcp().await;
        let name = start_forwarder(to_tcp(&upstream));
        for round in 0..3 {
            let mut raw = pipewright::connect(name.as_str()).await.unwrap();
            raw.write_all(b"GET /slow?ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(
                eventually(10, || upstream.open.load(Ordering::SeqCst) == 1).await,
                "round {round}: the request reached the upstream"
            );
            drop(raw);
            assert!(
                eventually(20, || upstream.open.load(Ordering::SeqCst) == 0).await,
                "round {round}: the upstream connection was closed after the client left"
            );
        }
        // A client that stops halfway through its request body.
        let mut raw = pipewright::connect(name.as_str()).await.unwrap();
        raw.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
            .await
            .unwrap();
        assert!(eventually(10, || upstream.open.load(Ordering::SeqCst) == 1).await);
        drop(raw);
        assert!(
            eventually(20, || upstream.open.load(Ordering::SeqCst) == 0).await,
            "the half-sent request's upstream connection was closed"
        );
        // The forwarder still serves.
        let (status, _) = get_text(&name, "/ok").await;
        assert_eq!(status, StatusCode::OK);
        let mut raw = pipewright::connect(name.as_str()).await.unwrap();
        raw.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        raw.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("GET /after HTTP/1.1"), "{reply}");
    })
    .await;
}
