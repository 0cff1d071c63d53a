//! axum on pipes (feature `axum`): the `axum_json` example called by the built `pipewright http`
//! and by the crate's client, and `axum::serve` on a `PipeListener` in process, each checking
//! that the handler saw the caller's process id.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use common::{unique_name, watchdog, ExampleServer};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use pipewright_http::axum::{PipeAddr, PipeListener};
use pipewright_http::Endpoint;
use serde_json::{json, Value};

/// The built `pipewright` binary of the same build (`cargo test --workspace` builds it next
/// to the test binaries), or `PIPEWRIGHT_BIN`.
fn pipewright_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PIPEWRIGHT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    let bin = profile.join(format!("pipewright{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "no pipewright binary at {}: `cargo test --workspace` builds it; with `-p pipewright-http` \
         build it first (`cargo build -p pipewright-cli`, for Windows `scripts/cargo-win build -p \
         pipewright-cli`) or set PIPEWRIGHT_BIN",
        bin.display()
    );
    bin
}

/// Runs `pipewright http ARGS`; returns its process id and output.
async fn pipewright_http(args: &[&str]) -> (u32, std::process::Output) {
    let child = tokio::process::Command::new(pipewright_bin())
        .arg("http")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start pipewright http");
    let pid = child.id().expect("pid of a running child");
    let out = child.wait_with_output().await.expect("pipewright output");
    assert!(
        out.status.success(),
        "pipewright http {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, out)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// A request with the crate's client; returns the status and the body as JSON.
async fn call(name: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let client = pipewright_http::client::<Full<Bytes>>();
    let uri = Endpoint::parse(name).unwrap().uri(path).unwrap();
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(v.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = client
        .request(req.body(body).unwrap())
        .await
        .expect("request");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, json_of(&bytes))
}

fn this_user() -> String {
    pipewright::platform::current_user()
        .expect("current user")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_serves_json_to_the_cli_and_the_client_and_sees_their_pids() {
    watchdog(120, async {
        let name = unique_name("axum-example");
        let _server = ExampleServer::start("axum_json", &[&name]);
        let base = format!("npipe:////./pipe/{name}");

        // `pipewright http`, a process of its own: the handler saw that process.
        let (cli_pid, out) = pipewright_http(&[&format!("{base}/whoami")]).await;
        let who = json_of(&out.stdout);
        assert_eq!(who["pid"], json!(cli_pid), "whoami from the CLI: {who}");
        assert_eq!(
            who["user"],
            json!(this_user()),
            "whoami from the CLI: {who}"
        );

        let (cli_pid, out) = pipewright_http(&[
            "--json",
            "-d",
            r#"{"text":"from the cli"}"#,
            &format!("{base}/notes"),
        ])
        .await;
        let note = json_of(&out.stdout);
        assert_eq!(
            note,
            json!({"id": 1, "text": "from the cli", "author_pid": cli_pid})
        );

        // HTTP/2 (prior knowledge) is served on the same pipe.
        let (_, out) = pipewright_http(&["--http2", "--fail", &format!("{base}/notes/1")]).await;
        assert_eq!(json_of(&out.stdout), note);

        // The crate's own client, from this process.
        let (status, who) = call(&name, Method::GET, "/whoami", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(who["pid"], json!(std::process::id()), "whoami: {who}");
        assert_eq!(who["user"], json!(this_user()), "whoami: {who}");

        let (status, added) = call(
            &name,
            Method::POST,
            "/notes",
            Some(json!({"text": "from the client"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            added,
            json!({"id": 2, "text": "from the client", "author_pid": std::process::id()})
        );
        let (status, all) = call(&name, Method::GET, "/notes", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(all, json!([note, added]));

        let (status, missing) = call(&name, Method::GET, "/notes/99", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(missing, json!({"error": "no note 99"}));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_on_a_pipe_listener_gives_handlers_the_peer_and_shuts_down() {
    watchdog(60, async {
        let name = unique_name("axum-serve");
        let listener = PipeListener::bind(name.as_str()).expect("bind");
        let local = axum::serve::Listener::local_addr(&listener).expect("local addr");
        assert_eq!(local.name().name(), name);
        assert!(
            local.peer().is_none(),
            "the listener's own address has no peer"
        );

        async fn whoami(ConnectInfo(addr): ConnectInfo<PipeAddr>) -> Json<Value> {
            let peer = addr.peer();
            Json(json!({
                "pipe": addr.name().name(),
                "pid": peer.and_then(|p| p.pid),
                "user": peer.and_then(|p| p.user.as_ref()).map(|u| u.to_string()),
            }))
        }
        let app = Router::new().route("/whoami", get(whoami));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<PipeAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
        });

        // Several requests at once, each on its own connection.
        let mut calls = Vec::new();
        for _ in 0..8 {
            let name = name.clone();
            calls.push(tokio::spawn(async move {
                call(&name, Method::GET, "/whoami", None).await
            }));
        }
        for c in calls {
            let (status, who) = c.await.expect("call task");
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                who,
                json!({"pipe": name, "pid": std::process::id(), "user": this_user()})
            );
        }

        stop_tx.send(()).expect("server still running");
        server
            .await
            .expect("server task")
            .expect("axum::serve ended without an error");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_on_the_crate_server_gets_the_peer_as_an_extension() {
    watchdog(60, async {
        let name = unique_name("axum-server");
        let listener = pipewright::Listener::bind(name.as_str()).expect("bind");
        async fn whoami(axum::Extension(peer): axum::Extension<pipewright::Peer>) -> Json<Value> {
            Json(json!({ "pid": peer.pid }))
        }
        let app = Router::new().route("/whoami", get(whoami));
        let service = hyper_util::service::TowerToHyperService::new(app);
        tokio::spawn(async move {
            pipewright_http::Server::new()
                .max_connections(4)
                .serve(listener, service)
                .await
        });
        let (status, who) = call(&name, Method::GET, "/whoami", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(who, json!({ "pid": std::process::id() }));
    })
    .await;
}
