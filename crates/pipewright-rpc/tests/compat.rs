//! A raw client that speaks only pipe-rpc's format (no ids) gets its answers in order.

mod common;

use common::*;
use pipewright_rpc::Server;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_at_a_time_like_pipe_rpc_client() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "compat-seq",
                Server::new(test_router()).connection_threads(threads),
            );
            let mut conn = pipewright::connect(&server.name).await.unwrap();
            let cases = [
                (
                    json!({"method":"Factorial","params":{"n":10}}),
                    json!({"status":"Ok","params":{"Number":3628800}}),
                ),
                (
                    json!({"method":"Reverse","params":{"text":"héllo"}}),
                    json!({"status":"Ok","params":{"Text":"olléh"}}),
                ),
                (
                    json!({"method":"Echo","params":{"payload":"ping"}}),
                    json!({"status":"Ok","params":{"Json":"ping"}}),
                ),
                (
                    json!({"method":"Echo","params":{"payload":{"a":[1,2,3]}}}),
                    json!({"status":"Ok","params":{"Json":{"a":[1,2,3]}}}),
                ),
                (
                    json!({"method":"Factorial","params":{"n":0}}),
                    json!({"status":"Ok","params":{"Number":1}}),
                ),
            ];
            for (request, expected) in cases {
                let answer = exchange(&mut conn, &serde_json::to_vec(&request).unwrap()).await;
                assert_eq!(answer, expected, "for {request}");
                assert!(
                    answer.get("id").is_none(),
                    "an id-less request gets an id-less answer"
                );
            }
            drop(conn);
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_without_ids_are_answered_in_order() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "compat-pipe",
                Server::new(test_router()).connection_threads(threads),
            );
            let mut conn = pipewright::connect(&server.name).await.unwrap();
            // The slowest first: answers must still come in the order asked.
            let delays = [120u64, 0, 60, 5, 30, 0, 90, 1];
            let mut batch = Vec::new();
            for (i, ms) in delays.iter().enumerate() {
                let body =
                    serde_json::to_vec(&json!({"method":"Sleep","params":{"ms":ms,"tag":i}}))
                        .unwrap();
                batch.extend_from_slice(&(body.len() as u32).to_le_bytes());
                batch.extend_from_slice(&body);
            }
            // An error in the middle keeps its place too.
            let bad = br#"{"method":"Nope","params":{}}"#;
            batch.extend_from_slice(&(bad.len() as u32).to_le_bytes());
            batch.extend_from_slice(bad);
            use tokio::io::AsyncWriteExt;
            conn.write_all(&batch).await.unwrap();
            for i in 0..delays.len() {
                let answer: serde_json::Value =
                    serde_json::from_slice(&recv_frame(&mut conn).await.unwrap()).unwrap();
                assert_eq!(answer, json!({"status":"Ok","params":i}));
            }
            let answer: serde_json::Value =
                serde_json::from_slice(&recv_frame(&mut conn).await.unwrap()).unwrap();
            assert_eq!(answer["status"], "Err");
            assert!(
                answer["params"]
                    .as_str()
                    .unwrap()
                    .contains(r#"unknown method "Nope""#),
                "{answer}"
            );
            drop(conn);
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_ids_may_overtake_slower_ones() {
    watchdog(async {
        let server = RunningServer::start("compat-ids", Server::new(test_router()));
        let mut conn = pipewright::connect(&server.name).await.unwrap();
        // "Wait" cannot answer before an "Open" has run, and the "Open" is sent only after
        // the first answer arrived: so the later request must overtake it.
        send_frame(&mut conn, br#"{"method":"Wait","id":1}"#).await;
        send_frame(
            &mut conn,
            br#"{"method":"Echo","params":{"payload":"fast"},"id":2}"#,
        )
        .await;
        let first: serde_json::Value =
            serde_json::from_slice(&recv_frame(&mut conn).await.unwrap()).unwrap();
        assert_eq!(
            first,
            json!({"status":"Ok","params":{"Json":"fast"},"id":2})
        );
        send_frame(&mut conn, br#"{"method":"Open","id":3}"#).await;
        let mut rest = Vec::new();
        for _ in 0..2 {
            let answer: serde_json::Value =
                serde_json::from_slice(&recv_frame(&mut conn).await.unwrap()).unwrap();
            rest.push(answer);
        }
        rest.sort_by_key(|a| a["id"].as_u64());
        assert_eq!(
            rest,
            [
                json!({"status":"Ok","params":"waited","id":1}),
                json!({"status":"Ok","params":"opened","id":3})
            ]
        );
        drop(conn);
        server.shutdown().await;
    })
    .await
}
