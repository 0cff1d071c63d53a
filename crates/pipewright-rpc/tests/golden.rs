//! The exact bytes of pipe-rpc's frames, both ways, over real pipes.

mod common;

use common::*;
use std::future::Future;

use pipewright::{Listener, PipeStream};
use pipewright_rpc::demo::{self, Request, Response};
use pipewright_rpc::{Client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

const FACTORIAL_REQUEST: &[u8] = &[
    0x27, 0x00, 0x00, 0x00, b'{', b'"', b'm', b'e', b't', b'h', b'o', b'd', b'"', b':', b'"', b'F',
    b'a', b'c', b't', b'o', b'r', b'i', b'a', b'l', b'"', b',', b'"', b'p', b'a', b'r', b'a', b'm',
    b's', b'"', b':', b'{', b'"', b'n', b'"', b':', b'5', b'}', b'}',
];

const NUMBER_RESPONSE: &[u8] = &[
    0x27, 0x00, 0x00, 0x00, b'{', b'"', b's', b't', b'a', b't', b'u', b's', b'"', b':', b'"', b'O',
    b'k', b'"', b',', b'"', b'p', b'a', b'r', b'a', b'm', b's', b'"', b':', b'{', b'"', b'N', b'u',
    b'm', b'b', b'e', b'r', b'"', b':', b'1', b'2', b'0', b'}', b'}',
];

/// pipe-rpc's `echo(json!({"a":[1,2,3]}))`: `Echo { payload: serde_json::Value }`.
const ECHO_REQUEST: &[u8] =
    b"\x34\x00\x00\x00{\"method\":\"Echo\",\"params\":{\"payload\":{\"a\":[1,2,3]}}}";

/// pipe-rpc's answer to it: `RpcResult::Json`.
const JSON_RESPONSE: &[u8] =
    b"\x2f\x00\x00\x00{\"status\":\"Ok\",\"params\":{\"Json\":{\"a\":[1,2,3]}}}";

/// A raw peer on a fresh name (from `tag`) that hands its one accepted connection to `serve`.
fn raw_server<F, Fut>(tag: &str, serve: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(PipeStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = unique_name(tag);
    let listener = Listener::bind(&name).unwrap();
    let task = tokio::spawn(async move { serve(listener.accept().await.unwrap()).await });
    (name, task)
}

/// Reads one frame and checks its body, byte for byte, against `expected`.
async fn expect_frame(conn: &mut PipeStream, expected: &str) {
    let frame = recv_frame(conn).await.unwrap();
    assert_eq!(String::from_utf8(frame).unwrap(), expected);
}

#[test]
fn golden_constants_are_the_documented_json() {
    assert_eq!(
        &FACTORIAL_REQUEST[4..],
        br#"{"method":"Factorial","params":{"n":5}}"#
    );
    assert_eq!(
        &NUMBER_RESPONSE[4..],
        br#"{"status":"Ok","params":{"Number":120}}"#
    );
    assert_eq!(FACTORIAL_REQUEST.len(), 4 + 0x27);
    assert_eq!(NUMBER_RESPONSE.len(), 4 + 0x27);
    assert_eq!(
        &ECHO_REQUEST[4..],
        br#"{"method":"Echo","params":{"payload":{"a":[1,2,3]}}}"#
    );
    assert_eq!(
        &JSON_RESPONSE[4..],
        br#"{"status":"Ok","params":{"Json":{"a":[1,2,3]}}}"#
    );
    assert_eq!(ECHO_REQUEST.len(), 4 + 0x34);
    assert_eq!(JSON_RESPONSE.len(), 4 + 0x2f);
}

/// Echo as pipe-rpc defines it: any JSON value in, the same value back as `Json` (a string
/// payload too), byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_echoes_any_json_value_as_pipe_rpc_does() {
    watchdog(async {
        let server = RunningServer::start("golden-echo", Server::new(demo::router()));
        let mut conn = pipewright::connect(&server.name).await.unwrap();
        conn.write_all(ECHO_REQUEST).await.unwrap();
        let mut answer = vec![0u8; JSON_RESPONSE.len()];
        conn.read_exact(&mut answer).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(JSON_RESPONSE)
        );
        let cases: [(&[u8], &[u8]); 6] = [
            (
                br#"{"method":"Echo","params":{"payload":"hi"},"id":7}"#,
                br#"{"status":"Ok","params":{"Json":"hi"},"id":7}"#,
            ),
            (
                br#"{"method":"Echo","params":{"payload":42}}"#,
                br#"{"status":"Ok","params":{"Json":42}}"#,
            ),
            (
                br#"{"method":"Echo","params":{"payload":null}}"#,
                br#"{"status":"Ok","params":{"Json":null}}"#,
            ),
            (
                br#"{"method":"Echo","params":{"payload":[true,1.5,"x",{"k":{}}]}}"#,
                br#"{"status":"Ok","params":{"Json":[true,1.5,"x",{"k":{}}]}}"#,
            ),
            // Reverse still answers Text.
            (
                br#"{"method":"Reverse","params":{"text":"abc"}}"#,
                br#"{"status":"Ok","params":{"Text":"cba"}}"#,
            ),
            // No payload at all is still an error naming the field.
            (br#"{"method":"Echo","params":{}}"#, b"payload"),
        ];
        for (request, expected) in cases {
            send_frame(&mut conn, request).await;
            let answer = String::from_utf8(recv_frame(&mut conn).await.unwrap()).unwrap();
            let expected = String::from_utf8_lossy(expected);
            if expected.starts_with('{') {
                assert_eq!(answer, expected);
            } else {
                assert!(
                    answer.starts_with(r#"{"status":"Err""#) && answer.contains(&*expected),
                    "{answer}"
                );
            }
        }
        drop(conn);
        server.shutdown().await;
    })
    .await
}

/// The client sends pipe-rpc's Echo bytes (plus its id) and reads pipe-rpc's `Json` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sends_a_json_echo_and_reads_the_json_answer() {
    watchdog(async {
        let (name, raw_server) = raw_server("golden-echo-cli", |mut conn| async move {
            expect_frame(
                &mut conn,
                r#"{"method":"Echo","params":{"payload":{"a":[1,2,3]}},"id":1}"#,
            )
            .await;
            conn.write_all(JSON_RESPONSE).await.unwrap();
            let _ = recv_frame(&mut conn).await;
        });
        let client = Client::connect(&name).await.unwrap();
        let answer: Response = client
            .request(&Request::Echo {
                payload: serde_json::json!({"a": [1, 2, 3]}),
            })
            .await
            .unwrap();
        assert_eq!(answer, Response::Json(serde_json::json!({"a": [1, 2, 3]})));
        drop(client);
        raw_server.await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_the_golden_request_with_the_golden_response() {
    watchdog(async {
        let server = RunningServer::start("golden-srv", Server::new(demo::router()));
        let mut conn = pipewright::connect(&server.name).await.unwrap();
        for _ in 0..3 {
            conn.write_all(FACTORIAL_REQUEST).await.unwrap();
            let mut answer = vec![0u8; NUMBER_RESPONSE.len()];
            conn.read_exact(&mut answer).await.unwrap();
            assert_eq!(answer, NUMBER_RESPONSE);
        }
        // The same request with an id: the same answer with the id last.
        send_frame(&mut conn, br#"{"method":"Factorial","params":{"n":5},"id":42}"#).await;
        let answer = recv_frame(&mut conn).await.unwrap();
        assert_eq!(answer, br#"{"status":"Ok","params":{"Number":120},"id":42}"#);
        send_frame(&mut conn, br#"{"method":"Factorial","params":{"n":21}}"#).await;
        let answer = recv_frame(&mut conn).await.unwrap();
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            r#"{"status":"Err","params":"21! overflows a 64-bit unsigned integer; 20! is the largest factorial this service computes"}"#
        );
        drop(conn);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sends_the_golden_request_and_reads_the_golden_response() {
    watchdog(async {
        let (name, raw_server) = raw_server("golden-cli", |mut conn| async move {
            // First call: the client's bytes are the golden request plus its id.
            expect_frame(
                &mut conn,
                r#"{"method":"Factorial","params":{"n":5},"id":1}"#,
            )
            .await;
            // Answer the way pipe-rpc's server does: the golden bytes, no id.
            conn.write_all(NUMBER_RESPONSE).await.unwrap();
            // Second call through `call`: same method, same params.
            expect_frame(
                &mut conn,
                r#"{"method":"Factorial","params":{"n":5},"id":2}"#,
            )
            .await;
            send_frame(
                &mut conn,
                br#"{"status":"Ok","params":{"Number":120},"id":2}"#,
            )
            .await;
            expect_frame(
                &mut conn,
                r#"{"method":"Reverse","params":{"text":"abc"},"id":3}"#,
            )
            .await;
            send_frame(
                &mut conn,
                br#"{"status":"Err","params":"no reversing today","id":3}"#,
            )
            .await;
            // Keep the connection open until the client is done reading.
            let _ = recv_frame(&mut conn).await;
        });
        let client = Client::connect(&name).await.unwrap();
        let answer: Response = client.request(&Request::Factorial { n: 5 }).await.unwrap();
        assert_eq!(answer, Response::Number(120));
        let answer: Response = client
            .call("Factorial", &serde_json::json!({"n": 5}))
            .await
            .unwrap();
        assert_eq!(answer, Response::Number(120));
        let err = client
            .request::<_, Response>(&Request::Reverse { text: "abc".into() })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, pipewright_rpc::RpcError::Remote(m) if m == "no reversing today"),
            "{err:?}"
        );
        drop(client);
        raw_server.await.unwrap();
    })
    .await
}
