//! gRPC over pipes with tonic (feature `grpc`): the hand-written echo service of the
//! `grpc_echo` example served from a pipe listener, called through the pipe connector: unary,
//! server streaming with many and with big messages, concurrent calls, the caller's identity in
//! the service, the example as separate server and client processes, and a missing pipe.

mod common;

#[allow(dead_code)]
#[path = "../examples/grpc_echo.rs"]
mod grpc_echo;

use std::process::Stdio;

use common::{example_binary, unique_name, watchdog, ExampleServer};
use grpc_echo::echo::{stream_payload, EchoClient, EchoReply, EchoRequest, EchoServer};
use pipewright::{ErrorKind, Listener};
use pipewright_http::grpc;

/// Serves the echo service on a fresh pipe in this process; returns the pipe's name.
fn serve_echo(tag: &str) -> String {
    let name = unique_name(tag);
    let listener = Listener::bind(name.as_str()).expect("bind");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer)
            .serve_with_incoming(grpc::incoming(listener)),
    );
    name
}

async fn client(name: &str) -> EchoClient {
    let channel = grpc::connect(&format!("npipe:{name}"))
        .await
        .unwrap_or_else(|e| panic!("connect to {name}: {e}"));
    EchoClient::new(channel)
}

fn this_user() -> String {
    pipewright::platform::current_user()
        .expect("current user")
        .to_string()
}

/// Reads a whole stream, checking order and every payload byte.
async fn check_stream(client: &mut EchoClient, count: u32, size: u32) {
    let mut replies = client
        .stream(EchoRequest {
            message: "s".into(),
            count,
            size,
            ..Default::default()
        })
        .await
        .expect("stream call");
    let mut seen = 0u32;
    while let Some(reply) = replies.message().await.expect("stream message") {
        let EchoReply {
            message,
            index,
            peer_pid,
            payload,
            ..
        } = reply;
        assert_eq!(index, seen, "replies arrive in order");
        assert_eq!(message, format!("s {seen}"));
        assert_eq!(peer_pid, Some(std::process::id()));
        assert!(
            payload == stream_payload(seen, size),
            "payload of reply {seen} ({} bytes) differs",
            payload.len()
        );
        seen += 1;
    }
    assert_eq!(seen, count, "every reply arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call_echoes_and_the_service_sees_the_callers_pid_and_user() {
    watchdog(60, async {
        let name = serve_echo("unary");
        let mut client = client(&name).await;
        let reply = client
            .unary(EchoRequest {
                message: "hello over a pipe".into(),
                ..Default::default()
            })
            .await
            .expect("unary call");
        assert_eq!(reply.message, "hello over a pipe");
        assert_eq!(reply.peer_pid, Some(std::process::id()));
        assert_eq!(reply.peer_user, Some(this_user()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_payloads_over_64_kib_travel_both_ways() {
    watchdog(120, async {
        let name = serve_echo("big-unary");
        let mut client = client(&name).await;
        for size in [64 * 1024 + 1, 300_000, 3 * 1024 * 1024] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let reply = client
                .unary(EchoRequest {
                    message: format!("{size}"),
                    payload: payload.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("unary call of {size} bytes: {e}"));
            assert_eq!(reply.message, format!("{size}"));
            assert!(
                reply.payload == payload,
                "{size}-byte payload came back changed"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_delivers_many_messages_in_order() {
    watchdog(120, async {
        let name = serve_echo("many");
        let mut client = client(&name).await;
        check_stream(&mut client, 5000, 16).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_delivers_messages_over_64_kib_intact() {
    watchdog(120, async {
        let name = serve_echo("big-stream");
        let mut client = client(&name).await;
        check_stream(&mut client, 40, 256 * 1024).await;
        check_stream(&mut client, 3, 64 * 1024 + 1).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_channel() {
    watchdog(120, async {
        let name = serve_echo("concurrent");
        let client = client(&name).await;
        let mut tasks = Vec::new();
        for i in 0..32u32 {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let reply = client
                        .unary(EchoRequest {
                            message: format!("call {i}"),
                            ..Default::default()
                        })
                        .await
                        .expect("unary call");
                    assert_eq!(reply.message, format!("call {i}"));
                } else {
                    check_stream(&mut client, 50, 1000 + i).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("call task");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_missing_pipe_is_an_error_naming_the_pipe() {
    watchdog(60, async {
        let name = unique_name("grpc-missing");
        let err = grpc::connect(&format!("npipe:{name}"))
            .await
            .expect_err("nothing serves this pipe");
        let text = err.to_string();
        assert!(text.contains(&name), "the error names the pipe: {text}");
        match &err {
            pipewright_http::Error::Transport(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::TimedOut),
                    "kind {:?}: {text}",
                    e.kind()
                );
                assert!(e.pipe().is_some_and(|p| p.contains(&name)), "{text}");
            }
            other => panic!("a transport error expected, got {other:?}"),
        }
        assert!(
            !text.contains("transport error"),
            "the error says what went wrong: {text}"
        );

        let err = grpc::connect("http://localhost:50051")
            .await
            .expect_err("not a pipe endpoint");
        assert!(err.to_string().contains("accepted forms"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_unimplemented_and_named() {
    watchdog(60, async {
        let name = serve_echo("unknown-method");
        let channel = grpc::connect(&name).await.expect("connect");
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let status = grpc
            .unary::<_, EchoReply, _>(
                tonic::Request::new(EchoRequest::default()),
                hyper::http::uri::PathAndQuery::from_static("/pipewright.examples.Echo/Nope"),
                tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default(),
            )
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
        assert!(
            status.message().contains("/pipewright.examples.Echo/Nope"),
            "{status:?}"
        );
        // The same connection still serves calls.
        let reply = EchoClient::new(channel)
            .unary(EchoRequest {
                message: "still here".into(),
                ..Default::default()
            })
            .await
            .expect("unary call");
        assert_eq!(reply.message, "still here");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_server_answers_the_example_client_and_this_process() {
    watchdog(120, async {
        let name = unique_name("grpc-example");
        let _server = ExampleServer::start("grpc_echo", &["serve", &name]);

        // The example's client, a process of its own.
        let child = tokio::process::Command::new(example_binary("grpc_echo"))
            .args(["call", &format!("npipe:////./pipe/{name}"), "hi"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start grpc_echo call");
        let pid = child.id().expect("pid");
        let out = child.wait_with_output().await.expect("grpc_echo call");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "grpc_echo call: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                format!("unary: hi (server saw pid {pid})").as_str(),
                "stream: hi 0 (16 payload bytes)",
                "stream: hi 1 (16 payload bytes)",
                "stream: hi 2 (16 payload bytes)",
            ]
        );

        // This process, through every endpoint form of the same pipe.
        let mut forms = vec![
            name.clone(),
            format!("npipe:{name}"),
            format!(r"\\.\pipe\{name}"),
        ];
        if cfg!(unix) {
            let path = pipewright::PipeName::parse(&name).unwrap().unix_path();
            forms.push(format!("unix://{}", path.display()));
        }
        for endpoint in forms {
            let channel = grpc::connect(&endpoint)
                .await
                .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
            let reply = EchoClient::new(channel)
                .unary(EchoRequest {
                    message: endpoint.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("unary call on {endpoint}: {e}"));
            assert_eq!(reply.message, endpoint);
            assert_eq!(reply.peer_pid, Some(std::process::id()));
            assert_eq!(reply.peer_user, Some(this_user()));
        }
    })
    .await;
}
