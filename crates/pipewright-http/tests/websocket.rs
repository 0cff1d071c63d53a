//! WebSocket over pipes: upgrade on the server, handshake on the client.

mod common;

use common::{serve_test_service_on_pipe, watchdog};
use futures_util::{SinkExt, StreamExt};
use pipewright::ConnectOptions;
use pipewright_http::ws::{self, CloseCode, Message};
use pipewright_http::PipeUrl;

fn ws_url(name: &str) -> PipeUrl {
    PipeUrl::parse(&format!("npipe:////./pipe/{name}/ws")).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_one_mebibyte_messages_both_ways() {
    watchdog(120, async {
        let name = serve_test_service_on_pipe("ws1m");
        let mut socket = ws::connect(&ws_url(&name), &ConnectOptions::new(), None)
            .await
            .expect("handshake");
        for seed in 0..4u8 {
            let payload = pattern(1024 * 1024, seed);
            socket.send(Message::binary(payload.clone())).await.unwrap();
            match socket.next().await {
                Some(Ok(Message::Binary(got))) => {
                    assert_eq!(got.len(), payload.len());
                    assert!(got[..] == payload[..], "message {seed} came back changed");
                }
                other => panic!("expected a binary echo, got {other:?}"),
            }
        }
        let big_text = "é".repeat(512 * 1024);
        socket.send(Message::text(big_text.clone())).await.unwrap();
        match socket.next().await {
            Some(Ok(Message::Text(got))) => assert_eq!(got.as_str(), big_text),
            other => panic!("expected a text echo, got {other:?}"),
        }
        socket.close(None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong() {
    watchdog(60, async {
        let name = serve_test_service_on_pipe("wsping");
        let mut socket = ws::connect(&ws_url(&name), &ConnectOptions::new(), None)
            .await
            .unwrap();
        socket
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        match socket.next().await {
            Some(Ok(Message::Pong(data))) => assert_eq!(&data[..], b"are you there"),
            other => panic!("expected the pong, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_travel_both_ways() {
    watchdog(60, async {
        let name = serve_test_service_on_pipe("wsclose");
        // The server closes with the code the client asks for.
        for code in [1000u16, 1001, 1008, 4000, 4999] {
            let mut socket = ws::connect(&ws_url(&name), &ConnectOptions::new(), None)
                .await
                .unwrap();
            socket
                .send(Message::text(format!("close:{code}")))
                .await
                .unwrap();
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), code);
                    assert_eq!(frame.reason.as_str(), "asked to close");
                }
                other => panic!("expected a close frame with {code}, got {other:?}"),
            }
            // The close handshake completes and the stream ends.
            assert!(socket.next().await.is_none());
        }
        // The client closes with its own code; the server echoes it back in the close reply.
        let mut socket = ws::connect(&ws_url(&name), &ConnectOptions::new(), None)
            .await
            .unwrap();
        let frame = ws::CloseFrame {
            code: CloseCode::Policy,
            reason: "client policy".into(),
        };
        socket.close(Some(frame)).await.unwrap();
        match socket.next().await {
            Some(Ok(Message::Close(Some(reply)))) => assert_eq!(reply.code, CloseCode::Policy),
            other => panic!("expected the close reply, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_to_a_websocket_path_is_refused_with_a_reason() {
    watchdog(60, async {
        use bytes::Bytes;
        use http_body_util::{BodyExt, Empty};
        let name = serve_test_service_on_pipe("wsplain");
        let client = pipewright_http::client::<Empty<Bytes>>();
        let resp = client.get(ws_url(&name).uri().unwrap()).await.unwrap();
        assert_eq!(resp.status(), hyper::StatusCode::BAD_REQUEST);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("Sec-WebSocket-Key"));
    })
    .await;
}
