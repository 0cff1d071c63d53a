//! Fixes found by running against other HTTP stacks: the forwarder speaks its own HTTP
//! version to the client whatever the upstream's, and a failed connect reads as one sentence.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use pipewright::Listener;
use pipewright_http::forward::{Forwarder, Upstream};
use pipewright_http::{Endpoint, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the raw upstream delimits its HTTP/1.0 response body.
#[derive(Clone, Copy)]
enum Delimit {
    /// `Content-Length`, and `Connection: keep-alive` as HTTP/1.0 servers that pool do.
    Length,
    /// No length: the body ends when the upstream closes the connection.
    Close,
}

/// A TCP upstream that answers every request with an HTTP/1.0 response written by hand
/// (`HTTP/1.0 200 OK`, body `hello N` for its Nth connection), then closes.
async fn http10_upstream(delimit: Delimit) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((sock, _)) = listener.accept().await {
            n += 1;
            tokio::spawn(async move {
                let mut sock = BufReader::new(sock);
                let mut line = String::new();
                loop {
                    line.clear();
                    match sock.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let body = format!("hello {n}");
                let head = match delimit {
                    Delimit::Length => format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    ),
                    Delimit::Close => "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_string(),
                };
                let sock = sock.get_mut();
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn start_forwarder(forwarder: Forwarder) -> String {
    let name = unique_name("interop-fwd");
    let listener = Listener::bind(name.as_str()).expect("bind");
    let service = forwarder.service();
    tokio::spawn(async move { Server::new().serve(listener, service).await });
    name
}

/// One response read off a raw connection: the status line, the headers (names lower-case)
/// and the body (by `Content-Length` or chunked).
struct RawResponse {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_line<R: AsyncBufReadExt + Unpin>(r: &mut R) -> String {
    let mut line = String::new();
    let n = r.read_line(&mut line).await.expect("read a line");
    assert!(n > 0, "the connection ended before a complete response");
    line.trim_end_matches(['\r', '\n']).to_string()
}

async fn read_response<R: AsyncBufReadExt + Unpin>(r: &mut R) -> RawResponse {
    let status_line = read_line(r).await;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r).await;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').expect("a header line");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut response = RawResponse {
        status_line,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = response.header("content-length") {
        let mut body = vec![0u8; len.parse().expect("a numeric Content-Length")];
        r.read_exact(&mut body).await.unwrap();
        response.body = body;
    } else if response.header("transfer-encoding") == Some("chunked") {
        loop {
            let size = usize::from_str_radix(&read_line(r).await, 16).expect("a chunk size");
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        panic!(
            "{}: a body delimited by closing the connection cannot keep it alive",
            response.status_line
        );
    }
    response
}

/// A connection, buffered for reading, to a new forwarder in front of the upstream on TCP
/// `port`.
async fn connect_through_forwarder(port: u16) -> BufReader<pipewright::PipeStream> {
    let name = start_forwarder(Forwarder::new(
        Upstream::parse(&format!("tcp:127.0.0.1:{port}")).unwrap(),
    ));
    let conn = pipewright::connect_with(
        name.as_str(),
        &pipewright::ConnectOptions::new().timeout(std::time::Duration::from_secs(20)),
    )
    .await
    .unwrap();
    BufReader::new(conn)
}

/// Go's net/http client dropped keep-alive on every response the forwarder passed on from an
/// HTTP/1.0 upstream, because the status line said `HTTP/1.0`. The forwarder is an
/// intermediary and must send its own version (RFC 9110 section 6.2): an HTTP/1.1 client gets
/// `HTTP/1.1` and keeps its connection, whether the upstream gave a length or closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_upstream_answers_reach_the_client_as_http11_on_one_connection() {
    watchdog(120, async {
        for delimit in [Delimit::Length, Delimit::Close] {
            let port = http10_upstream(delimit).await;
            let mut conn = connect_through_forwarder(port).await;
            for i in 1..=3 {
                conn.write_all(b"GET /v HTTP/1.1\r\nHost: svc\r\n\r\n")
                    .await
                    .unwrap();
                let r = read_response(&mut conn).await;
                assert_eq!(r.status_line, "HTTP/1.1 200 OK", "request {i}");
                assert_ne!(r.header("connection"), Some("close"), "request {i}");
                assert_eq!(r.body, format!("hello {i}").as_bytes(), "request {i}");
            }
        }
    })
    .await;
}

/// An HTTP/1.0 client still gets an HTTP/1.0 answer (hyper speaks the client's version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_client_gets_http10_through_the_forwarder() {
    watchdog(120, async {
        let port = http10_upstream(Delimit::Length).await;
        let mut conn = connect_through_forwarder(port).await;
        conn.write_all(b"GET /v HTTP/1.0\r\n\r\n").await.unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(text.ends_with("hello 1"), "{text}");
    })
    .await;
}

/// A failed connect names the pipe, the problem and the fix once: no cause repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_say_each_cause_once() {
    watchdog(60, async {
        let missing = unique_name("absent");
        let client = pipewright_http::client_builder().build::<_, Empty<Bytes>>(
            pipewright_http::PipeConnector::new()
                .connect_timeout(std::time::Duration::from_millis(100)),
        );
        let uri = Endpoint::parse(&missing).unwrap().uri("/").unwrap();
        let err = pipewright_http::Error::from(client.get(uri).await.unwrap_err());
        assert_eq!(err.transport_kind(), Some(pipewright::ErrorKind::NotFound));
        let text = err.to_string();
        assert_eq!(text.matches(&missing).count(), 1, "{text}");
        assert!(text.contains("start the server"), "{text}");
        assert!(!text.contains("client error"), "{text}");
        assert!(text.matches("os error").count() <= 1, "{text}");
    })
    .await;
}

/// A server limited to one protocol refuses the other one (hyper-util's upgradeable
/// connection would serve whichever the client opened with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_limited_to_one_protocol_refuses_the_other() {
    watchdog(60, async {
        for (only_http2, server) in [
            (false, Server::new().http1_only()),
            (true, Server::new().http2_only()),
        ] {
            let name = unique_name("one-protocol");
            let listener = Listener::bind(name.as_str()).expect("bind");
            let served = tokio::spawn(async move {
                server
                    .serve(listener, hyper::service::service_fn(handle))
                    .await
            });
            let uri = Endpoint::parse(&name).unwrap().uri("/").unwrap();
            for http2 in [false, true] {
                let client = pipewright_http::client_builder()
                    .http2_only(http2)
                    .build::<_, Empty<Bytes>>(pipewright_http::PipeConnector::new());
                let result = client.get(uri.clone()).await;
                if http2 == only_http2 {
                    let response = result.unwrap_or_else(|e| {
                        panic!("http2={http2} against a server for it: {e}")
                    });
                    assert!(response.status().is_success(), "{response:?}");
                } else {
                    assert!(
                        result.is_err(),
                        "an http2={http2} request was served by a server limited to the other protocol"
                    );
                }
            }
            served.abort();
        }
    })
    .await;
}
