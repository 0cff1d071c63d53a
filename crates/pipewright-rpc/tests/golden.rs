//! The exact bytes of pipe-rpc's frames, both ways, over real pipes.

mod common;

use common::*;
use pipewright::Listener;
use pipewright_rpc::demo::{self, Request, Response};
use pipewright_rpc::{Client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let name = unique_name("golden-cli");
        let listener = Listener::bind(&name).unwrap();
        let raw_server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            // First call: the client's bytes are the golden request plus its id.
            let first = recv_frame(&mut conn).await.unwrap();
            assert_eq!(
                String::from_utf8(first).unwrap(),
                r#"{"method":"Factorial","params":{"n":5},"id":1}"#
            );
            // Answer the way pipe-rpc's server does: the golden bytes, no id.
            conn.write_all(NUMBER_RESPONSE).await.unwrap();
            // Second call through `call`: same method, same params.
            let second = recv_frame(&mut conn).await.unwrap();
            assert_eq!(
                String::from_utf8(second).unwrap(),
                r#"{"method":"Factorial","params":{"n":5},"id":2}"#
            );
            send_frame(
                &mut conn,
                br#"{"status":"Ok","params":{"Number":120},"id":2}"#,
            )
            .await;
            let third = recv_frame(&mut conn).await.unwrap();
            assert_eq!(
                String::from_utf8(third).unwrap(),
                r#"{"method":"Reverse","params":{"text":"abc"},"id":3}"#
            );
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
