//! `pipewright http` and `pipewright forward`, run as the built binary against real servers.

mod cli_support;

use cli_support::{pipewright_run, watchdog};

use std::convert::Infallible;
use std::process::Stdio;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pipewright");

fn unique_name(tag: &str) -> String {
    cli_support::unique_name(&format!("pw-cli-http-{tag}"))
}

/// `/echo` returns the body, `/json` a JSON document, `/missing` a 404, `/headers` the request
/// headers; anything else `METHOD PATH?QUERY`.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        Ok(r)
    };
    match path.as_str() {
        "/echo" => {
            let method = req.method().clone();
            let ct = req
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            reply(
                StatusCode::OK,
                format!("{method} [{ct}] {}", String::from_utf8_lossy(&body)),
            )
        }
        "/json" => reply(StatusCode::OK, r#"{"a":1,"b":[true,null]}"#.into()),
        "/missing" => reply(StatusCode::NOT_FOUND, "no such thing\n".into()),
        "/headers" => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            reply(StatusCode::OK, out)
        }
        _ => reply(
            StatusCode::OK,
            format!(
                "{} {}",
                req.method(),
                req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
            ),
        ),
    }
}

fn serve_on_pipe() -> String {
    let name = unique_name("srv");
    let listener = pipewright::Listener::bind(name.as_str()).unwrap();
    tokio::spawn(async move {
        pipewright_http::Server::new()
            .serve(listener, service_fn(handle))
            .await
    });
    name
}

async fn serve_on_tcp() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    port
}

fn url(name: &str, path: &str) -> String {
    format!("npipe:////./pipe/{name}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gets_posts_and_shows_headers() {
    watchdog(120, async {
        let name = serve_on_pipe();
        let r = pipewright_run(&["http", &url(&name, "/items?limit=5")]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "GET /items?limit=5");

        let r = pipewright_run(&[
            "http",
            "-X",
            "put",
            "-d",
            "hello",
            "-H",
            "Content-Type: text/x-test",
            &url(&name, "/echo"),
        ])
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "PUT [text/x-test] hello");

        let r = pipewright_run(&["http", "-d", "x", &url(&name, "/echo")]).await;
        assert_eq!(r.stdout, "POST [] x", "-d alone means POST");

        let file = std::env::temp_dir().join(format!("{}.body", unique_name("file")));
        std::fs::write(&file, b"from a file").unwrap();
        let at = format!("@{}", file.display());
        let r = pipewright_run(&["http", "-d", &at, &url(&name, "/echo")]).await;
        std::fs::remove_file(&file).ok();
        assert_eq!(r.stdout, "POST [] from a file", "{}", r.stderr);

        let r = pipewright_run(&["http", "-i", &url(&name, "/")]).await;
        assert!(r.stdout.starts_with("HTTP/1.1 200 OK\n"), "{}", r.stdout);
        assert!(r.stdout.contains("content-length: 5\n"), "{}", r.stdout);
        assert!(r.stdout.ends_with("\n\nGET /"), "{}", r.stdout);

        let r = pipewright_run(&["http", "--http2", &url(&name, "/h2")]).await;
        assert_eq!((r.code, r.stdout.as_str()), (0, "GET /h2"), "{}", r.stderr);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_sets_the_headers_and_pretty_prints() {
    watchdog(120, async {
        let name = serve_on_pipe();
        let r =
            pipewright_run(&["http", "--json", "-d", r#"{"k": 2}"#, &url(&name, "/echo")]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, r#"POST [application/json] {"k": 2}"#);
        let r = pipewright_run(&["http", "--json", &url(&name, "/json")]).await;
        assert_eq!(
            r.stdout,
            "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ]\n}\n"
        );
        let r = pipewright_run(&["http", "--json", "-d", "{not json", &url(&name, "/echo")]).await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("not JSON"), "{}", r.stderr);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exit_codes() {
    watchdog(120, async {
        let name = serve_on_pipe();
        let r = pipewright_run(&["http", &url(&name, "/missing")]).await;
        assert_eq!((r.code, r.stdout.as_str()), (0, "no such thing\n"));
        let r = pipewright_run(&["http", "--fail", &url(&name, "/missing")]).await;
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("404"), "{}", r.stderr);

        let missing = unique_name("absent");
        let r = pipewright_run(&["http", "--connect-timeout", "200ms", &url(&missing, "/")]).await;
        assert_eq!(r.code, 3, "no such pipe: {}", r.stderr);

        for bad in ["http://localhost/", "npipe:////./pipes/x", "unix:relative"] {
            let r = pipewright_run(&["http", bad]).await;
            assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
            assert!(
                r.stderr.contains("npipe:////./pipe/NAME/path"),
                "{bad}: {}",
                r.stderr
            );
        }
        let r = pipewright_run(&["http", "-H", "no colon", &url(&name, "/")]).await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("'Name: value'"), "{}", r.stderr);
        let r = pipewright_run(&["http", "-d", "@/definitely/not/here", &url(&name, "/")]).await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("/definitely/not/here"), "{}", r.stderr);
    })
    .await;
}

/// A running `pipewright forward`, killed on drop.
struct Forward {
    child: tokio::process::Child,
    name: String,
}

async fn start_forward(to: &str, extra: &[&str]) -> Forward {
    let name = unique_name("fwd");
    let listen = format!("npipe:{name}");
    let child = Command::new(BIN)
        .args(["-v", "forward", "--listen", &listen, "--to", to])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start pipewright forward");
    let r = pipewright_run(&["probe", "-t", "20s", &name]).await;
    assert_eq!(r.code, 0, "the forwarder became ready: {}", r.stderr);
    Forward { child, name }
}

impl Forward {
    async fn stop(mut self) -> String {
        self.child.start_kill().ok();
        let out = self.child.wait_with_output().await.unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxies_to_tcp_and_logs_each_request() {
    watchdog(120, async {
        let port = serve_on_tcp().await;
        let fwd = start_forward(
            &format!("tcp:127.0.0.1:{port}"),
            &["--health-path", "/healthz"],
        )
        .await;
        let r = pipewright_run(&["http", &url(&fwd.name, "/via/forward?x=1")]).await;
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "GET /via/forward?x=1"),
            "{}",
            r.stderr
        );
        let r = pipewright_run(&["http", "-d", "body", &url(&fwd.name, "/echo")]).await;
        assert_eq!(r.stdout, "POST [] body");
        let r = pipewright_run(&["http", &url(&fwd.name, "/headers")]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("x-forwarded-for: _pipe-pid-"),
            "{}",
            r.stdout
        );
        let r = pipewright_run(&["http", &url(&fwd.name, "/healthz")]).await;
        assert_eq!(r.stdout, "ok\n");
        let log = fwd.stop().await;
        assert!(log.contains("GET /via/forward?x=1 200 20B"), "{log}");
        assert!(log.contains("POST /echo 200"), "{log}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_without_forwarding_headers_and_with_the_upstream_down() {
    watchdog(120, async {
        let port = serve_on_tcp().await;
        let fwd = start_forward(
            &format!("tcp:127.0.0.1:{port}"),
            &["--no-forwarding-headers"],
        )
        .await;
        let r = pipewright_run(&["http", &url(&fwd.name, "/headers")]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The request went through (the upstream listed its headers, Host among them) and
        // no forwarding header was added.
        assert!(r.stdout.contains("host: "), "{}", r.stdout);
        assert!(!r.stdout.contains("forwarded"), "{}", r.stdout);
        fwd.stop().await;

        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let fwd = start_forward(&format!("tcp:127.0.0.1:{closed}"), &[]).await;
        let r = pipewright_run(&["http", "-i", "--fail", &url(&fwd.name, "/")]).await;
        assert_eq!(r.code, 1);
        assert!(
            r.stdout.starts_with("HTTP/1.1 502 Bad Gateway"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains("502 Bad Gateway: the upstream tcp:127.0.0.1:"),
            "{}",
            r.stdout
        );
        fwd.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_rejects_malformed_addresses() {
    watchdog(60, async {
        let r = pipewright_run(&["forward", "--listen", "npipe:x", "--to", "127.0.0.1:80"]).await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("tcp:HOST:PORT"), "{}", r.stderr);
        let r = pipewright_run(&["forward", "--listen", "x", "--to", "tcp:127.0.0.1:80"]).await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("npipe:NAME"), "{}", r.stderr);
        let r = pipewright_run(&[
            "forward",
            "--listen",
            "npipe:x",
            "--to",
            "tcp:127.0.0.1:80",
            "--health-path",
            "healthz",
        ])
        .await;
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("/healthz"), "{}", r.stderr);
    })
    .await;
}
