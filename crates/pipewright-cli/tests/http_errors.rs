//! `pipewright http` against servers that fail: the exit code docs/cli.md gives for each
//! (3 no such pipe, 7 the peer broke the connection or the protocol) and one clear sentence
//! on stderr, each cause said once.

mod cli_support;

use cli_support::{pipewright_run, watchdog};

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn unique_name(tag: &str) -> String {
    cli_support::unique_name(&format!("pw-cli-httperr-{tag}"))
}

fn url(name: &str, path: &str) -> String {
    format!("npipe:////./pipe/{name}{path}")
}

/// A pipe server that reads the request head and answers each connection with `reply`,
/// then closes.
fn serve_raw(reply: &'static [u8]) -> String {
    let name = unique_name("raw");
    let listener = pipewright::Listener::bind(name.as_str()).unwrap();
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(reply).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    name
}

async fn ok(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
}

/// A connect error used to read `client error (Connect): client error (Connect): ...
/// (os error 2)): ... (os error 2)`. Now: one line naming the pipe, the problem and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_such_pipe_is_one_sentence_with_exit_3() {
    watchdog(120, async {
        let missing = unique_name("absent");
        let r = pipewright_run(&["http", "--connect-timeout", "200ms", &url(&missing, "/x")]).await;
        assert_eq!(r.code, 3, "{}", r.stderr);
        let err = r.stderr.trim_end();
        eprintln!("stderr: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("pipewright http: cannot connect to "),
            "{err}"
        );
        assert_eq!(err.matches(missing.as_str()).count(), 1, "{err}");
        assert!(err.contains("start the server"), "{err}");
        assert!(!err.contains("client error"), "{err}");
        assert!(err.matches("os error").count() <= 1, "{err}");
    })
    .await;
}

/// A server that does not speak HTTP: hyper's parse error is the peer breaking the
/// protocol, exit 7 (as `rpc call` gives for a malformed answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_response_exits_7() {
    watchdog(120, async {
        let name = serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        let r = pipewright_run(&["http", &url(&name, "/")]).await;
        eprintln!("stderr: {}", r.stderr.trim_end());
        assert_eq!(r.code, 7, "{}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains("request to npipe:"), "{}", r.stderr);
        assert!(!r.stderr.contains("client error"), "{}", r.stderr);
    })
    .await;
}

/// A response whose body ends before its Content-Length: the peer broke the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_short_exits_7() {
    watchdog(120, async {
        let name = serve_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
        let r = pipewright_run(&["http", &url(&name, "/")]).await;
        eprintln!("stderr: {}", r.stderr.trim_end());
        assert_eq!(r.code, 7, "{}", r.stderr);
    })
    .await;
}

/// `--http2` to a server that speaks HTTP/1 only (hyper's HTTP/1 connection, as Go's
/// net/http without h2c): a protocol error, exit 7, with a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_an_http1_only_server_exits_7() {
    watchdog(120, async {
        let name = unique_name("h1");
        let listener = pipewright::Listener::bind(name.as_str()).unwrap();
        tokio::spawn(async move {
            while let Ok(conn) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service_fn(ok))
                        .await;
                });
            }
        });
        let r = pipewright_run(&["http", &url(&name, "/")]).await;
        assert_eq!(r.code, 0, "HTTP/1.1 works: {}", r.stderr);
        let r = pipewright_run(&["http", "--http2", &url(&name, "/")]).await;
        eprintln!("stderr: {}", r.stderr.trim_end());
        assert_eq!(r.code, 7, "{}", r.stderr);
        assert!(r.stderr.contains("without --http2"), "{}", r.stderr);
    })
    .await;
}
