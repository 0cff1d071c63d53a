//! `pipewright relay` (and the binary named npiperelay) against real pipe servers, for the
//! flag combinations and end-of-stream cases of npiperelay's recipes.

mod relay_support;

use std::time::{Duration, Instant};

use pipewright::{ListenerOptions, PipeMode};
use relay_support::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODES: [PipeMode; 2] = [PipeMode::Byte, PipeMode::Message];

fn args<'a>(mode: PipeMode, flags: &[&'a str], name: &'a str) -> Vec<&'a str> {
    let mut v = mode_flags(mode);
    v.extend_from_slice(flags);
    v.push(name);
    v
}

/// T3 and the Docker recipe's `-s`: on a message pipe the zero-byte message arrives, the
/// server answers and closes, the relay ends with 0. On Unix `-s` is shutdown(write).
#[tokio::test]
async fn s_sends_end_of_stream_and_the_reply_arrives() {
    watchdog(async {
        let mut server = serve(
            "s",
            PipeMode::Message,
            Behaviour::Echo {
                delay: Duration::ZERO,
            },
        );
        let mut child = relay(&args(PipeMode::Message, &["-s"], &server.name));
        feed(&mut child, b"hello\n").await;
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"hello\nbye\n");
        assert_eq!(server.events.recv().await, Some(Event::Eof(6)));
    })
    .await;
}

/// The ssh-agent recipe `-ei -s`: the zero-byte message is sent even with -ei, and a reply
/// still on its way is delivered (npiperelay dropped it and never sent the message).
#[tokio::test]
async fn ei_s_sends_the_zero_message_and_keeps_the_reply_in_flight() {
    watchdog(async {
        for mode in MODES {
            let delay = Duration::from_millis(300);
            let mut server = serve("eis", mode, Behaviour::Echo { delay });
            let mut child = relay(&args(mode, &["-ei", "-s"], &server.name));
            feed(&mut child, b"hello\n").await;
            let (code, out, err) = finish(child).await;
            assert_eq!(code, 0, "{mode:?}: {err}");
            assert!(out.starts_with(b"hello\n"), "{mode:?}: reply lost: {out:?}");
            if mode == PipeMode::Message || cfg!(unix) {
                assert_eq!(out, b"hello\nbye\n", "{mode:?}");
            }
            // One connection only, also on a Windows byte pipe (the relay learns the pipe's
            // type on the connection it uses): its first end of stream carries the 6 bytes.
            assert_eq!(server.events.recv().await, Some(Event::Eof(6)), "{mode:?}");
        }
    })
    .await;
}

/// T5: `-ei` alone on a byte pipe whose server never closes: the delayed echo still arrives,
/// then the relay exits after the linger.
#[tokio::test]
async fn ei_alone_delivers_a_delayed_reply_then_exits() {
    watchdog(async {
        let server = serve(
            "ei",
            PipeMode::Byte,
            Behaviour::Echo {
                delay: Duration::from_millis(400),
            },
        );
        let mut child = relay(&["-ei", "-linger", "2s", &server.name]);
        feed(&mut child, b"hello\n").await;
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with(b"hello\n"), "reply lost: {out:?}");
    })
    .await;
}

/// T6/T7/T6m: the server sends a line and closes while stdin stays open; with or without
/// -ep the relay ends promptly with 0 and the line.
#[tokio::test]
async fn server_close_ends_the_relay_while_stdin_stays_open() {
    watchdog(async {
        for mode in MODES {
            for flags in [&[][..], &["-ep"][..]] {
                let server = serve("close", mode, Behaviour::LineThenClose);
                let child = relay(&args(mode, flags, &server.name));
                // stdin stays open: the relay must not wait for it.
                let started = Instant::now();
                let (code, out, err) = finish(child).await;
                assert_eq!(code, 0, "{mode:?} {flags:?}: {err}");
                assert_eq!(out, b"line\n", "{mode:?} {flags:?}");
                assert!(started.elapsed() < Duration::from_secs(30));
            }
        }
    })
    .await;
}

/// `-ep`: the server's half-close (zero-byte message) ends the relay at once, stdin open.
#[tokio::test]
async fn ep_exits_at_the_pipes_end_of_stream() {
    watchdog(async {
        let server = serve("ep", PipeMode::Message, Behaviour::LineThenHalfClose);
        let child = relay(&args(PipeMode::Message, &["-ep", "-s"], &server.name));
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"line\n");
    })
    .await;
}

/// Without -ep, after the server's half-close the relay still delivers stdin to it.
#[tokio::test]
async fn after_a_half_close_stdin_still_reaches_the_server() {
    watchdog(async {
        let mut server = serve("half", PipeMode::Message, Behaviour::LineThenHalfClose);
        let mut child = relay(&args(
            PipeMode::Message,
            &["-s", "-linger", "20s"],
            &server.name,
        ));
        let mut stdout = child.stdout.take().unwrap();
        let mut line = [0u8; 5];
        stdout.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"line\n");
        feed(&mut child, b"after the half-close").await;
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.unwrap();
        let (code, _, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(server.events.recv().await, Some(Event::Eof(20)));
    })
    .await;
}

/// 20 MB each way through `-s` arrives intact, then the server sees end of stream.
#[tokio::test]
async fn large_transfer_is_intact() {
    watchdog(async {
        for mode in MODES {
            let mut server = serve(
                "big",
                mode,
                Behaviour::Echo {
                    delay: Duration::ZERO,
                },
            );
            let mut child = relay(&args(mode, &["-s", "-ei", "-linger", "10s"], &server.name));
            let data: Vec<u8> = (0..20_000_000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
                .collect();
            let want = Sha256::digest(&data);
            let mut stdin = child.stdin.take().unwrap();
            let writer = tokio::spawn(async move {
                stdin.write_all(&data).await.unwrap();
            });
            let mut stdout = child.stdout.take().unwrap();
            let mut got = vec![0u8; 20_000_000];
            stdout.read_exact(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(Sha256::digest(&got), want, "{mode:?}");
            let (code, _, err) = finish(child).await;
            assert_eq!(code, 0, "{mode:?}: {err}");
            if mode == PipeMode::Message || cfg!(unix) {
                assert_eq!(server.events.recv().await, Some(Event::Eof(20_000_000)));
            }
        }
    })
    .await;
}

/// A missing pipe: exit 3 at once without -p; with -p the relay waits until it appears (it
/// appears only after the relay's first attempt failed, so it is reached by a retry);
/// -p with a short -timeout gives up with 3.
#[tokio::test]
async fn missing_pipes_and_p() {
    watchdog(async {
        let name = unique("missing");
        let (code, _, err) = finish(relay(&[&name])).await;
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("no server"), "{err}");

        let (code, _, err) = finish(relay(&["-p", "-timeout", "300ms", &name])).await;
        assert_eq!(code, 3, "{err}");

        let mut child = logged(&["relay", "-p", "-s", "-ei", &name]);
        let mut stderr = StderrWatch::new(&mut child);
        stderr.wait_for("retrying").await;
        let _server = serve_named(&name, ListenerOptions::new(), Behaviour::LineThenClose);
        feed(&mut child, b"").await;
        let (code, out, _) = finish(child).await;
        let err = stderr.rest().await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"line\n");
    })
    .await;
}

/// A busy pipe (every instance taken): exit 4 without -p after a short wait; with -p the
/// relay waits until an instance frees up (after its first attempt found the pipe busy).
/// Windows only: a Unix socket is never busy.
#[cfg(windows)]
#[tokio::test]
async fn busy_pipes_and_p() {
    watchdog(async {
        let name = unique("busy");
        let options = ListenerOptions::new().backlog(1).max_instances(1);
        let listener = pipewright::Listener::bind_with(&name, &options).unwrap();
        let holder = pipewright::connect(&name).await.unwrap();
        let held = listener.accept().await.unwrap();
        let (code, _, err) = finish(relay(&[&name])).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("busy"), "{err}");
        let mut child = logged(&["relay", "-p", "-ei", &name]);
        let mut stderr = StderrWatch::new(&mut child);
        stderr.wait_for("retrying").await;
        // Freeing the instance lets the listener create a new one.
        drop(held);
        drop(holder);
        let mut conn = listener.accept().await.unwrap();
        conn.write_all(b"hi\n").await.unwrap();
        feed(&mut child, b"").await;
        let (code, out, _) = finish(child).await;
        let err = stderr.rest().await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"hi\n");
    })
    .await;
}

/// The three recipes work with the binary renamed to npiperelay, flags exactly as copied.
#[tokio::test]
async fn renamed_binary_runs_the_recipes() {
    watchdog(async {
        let exe = npiperelay();
        // ssh-agent: -ei -s on a byte pipe.
        let ssh = serve(
            "ssh",
            PipeMode::Byte,
            Behaviour::Echo {
                delay: Duration::from_millis(100),
            },
        );
        let mut cmd = tokio::process::Command::new(&exe);
        let path = format!("//./pipe/{}", ssh.name);
        cmd.args(["-ei", "-s", &path]);
        let mut child = piped(cmd);
        feed(&mut child, b"\x00\x00\x00\x01\x0b").await;
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with(b"\x00\x00\x00\x01\x0b"), "{out:?}");

        // Docker: -ep -s on a message pipe.
        let mut docker = serve(
            "docker",
            PipeMode::Message,
            Behaviour::Echo {
                delay: Duration::ZERO,
            },
        );
        let mut cmd = tokio::process::Command::new(&exe);
        let path = format!(r"\\.\pipe\{}", docker.name);
        let mut flags = mode_flags(PipeMode::Message);
        flags.extend(["-ep", "-s", &path]);
        cmd.args(&flags);
        let mut child = piped(cmd);
        feed(&mut child, b"GET /_ping HTTP/1.0\r\n\r\n").await;
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"GET /_ping HTTP/1.0\r\n\r\nbye\n");
        assert!(matches!(docker.events.recv().await, Some(Event::Eof(_))));

        // -h prints npiperelay's flags; an unknown flag is a usage error.
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("-h");
        let (code, out, _) = finish(piped(cmd)).await;
        assert_eq!(code, 0);
        assert!(String::from_utf8_lossy(&out).contains("-ep"));
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["-bogus", "x"]);
        let (code, _, err) = finish(piped(cmd)).await;
        assert_eq!(code, 2);
        assert!(
            err.contains("flag provided but not defined: -bogus"),
            "{err}"
        );
    })
    .await;
}

/// Usage errors exit 2 with a message naming the problem.
#[tokio::test]
async fn usage_errors() {
    watchdog(async {
        for (argv, needle) in [
            (&[][..], "no pipe given"),
            (&["x", "-s"][..], "flags go before the pipe"),
            (&["-timeout"][..], "flag needs an argument"),
            (&["-linger", "5", "x"][..], "not a duration"),
        ] {
            let (code, _, err) = finish(relay(argv)).await;
            assert_eq!(code, 2, "{argv:?}: {err}");
            assert!(err.contains(needle), "{argv:?}: {err}");
        }
    })
    .await;
}

/// `-bg` and `-v` are accepted; -v logs progress on stderr.
#[tokio::test]
async fn bg_and_v() {
    watchdog(async {
        let server = serve("bg", PipeMode::Byte, Behaviour::LineThenClose);
        let child = relay(&["-bg", "-v", &server.name]);
        let (code, out, err) = finish(child).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, b"line\n");
        assert!(err.contains("connect"), "{err}");
    })
    .await;
}

/// The server goes away mid-transfer while stdin streams: the relay ends with 7 (the peer
/// went away before taking all data), and the listener keeps serving the next relay. This
/// holds on message pipes on every platform and on Unix sockets in both modes. A Windows byte
/// pipe has one kind of end only (docs/relay.md): see
/// `a_byte_pipe_server_closing_mid_transfer_ends_the_relay`.
#[tokio::test]
async fn server_dying_mid_transfer_is_a_peer_error() {
    let modes: &[PipeMode] = if cfg!(windows) {
        &[PipeMode::Message]
    } else {
        &MODES
    };
    watchdog(async {
        for &mode in modes {
            let code = server_closes_mid_transfer(mode).await;
            assert_eq!(code, 7, "{mode:?}");
        }
    })
    .await;
}

/// On a Windows byte pipe a server that closes while stdin streams to it ends the relay with
/// 0 when the close is seen first (as npiperelay) and with 7 when a write is refused first
/// (docs/relay.md): which comes first depends on the pipe's buffering. Either way it ends,
/// and the listener keeps serving the next relay.
#[cfg(windows)]
#[tokio::test]
async fn a_byte_pipe_server_closing_mid_transfer_ends_the_relay() {
    watchdog(async {
        let code = server_closes_mid_transfer(PipeMode::Byte).await;
        assert!(code == 0 || code == 7, "{code}");
    })
    .await;
}

/// The server drops its connection after 4 MiB of a stdin that never ends; returns the
/// relay's exit code (after checking that the next relay is served).
async fn server_closes_mid_transfer(mode: PipeMode) -> i32 {
    let name = unique("dies");
    let options = ListenerOptions::new().mode(mode);
    let listener = pipewright::Listener::bind_with(&name, &options).unwrap();
    let mut child = relay(&args(mode, &[], &name));
    let mut conn = listener.accept().await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let block = vec![1u8; 64 * 1024];
        while stdin.write_all(&block).await.is_ok() {}
    });
    let mut buf = vec![0u8; 1024 * 1024];
    let mut seen = 0;
    while seen < 4 * 1024 * 1024 {
        seen += conn.read(&mut buf).await.unwrap();
    }
    drop(conn);
    let (code, _, err) = finish(child).await;
    eprintln!("{mode:?}: the relay ended with {code}: {err}");
    writer.abort();

    let l = std::sync::Arc::new(listener);
    let server = tokio::spawn({
        let l = l.clone();
        async move {
            let mut c = l.accept().await.unwrap();
            c.write_all(b"next\n").await.unwrap();
            c.shutdown().await.unwrap();
        }
    });
    let (next, out, err) = finish(relay(&args(mode, &[], &name))).await;
    assert_eq!(next, 0, "{mode:?}: {err}");
    assert_eq!(out, b"next\n", "{mode:?}");
    server.await.unwrap();
    code
}

/// Turns this test binary into a child process serving a message pipe (see `child_entry`).
const ROLE_ENV: &str = "PIPEWRIGHT_RELAY_TEST_SERVE";
/// Set (to anything) in the child: it streams instead of sending one line.
const STREAM_ENV: &str = "PIPEWRIGHT_RELAY_TEST_STREAM";

/// Byte `i` of what the streaming child sends.
fn stream_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The child's role: serve one message-pipe connection, send a line (or, with `STREAM_ENV`,
/// messages of 64 KiB without end, bytes numbered by [`stream_byte`]), then wait to be
/// killed. Does nothing in the parent.
#[test]
fn child_entry() {
    let Ok(name) = std::env::var(ROLE_ENV) else {
        return;
    };
    let stream = std::env::var_os(STREAM_ENV).is_some();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let options = ListenerOptions::new().mode(PipeMode::Message);
        let listener = pipewright::Listener::bind_with(&name, &options).unwrap();
        let mut conn = listener.accept().await.unwrap();
        if stream {
            let mut sent = 0;
            loop {
                let block: Vec<u8> = (sent..sent + 64 * 1024).map(stream_byte).collect();
                if conn.send_message(&block).await.is_err() {
                    break;
                }
                sent += block.len();
            }
        } else {
            conn.send_message(b"line\n").await.unwrap();
        }
        tokio::time::sleep(WATCHDOG).await;
        drop(conn);
    });
    std::process::exit(0);
}

/// Starts this test binary as a server process playing `child_entry` on `name`.
fn server_process(name: &str, stream: bool) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if stream {
        cmd.env(STREAM_ENV, "1");
    }
    cmd.spawn().expect("start the server process")
}

/// Kills a server process and waits until it is gone.
async fn kill(mut server: std::process::Child) {
    server.kill().unwrap();
    tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
}

/// The relay's flags for a message pipe: explicit `-mode message`, and the default (`auto`
/// finds the pipe's type on Windows; on Unix message framing must be asked for).
fn message_flag_sets() -> Vec<Vec<&'static str>> {
    let mut sets = vec![vec!["-mode", "message"]];
    if cfg!(windows) {
        sets.push(vec![]);
    }
    sets
}

/// A message-pipe server whose process is killed (no end-of-stream message): the relay
/// ends with 7, saying the server went away without closing, on every platform.
#[tokio::test]
async fn a_killed_message_server_is_a_peer_error() {
    watchdog(async {
        for flags in message_flag_sets() {
            let name = unique("killed");
            let server = server_process(&name, false);
            let mut relay_args = vec!["-p"];
            relay_args.extend(flags.iter().copied());
            relay_args.push(&name);
            // stdin stays open: only the server's death can end the relay.
            let mut child = relay(&relay_args);
            let mut stdout = child.stdout.take().unwrap();
            let mut line = [0u8; 5];
            stdout.read_exact(&mut line).await.unwrap();
            assert_eq!(&line, b"line\n", "{flags:?}");
            kill(server).await;
            let (code, _, err) = finish(child).await;
            assert_eq!(code, 7, "{flags:?}: {err}");
            assert!(err.contains("without closing"), "{flags:?}: {err}");
        }
    })
    .await;
}

/// A message-pipe server process killed while the relay streams its data to stdout (stdin
/// open): what reached stdout is the server's data in order, and the relay ends with 7,
/// saying the server went away without closing, on every platform.
#[tokio::test]
async fn a_server_process_killed_while_streaming_to_stdout_is_a_peer_error() {
    watchdog(async {
        for flags in message_flag_sets() {
            let name = unique("killed-streaming");
            let server = server_process(&name, true);
            let mut relay_args = vec!["-p"];
            relay_args.extend(flags.iter().copied());
            relay_args.push(&name);
            let mut child = relay(&relay_args);
            let mut stdout = child.stdout.take().unwrap();
            // Read until 1 MiB has arrived, kill the server, then read what is left.
            let mut got = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            while got.len() < 1024 * 1024 {
                let n = stdout.read(&mut buf).await.unwrap();
                assert!(n > 0, "{flags:?}: stdout ended before the kill");
                got.extend_from_slice(&buf[..n]);
            }
            kill(server).await;
            stdout.read_to_end(&mut got).await.unwrap();
            let (code, _, err) = finish(child).await;
            assert_eq!(code, 7, "{flags:?}: {err}");
            assert!(err.contains("without closing"), "{flags:?}: {err}");
            let first_wrong = got
                .iter()
                .enumerate()
                .position(|(i, &b)| b != stream_byte(i));
            assert_eq!(first_wrong, None, "{flags:?}: {} bytes", got.len());
        }
    })
    .await;
}

/// A message-pipe server that ends orderly (drops its stream, or close_write and stays)
/// while stdin stays open: the relay delivers the line and ends with 0 on every platform.
#[tokio::test]
async fn a_message_server_ending_orderly_gives_0() {
    watchdog(async {
        for flags in message_flag_sets() {
            for how in ["drop", "close_write"] {
                let name = unique("orderly");
                let options = ListenerOptions::new().mode(PipeMode::Message);
                let listener = pipewright::Listener::bind_with(&name, &options).unwrap();
                let mut relay_args = flags.clone();
                relay_args.push(&name);
                let child = relay(&relay_args);
                let mut conn = listener.accept().await.unwrap();
                conn.send_message(b"line\n").await.unwrap();
                let kept = match how {
                    "drop" => {
                        drop(conn);
                        None
                    }
                    _ => {
                        conn.close_write().await.unwrap();
                        Some(conn)
                    }
                };
                let (code, out, err) = finish(child).await;
                assert_eq!(code, 0, "{flags:?} {how}: {err}");
                assert_eq!(out, b"line\n", "{flags:?} {how}");
                drop(kept);
            }
        }
    })
    .await;
}

/// The client goes away (stdout closed) while the server streams: the relay ends with 7.
#[tokio::test]
async fn client_dying_mid_transfer_is_a_peer_error() {
    watchdog(async {
        let server = serve("client-dies", PipeMode::Byte, Behaviour::Stream(1 << 40));
        let mut child = relay(&[&server.name]);
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut seen = 0;
        while seen < 4 * 1024 * 1024 {
            seen += stdout.read(&mut buf).await.unwrap();
        }
        drop(stdout);
        let (code, _, err) = finish(child).await;
        assert_eq!(code, 7, "{err}");
    })
    .await;
}

mod assuan {
    use super::*;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// A loopback Assuan agent: checks the nonce, greets, echoes lines, answers the client's
    /// end of stream with a last line and closes.
    async fn agent(nonce: [u8; 16]) -> (u16, mpsc::UnboundedReceiver<&'static str>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = [0u8; 16];
                    if s.read_exact(&mut got).await.is_err() || got != nonce {
                        let _ = tx.send("bad nonce");
                        return;
                    }
                    let _ = tx.send("nonce ok");
                    s.write_all(b"OK Pleased to meet you\n").await.unwrap();
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                        }
                    }
                    let _ = tx.send("client eof");
                    let _ = s.write_all(b"OK closing connection\n").await;
                });
            }
        });
        (port, rx)
    }

    fn socket_file(content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(unique("gnupg"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("S.gpg-agent");
        std::fs::write(&path, content).unwrap();
        path
    }

    fn file_for(port: u16, nonce: &[u8; 16], crlf: bool) -> std::path::PathBuf {
        let mut content = format!("{port}{}", if crlf { "\r\n" } else { "\n" }).into_bytes();
        content.extend_from_slice(nonce);
        socket_file(&content)
    }

    /// The gpg-agent recipe `-ei -ep -s -a FILE`: nonce first, requests and answers flow,
    /// the half-close reaches the agent, exit 0.
    #[tokio::test]
    async fn recipe_talks_to_the_agent() {
        watchdog(async {
            for crlf in [false, true] {
                let nonce = *b"0123456789\nabcd\r";
                let (port, mut events) = agent(nonce).await;
                let file = file_for(port, &nonce, crlf);
                let mut child = relay(&["-ei", "-ep", "-s", "-a", file.to_str().unwrap()]);
                feed(&mut child, b"GETINFO version\n").await;
                let (code, out, err) = finish(child).await;
                assert_eq!(code, 0, "{err}");
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    "OK Pleased to meet you\nGETINFO version\nOK closing connection\n"
                );
                assert_eq!(events.recv().await, Some("nonce ok"));
                assert_eq!(events.recv().await, Some("client eof"));
            }
        })
        .await;
    }

    /// A wrong nonce: the agent hangs up before greeting; the relay ends (no spin) with
    /// nothing relayed, even without -ep and with stdin open.
    #[tokio::test]
    async fn wrong_nonce_ends_the_relay() {
        watchdog(async {
            let (port, mut events) = agent(*b"the-right-nonce!").await;
            let file = file_for(port, b"the-wrong-nonce!", false);
            let child = relay(&["-a", file.to_str().unwrap()]);
            let (code, out, err) = finish(child).await;
            assert_eq!(code, 0, "{err}");
            assert!(out.is_empty(), "{out:?}");
            assert_eq!(events.recv().await, Some("bad nonce"));
        })
        .await;
    }

    /// Files that are not Assuan socket files get an error naming the file and the format.
    #[tokio::test]
    async fn bad_files_are_named() {
        watchdog(async {
            for content in [
                &b"!<socket >60123 s 1-2-3-4"[..],
                b"notaport\n0123456789abcdef",
                b"1234\nshort",
            ] {
                let file = socket_file(content);
                let (code, _, err) = finish(relay(&["-a", file.to_str().unwrap()])).await;
                assert_eq!(code, 7, "{err}");
                assert!(err.contains(file.to_str().unwrap()), "{err}");
                assert!(err.contains("port number on its first line"), "{err}");
            }
            let missing = std::env::temp_dir()
                .join(unique("nothing"))
                .join("S.gpg-agent");
            let (code, _, err) = finish(relay(&["-a", missing.to_str().unwrap()])).await;
            assert_eq!(code, 3, "{err}");
            assert!(err.contains("gpg-agent"), "{err}");
        })
        .await;
    }

    /// The agent is gone (nothing listens on the port): exit 3 naming the file and port;
    /// with -p the relay waits for the agent to come back.
    #[tokio::test]
    async fn agent_gone() {
        watchdog(async {
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                l.local_addr().unwrap().port()
            };
            let nonce = *b"aaaaaaaaaaaaaaaa";
            let file = file_for(port, &nonce, false);
            let (code, _, err) = finish(relay(&["-a", file.to_str().unwrap()])).await;
            assert_eq!(code, 3, "{err}");
            assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
            assert!(err.contains(file.to_str().unwrap()), "{err}");

            let (code, _, err) = finish(relay(&[
                "-p",
                "-timeout",
                "300ms",
                "-a",
                file.to_str().unwrap(),
            ]))
            .await;
            assert_eq!(code, 3, "{err}");

            let mut child = logged(&[
                "relay",
                "-p",
                "-ei",
                "-ep",
                "-s",
                "-a",
                file.to_str().unwrap(),
            ]);
            let mut stderr = StderrWatch::new(&mut child);
            // The first attempt found no agent: only now does it come back.
            stderr.wait_for("retrying").await;
            let (new_port, mut events) = agent(nonce).await;
            // A restarted agent writes a new port into the file.
            std::fs::write(&file, [format!("{new_port}\n").as_bytes(), &nonce].concat()).unwrap();
            feed(&mut child, b"BYE\n").await;
            let (code, out, _) = finish(child).await;
            let err = stderr.rest().await;
            assert_eq!(code, 0, "{err}");
            assert!(out.starts_with(b"OK Pleased"), "{out:?}");
            assert_eq!(events.recv().await, Some("nonce ok"));
        })
        .await;
    }
}
