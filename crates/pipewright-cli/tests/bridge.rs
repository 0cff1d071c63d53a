//! `pipewright bridge` with real pipes, TCP, child processes and (Linux + Wine) the WSL
//! topology.

mod relay_support;

use std::time::Duration;

use pipewright::PipeMode;
use relay_support::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

fn bridge(args: &[&str]) -> tokio::process::Child {
    let mut cmd = Command::new(binary());
    cmd.arg("bridge").args(args);
    piped(cmd)
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to a bridge's pipe, retrying while it starts.
async fn connect_when_ready(name: &str) -> pipewright::PipeStream {
    let options = pipewright::ConnectOptions::new().timeout(Duration::from_secs(20));
    pipewright::connect_with(name, &options)
        .await
        .expect("the bridge serves the pipe")
}

/// Writes `len` bytes of a pattern and reads the echo back at the same time; returns both
/// digests.
async fn echo_through(conn: pipewright::PipeStream, len: usize) -> (Vec<u8>, Vec<u8>) {
    let (mut r, mut w) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut block = vec![0u8; 1024 * 1024];
        let mut sent = 0usize;
        let mut x = 0x9e3779b9u32;
        while sent < len {
            let n = block.len().min(len - sent);
            for b in &mut block[..n] {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            hash.update(&block[..n]);
            w.write_all(&block[..n]).await.unwrap();
            sent += n;
        }
        if cfg!(unix) {
            w.shutdown().await.unwrap();
        }
        // A Windows byte pipe has no half-close (shutdown would close it): stay open.
        (hash.finalize().to_vec(), w)
    });
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut got = 0usize;
    while got < len {
        let want = buf.len().min(len - got);
        let n = r.read(&mut buf[..want]).await.unwrap();
        assert!(n > 0, "echo ended early after {got} bytes");
        hash.update(&buf[..n]);
        got += n;
    }
    let (sent, _w) = writer.await.unwrap();
    (sent, hash.finalize().to_vec())
}

#[tokio::test]
async fn bad_addresses_are_usage_errors_with_column_and_syntax() {
    watchdog(async {
        for (a, b, needle) in [
            ("npipe:x,mode=stream", "stdio", "column 14"),
            ("pipe:x", "stdio", "unknown address type"),
            ("stdio", "tcp:host", "expected: tcp:HOST:PORT"),
            ("stdio", "tcp-listen:5", "put the listening address first"),
            ("npipe-listen:x", "stdio", "stdio can carry one connection"),
        ] {
            let (code, _, err) = finish(bridge(&[a, b])).await;
            assert_eq!(code, 2, "{a} {b}: {err}");
            assert!(err.contains(needle), "{a} {b}: {err}");
        }
    })
    .await;
}

/// One GiB through a chain of two bridges (pipe -> TCP -> pipe) to an echo server and back,
/// identical SHA-256 both ways.
#[tokio::test]
async fn one_gib_through_a_bridge_chain() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let echo = serve(
            "chain-echo",
            PipeMode::Byte,
            Behaviour::Echo {
                delay: Duration::ZERO,
            },
        );
        let front = unique("chain-front");
        let port = free_port().await;
        let tcp = format!("127.0.0.1:{port}");
        let _b2 = bridge(&[
            &format!("tcp-listen:{tcp}"),
            &format!("npipe:{}", echo.name),
        ]);
        // The front bridge connects to the TCP one per client: start it only once the TCP
        // listener is up, or its first connect may be refused.
        let mut tries = 0;
        while tokio::net::TcpStream::connect(&tcp).await.is_err() {
            tries += 1;
            assert!(tries < 600, "the tcp-listen bridge never listened on {tcp}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _b1 = bridge(&[&format!("npipe-listen:{front}"), &format!("tcp:{tcp}")]);
        let conn = connect_when_ready(&front).await;
        let (sent, got) = echo_through(conn, 1 << 30).await;
        assert_eq!(sent, got);
    })
    .await
    .expect("1 GiB chain hung");
}

/// A listening bridge serves concurrent clients, each with its own child process.
#[tokio::test]
async fn listener_serves_concurrent_clients_with_exec() {
    watchdog(async {
        let echo = serve(
            "exec-echo",
            PipeMode::Byte,
            Behaviour::Echo {
                delay: Duration::ZERO,
            },
        );
        let front = unique("exec-front");
        let exec = format!(
            "exec:\"{}\" bridge stdio npipe:{}",
            binary().display(),
            echo.name
        );
        let _b = bridge(&[&format!("npipe-listen:{front}"), &exec]);
        let first = connect_when_ready(&front).await;
        drop(first);
        let mut tasks = Vec::new();
        for i in 0..4 {
            let front = front.clone();
            tasks.push(tokio::spawn(async move {
                let conn = connect_when_ready(&front).await;
                let (sent, got) = echo_through(conn, (i + 1) * 3_000_000).await;
                assert_eq!(sent, got, "client {i}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
}

/// Message mode end to end: the client's zero-byte message crosses the bridge as a
/// half-close and the server's reply comes back.
#[tokio::test]
async fn half_close_crosses_the_bridge() {
    watchdog(async {
        let mut echo = serve(
            "half-echo",
            PipeMode::Message,
            Behaviour::Echo {
                delay: Duration::ZERO,
            },
        );
        let front = unique("half-front");
        let _b = bridge(&[
            &format!("npipe-listen:{front},mode=message"),
            &format!("npipe:{},mode=message", echo.name),
        ]);
        let options = pipewright::ConnectOptions::new()
            .mode(PipeMode::Message)
            .timeout(Duration::from_secs(20));
        let mut conn = pipewright::connect_with(&front, &options).await.unwrap();
        conn.write_all(b"request").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"requestbye\n");
        assert_eq!(echo.events.recv().await, Some(Event::Eof(7)));
    })
    .await;
}

/// A client killed mid-transfer ends only its own connection: the bridge keeps serving.
#[tokio::test]
async fn killed_client_leaves_the_listener_serving() {
    watchdog(async {
        let echo = serve(
            "kill-echo",
            PipeMode::Byte,
            Behaviour::Echo {
                delay: Duration::ZERO,
            },
        );
        let front = unique("kill-front");
        let mut b = bridge(&[
            &format!("npipe-listen:{front}"),
            &format!("npipe:{}", echo.name),
        ]);
        let _ = connect_when_ready(&front).await;
        let mut victim = relay(&[&front]);
        let mut stdin = victim.stdin.take().unwrap();
        let mut stdout = victim.stdout.take().unwrap();
        let feeder = tokio::spawn(async move {
            let block = vec![3u8; 64 * 1024];
            while stdin.write_all(&block).await.is_ok() {}
        });
        let mut buf = vec![0u8; 1024 * 1024];
        let mut seen = 0;
        while seen < 2 * 1024 * 1024 {
            seen += stdout.read(&mut buf).await.unwrap();
        }
        victim.kill().await.unwrap();
        feeder.abort();
        let conn = connect_when_ready(&front).await;
        let (sent, got) = echo_through(conn, 5_000_000).await;
        assert_eq!(sent, got);
        assert!(b.try_wait().unwrap().is_none(), "the bridge exited");
    })
    .await;
}

/// stdio to a pipe in one shot: the bridge ends when both directions have.
#[tokio::test]
async fn stdio_to_pipe_once() {
    watchdog(async {
        let echo = serve("stdio-echo", PipeMode::Byte, Behaviour::LineThenClose);
        let child = bridge(&["stdio", &format!("NPIPE:{}", echo.name)]);
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"line\n");
        let missing = unique("nobody");
        let (code, _, err) = finish(bridge(&["stdio", &format!("npipe:{missing}")])).await;
        assert_eq!(code, 3, "{err}");
    })
    .await;
}

/// The WSL topology: a Linux client talks through a Unix socket to socat (or a Linux
/// `pipewright bridge`), which starts the Windows relay under Wine per connection; the relay
/// reaches a pipe served by a Windows process. Needs the Windows build; see docs/relay.md.
#[cfg(unix)]
#[tokio::test]
#[ignore = "needs Wine and the Windows build in PIPEWRIGHT_WIN_EXE"]
async fn wsl_topology_through_wine() {
    let Some(exe) = std::env::var_os("PIPEWRIGHT_WIN_EXE") else {
        panic!("set PIPEWRIGHT_WIN_EXE to the Windows pipewright.exe");
    };
    let exe = std::path::PathBuf::from(exe);
    let wine = std::env::var("WINE").unwrap_or_else(|_| "/usr/lib/wine/wine64".into());
    tokio::time::timeout(Duration::from_secs(300), async {
        // A Linux TCP echo server behind a Windows pipe server process.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        let pipe = unique("wsl");
        let mut server = Command::new(&wine);
        server
            .arg(&exe)
            .args([
                "bridge",
                &format!("npipe-listen:{pipe},mode=message"),
                &format!("tcp:127.0.0.1:{port}"),
            ])
            .kill_on_drop(true);
        let _server = server.spawn().unwrap();
        let dir = std::env::temp_dir().join(unique("wsl-sock"));
        std::fs::create_dir_all(&dir).unwrap();
        let relay_cmd = format!(
            "{wine} {} relay -p -timeout 60s -ei -s //./pipe/{pipe}",
            exe.display()
        );
        for front in ["socat", "bridge"] {
            let sock = dir.join(format!("{front}.sock"));
            let mut listener = if front == "socat" {
                let mut c = Command::new("socat");
                c.arg(format!("UNIX-LISTEN:{},fork", sock.display()))
                    .arg(format!("EXEC:{relay_cmd},nofork"));
                c
            } else {
                let mut c = Command::new(binary());
                c.args([
                    "bridge",
                    &format!("unix-listen:{}", sock.display()),
                    &format!("exec:{relay_cmd}"),
                ]);
                c
            };
            let _front = listener.kill_on_drop(true).spawn().unwrap();
            let mut tries = 0;
            let mut conn = loop {
                match tokio::net::UnixStream::connect(&sock).await {
                    Ok(c) => break c,
                    Err(_) if tries < 200 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("{front}: {e}"),
                }
            };
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            let (mut r, mut w) = conn.split();
            let send = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let ((), n) = tokio::join!(send, recv);
            n.unwrap();
            assert_eq!(Sha256::digest(&got), Sha256::digest(&data), "{front}");
        }
    })
    .await
    .expect("WSL topology hung");
}

/// `tcp:...,poll` waits for a server that starts late; without `poll` a refused connect is
/// "not found" (3), and `poll` that never connects ends with "timed out" (6).
#[tokio::test]
async fn tcp_poll_waits_for_a_late_listener() {
    watchdog(async {
        let port = free_port().await;
        let target = format!("tcp:127.0.0.1:{port},poll,timeout=20s");
        let mut child = bridge(&["stdio", &target]);
        feed(&mut child, b"ping\n").await;
        // Let the bridge meet a refused connection first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping\n");
        conn.write_all(b"pong\n").await.unwrap();
        drop(conn);
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"pong\n");

        let unused = free_port().await;
        let (code, _, err) = finish(bridge(&["stdio", &format!("tcp:127.0.0.1:{unused}")])).await;
        assert_eq!(code, 3, "{err}");
        assert!(err.contains(&format!("127.0.0.1:{unused}")), "{err}");
        let target = format!("tcp:127.0.0.1:{unused},poll,timeout=300ms");
        let (code, _, err) = finish(bridge(&["stdio", &target])).await;
        assert_eq!(code, 6, "{err}");
        assert!(err.contains("timeout="), "{err}");
    })
    .await;
}
