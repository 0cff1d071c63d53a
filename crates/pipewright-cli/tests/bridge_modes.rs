//! `npipe:` without `mode=` opens the pipe in its own type (`mode=auto`, the default), so a
//! message-mode server gets the bridge's half-close as a zero-byte message and its reply
//! comes back.

mod relay_support;

use pipewright::PipeMode;
use relay_support::*;
use tokio::process::Command;

fn bridge(args: &[&str]) -> tokio::process::Child {
    let mut cmd = Command::new(binary());
    cmd.arg("bridge").args(args);
    piped(cmd)
}

/// The pipe type `mode=auto` learns: a message pipe on Windows; on Unix a socket has no
/// type (message mode is pipewright's framing and must be asked for), so byte.
fn server_mode() -> PipeMode {
    if cfg!(windows) {
        PipeMode::Message
    } else {
        PipeMode::Byte
    }
}

/// stdio to a message-mode server, no `mode=`: at stdin's end the bridge half-closes in the
/// pipe's terms (a zero-byte message), the server answers and closes, and the bridge writes
/// the whole reply and exits 0 ("done: both directions ended", docs/relay.md). Before
/// `mode=auto` the bridge opened the pipe in byte mode, never half-closed, and lost the reply.
#[tokio::test]
async fn stdio_to_a_message_pipe_without_mode_gets_the_reply() {
    watchdog(async {
        for address in ["npipe:{}", "npipe:{},mode=auto", "NPIPE:{},MODE=Auto"] {
            let mut echo = serve(
                "auto-echo",
                server_mode(),
                Behaviour::Echo {
                    delay: std::time::Duration::ZERO,
                },
            );
            let address = address.replace("{}", &echo.name);
            let mut child = bridge(&["stdio", &address]);
            feed(&mut child, b"request").await;
            let (code, out, err) = finish(child).await;
            assert_eq!(code, 0, "{address}: {err}");
            assert_eq!(
                String::from_utf8_lossy(&out),
                "requestbye\n",
                "{address}: {err}"
            );
            assert_eq!(echo.events.recv().await, Some(Event::Eof(7)), "{address}");
        }
    })
    .await;
}

/// A listening bridge in front of a message-mode server, the second address without
/// `mode=`: the client's zero-byte message crosses both pipes and the reply comes back.
#[tokio::test]
async fn listening_bridge_to_a_message_pipe_without_mode() {
    watchdog(async {
        let mut echo = serve(
            "auto-back",
            server_mode(),
            Behaviour::Echo {
                delay: std::time::Duration::ZERO,
            },
        );
        let front = unique("auto-front");
        let _b = bridge(&[
            &format!("npipe-listen:{front},mode=message"),
            &format!("npipe:{}", echo.name),
        ]);
        let options = pipewright::ConnectOptions::new()
            .mode(PipeMode::Message)
            .timeout(std::time::Duration::from_secs(20));
        let mut conn = pipewright::connect_with(&front, &options).await.unwrap();
        conn.send_message(b"request").await.unwrap();
        conn.close_write().await.unwrap();
        let mut reply = Vec::new();
        while let Some(message) = conn.recv_message().await.unwrap() {
            reply.extend_from_slice(&message);
        }
        assert_eq!(String::from_utf8_lossy(&reply), "requestbye\n");
        assert_eq!(echo.events.recv().await, Some(Event::Eof(7)));
    })
    .await;
}

/// A byte pipe stays a byte pipe under `mode=auto`: the data crosses and the bridge ends
/// when the server closes.
#[tokio::test]
async fn auto_keeps_a_byte_pipe_in_byte_mode() {
    watchdog(async {
        let echo = serve("auto-byte", PipeMode::Byte, Behaviour::LineThenClose);
        let child = bridge(&["stdio", &format!("npipe:{}", echo.name)]);
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"line\n");
    })
    .await;
}
