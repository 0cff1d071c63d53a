//! `pipewright wsl` end to end, with real clients: OpenSSH's `ssh-add` and `ssh-keygen`,
//! `curl`, `gpg-connect-agent` in front of a real `gpg-agent`, and raw sockets.
//!
//! Each scenario is one function taking a [`Host`]: the Windows side either runs natively
//! (`pipewright wsl-host` on Linux, where `npipe:NAME` is a Unix socket in
//! `$PIPEWRIGHT_RUNTIME_DIR`) or under Wine (`wine64 pipewright.exe wsl-host`, with the pipe
//! servers Windows processes too). Each scenario has a native test, run by `cargo test`, and
//! a `..._through_wine` test, ignored unless asked for:
//!
//! ```text
//! PIPEWRIGHT_WIN_EXE=target/windows/x86_64-win7-windows-gnu/debug/pipewright.exe \
//!   cargo test -p pipewright-cli --test wsl -- --ignored through_wine
//! ```
//!
//! `PIPEWRIGHT_WSL_TEST_LOG=info` (a `PIPEWRIGHT_LOG` filter) makes the daemon, the host and
//! the pipe servers log more; a failing test prints their logs.
//!
//! Every test has its own daemon directory, runtime directory and pipe names, a watchdog,
//! and a [`Case`] guard that stops the daemon and every process it started, pass or fail.
#![cfg(unix)]

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod cli_support;
use cli_support::unique_name;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::process::{Child, Command};

/// The watchdog of a native test; a Wine test gets three times as long.
const NATIVE_SECS: u64 = 120;
/// How soon a connection to a target that is not up must be closed.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

/// Declares a scenario's native test and its `_through_wine` twin.
macro_rules! scenario {
    ($(#[$doc:meta])* $scenario:ident => $native:ident, $wine:ident) => {
        $(#[$doc])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $native() {
            run(Host::Native, NATIVE_SECS, $scenario).await;
        }

        $(#[$doc])*
        ///
        /// The Windows side under Wine.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs Wine and the Windows build in PIPEWRIGHT_WIN_EXE"]
        async fn $wine() {
            run(Host::wine(), 3 * NATIVE_SECS, $scenario).await;
        }
    };
}

scenario! {
    /// Real OpenSSH: a Linux `ssh-agent` holds a fresh ed25519 key (its private key file is
    /// then deleted), the pipe `openssh-ssh-agent-*` leads to it; through
    /// `eval $(pipewright wsl ssh-agent ...)`, `ssh-add -l` lists the key, `ssh-keygen -Y sign`
    /// signs with it (only the agent can) and `ssh-keygen -Y verify` accepts the signature.
    /// The daemon asked the agent about extensions and chose `forward`.
    real_openssh => real_openssh_agent_lists_and_signs, real_openssh_agent_lists_and_signs_through_wine
}

scenario! {
    /// An agent that drops the connection on message 27 (as old Windows agents do): one
    /// client connection sends `session-bind@openssh.com`, gets `SSH_AGENT_FAILURE` from the
    /// daemon, then lists keys and gets the agent's answer; the agent never sees the
    /// session-bind; `status` says `fail` and why. A well-behaved agent gets `forward`, and
    /// its own answer to the session-bind.
    extension_modes => extension_requests_fail_or_forward_per_agent, extension_requests_fail_or_forward_per_agent_through_wine
}

scenario! {
    /// Docker-style HTTP: `curl --unix-socket` through `eval $(pipewright wsl docker ...)`
    /// reaches an HTTP server behind a pipe and gets its body; the server saw `GET /version`.
    docker_http => docker_http_through_the_daemon, docker_http_through_the_daemon_through_wine
}

scenario! {
    /// gpg: `pipewright wsl gpg-agent` maps `S.gpg-agent` to an Assuan socket file as Gpg4win
    /// writes it (port, newline, 16-byte nonce) in front of a real Linux `gpg-agent`;
    /// `gpg-connect-agent -S` gets `D <version>` and `OK`, and every connection sent the nonce.
    gpg_assuan => gpg_connect_agent_through_an_assuan_file, gpg_connect_agent_through_an_assuan_file_through_wine
}

scenario! {
    /// 100 concurrent connections through one host, 200 KiB each, echoed and checked by
    /// SHA-256; the host is killed under 20 connections in flight, which all end (no hang);
    /// the daemon restarts it and the next 100 all succeed; `status` shows the restart and
    /// why the old host ended, and the daemon's log says it restarted the host.
    concurrency_and_restart => hundred_connections_survive_a_host_restart, hundred_connections_survive_a_host_restart_through_wine
}

scenario! {
    /// Two `eval $(pipewright wsl ssh-agent ...)` in a row, from two shells: one daemon (the
    /// same pid in both `status`es, the only holder of the directory's lock files, and the
    /// only `wsl up` process for the directory), the second call quick; a stale socket file
    /// at the socket path is replaced.
    two_shells => second_shell_reuses_the_daemon, second_shell_reuses_the_daemon_through_wine
}

scenario! {
    /// A target that is not up (no server on the pipe): the client's connection is closed at
    /// once, for a raw socket and an ssh-agent one; `status` and the daemon's log name the
    /// pipe, and the host lives on.
    target_down => missing_target_closes_at_once, missing_target_closes_at_once_through_wine
}

scenario! {
    /// Malformed ssh-agent frames from a client (length 0x7fffffff, length 0): that connection
    /// is closed and logged, the agent never sees them, and the daemon serves the next
    /// request.
    bad_frames => bad_agent_frames_close_only_their_connection, bad_agent_frames_close_only_their_connection_through_wine
}

scenario! {
    /// A client that half-closes after its request and waits for a reply that comes 2 s
    /// later gets it: the half-close reaches the pipe server (a message pipe under Wine, the
    /// way Docker's engine pipe is), and neither the daemon nor the host cuts the silent
    /// direction (`docker exec -i` half-closes once its stdin ends and may print later).
    slow_reply_after_half_close => half_closed_client_gets_a_slow_reply, half_closed_client_gets_a_slow_reply_through_wine
}

// ---------------------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------------------

async fn real_openssh(host: Host) {
    let mut case = Case::new(host, "ssh");
    let work = case.root.join("work");
    std::fs::create_dir_all(&work).unwrap();

    // A Linux ssh-agent with a fresh key.
    let agent_sock = case.root.join("linux-agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_sock)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start ssh-agent");
    case.keep(agent);
    wait_for_path(&agent_sock).await;
    let key = work.join("id_test");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@x", "-f"])
        .arg(&key)
        .output()
        .await
        .unwrap();
    assert!(
        keygen.status.success(),
        "ssh-keygen: {}",
        text(&keygen.stderr)
    );
    let add = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &agent_sock)
        .output()
        .await
        .unwrap();
    assert!(add.status.success(), "ssh-add: {}", text(&add.stderr));
    let pub_key = path_with(&key, ".pub");
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&pub_key)
        .output()
        .await
        .unwrap();
    let fingerprint = text(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l prints a fingerprint")
        .to_string();
    // From here only the agent can sign.
    std::fs::remove_file(&key).unwrap();
    let allowed = work.join("allowed_signers");
    let pub_text = std::fs::read_to_string(&pub_key).unwrap();
    std::fs::write(&allowed, format!("test@x {pub_text}")).unwrap();
    let file = work.join("message.txt");
    std::fs::write(&file, "signed through pipewright wsl\n").unwrap();

    // The agent behind the Windows pipe.
    let (port, _) = tcp_front(agent_sock.clone(), None).await;
    let pipe = unique_name("openssh-ssh-agent");
    case.serve_pipe(&pipe, port).await;

    let socket = case.dir.join("agent.sock");
    let script = r#"
        out=$("$PW" wsl ssh-agent --dir "$D" --socket "$SOCK" --pipe "$PIPE" --windows-command "$CMD") || exit 10
        eval $out
        test "$SSH_AUTH_SOCK" = "$SOCK" || exit 11
        ssh-add -l || exit 12
        ssh-keygen -Y sign -f "$KEY.pub" -n file "$FILE" || exit 13
        ssh-keygen -Y verify -f "$ALLOWED" -I test@x -n file -s "$FILE.sig" < "$FILE" || exit 14
    "#;
    let out = case
        .sh(
            script,
            &[
                ("SOCK", socket.as_os_str()),
                ("PIPE", OsStr::new(&pipe)),
                ("KEY", key.as_os_str()),
                ("FILE", file.as_os_str()),
                ("ALLOWED", allowed.as_os_str()),
            ],
        )
        .await;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&fingerprint),
        "ssh-add -l lists {fingerprint}: {all}"
    );
    assert!(all.contains("Good \"file\" signature for test@x"), "{all}");
    assert!(path_with(&file, ".sig").is_file());

    let status = case.status().await;
    let sock = socket_status(&status, &socket);
    assert_eq!(sock["kind"], "ssh-agent", "{status}");
    assert!(sock["connections"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(sock["ssh_extensions"]["mode"], "forward", "{status}");
}

async fn extension_modes(host: Host) {
    let mut case = Case::new(host, "ext");
    let old = MockAgent::start(AgentKind::DropsExtensions).await;
    let new = MockAgent::start(AgentKind::AnswersExtensions).await;
    let old_pipe = unique_name("openssh-ssh-agent-old");
    let new_pipe = unique_name("openssh-ssh-agent-new");
    case.serve_pipe(&old_pipe, old.port).await;
    case.serve_pipe(&new_pipe, new.port).await;
    let old_sock = case.dir.join("old.sock");
    let new_sock = case.dir.join("new.sock");
    case.up(&[
        format!("{}=npipe:{old_pipe};kind=ssh-agent", old_sock.display()),
        format!("{}=npipe:{new_pipe};kind=ssh-agent", new_sock.display()),
    ])
    .await;

    for sock in [&old_sock, &new_sock] {
        let mut conn = UnixStream::connect(sock).await.unwrap();
        conn.write_all(&session_bind_request()).await.unwrap();
        assert_eq!(
            read_frame(&mut conn).await.unwrap(),
            AGENT_FAILURE,
            "{}",
            sock.display()
        );
        conn.write_all(&frame(&[REQUEST_IDENTITIES])).await.unwrap();
        assert_eq!(
            read_frame(&mut conn).await.unwrap(),
            IDENTITIES_NONE,
            "{}",
            sock.display()
        );
        conn.shutdown().await.unwrap();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    let status = wait_status(&case, "both sockets decided", |s| {
        [&old_sock, &new_sock]
            .iter()
            .all(|p| socket_status(s, p)["ssh_extensions"]["mode"] != "undecided")
    })
    .await;
    let old_ext = &socket_status(&status, &old_sock)["ssh_extensions"];
    assert_eq!(old_ext["mode"], "fail", "{status}");
    assert!(
        old_ext["reason"]
            .as_str()
            .unwrap()
            .contains("dropped the connection"),
        "{status}"
    );
    let new_ext = &socket_status(&status, &new_sock)["ssh_extensions"];
    assert_eq!(new_ext["mode"], "forward", "{status}");
    assert!(
        new_ext["reason"]
            .as_str()
            .unwrap()
            .contains("answered the query extension"),
        "{status}"
    );

    // The daemon asked each agent with `query`; only the new agent got the client's request.
    let old_seen = old.extensions();
    assert!(old_seen.iter().all(|e| e == "query"), "{old_seen:?}");
    assert!(
        !old_seen.is_empty(),
        "the old agent was asked: {old_seen:?}"
    );
    let new_seen = new.extensions();
    assert!(
        new_seen.iter().any(|e| e == "session-bind@openssh.com"),
        "{new_seen:?}"
    );
}

async fn docker_http(host: Host) {
    let mut case = Case::new(host, "docker");
    let (port, requests) = http_server(r#"{"Version":"test"}"#).await;
    let pipe = unique_name("docker_engine");
    case.serve_pipe(&pipe, port).await;
    let socket = case.dir.join("docker.sock");
    let script = r#"
        out=$("$PW" wsl docker --dir "$D" --socket "$SOCK" --pipe "$PIPE" --windows-command "$CMD") || exit 10
        eval $out
        test "$DOCKER_HOST" = "unix://$SOCK" || exit 11
        for i in 1 2 3; do
            curl --silent --show-error --max-time 30 --unix-socket "${DOCKER_HOST#unix://}" http://localhost/version || exit 12
            echo
        done
    "#;
    let out = case
        .sh(
            script,
            &[("SOCK", socket.as_os_str()), ("PIPE", OsStr::new(&pipe))],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        [r#"{"Version":"test"}"#; 3],
        "{}",
        text(&out.stderr)
    );
    let seen = requests.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .filter(|r| *r == "GET /version HTTP/1.1")
            .count(),
        3,
        "{seen:?}"
    );
}

async fn gpg_assuan(host: Host) {
    let mut case = Case::new(host, "gpg");
    // A real gpg-agent with a fresh home.
    let home = case.private_dir("gnupg");
    let started = Command::new("gpg-agent")
        .arg("--homedir")
        .arg(&home)
        .arg("--daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("start gpg-agent");
    assert!(started.success());
    let listed = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--list-dirs", "agent-socket"])
        .output()
        .await
        .unwrap();
    let agent_sock = PathBuf::from(text(&listed.stdout).trim());
    wait_for_path(&agent_sock).await;
    let client_home = case.private_dir("gnupg-client");
    let pid = gpg_connect(&client_home, &agent_sock, "GETINFO pid").await;
    let pid = pid
        .lines()
        .find_map(|l| l.strip_prefix("D "))
        .expect("gpg-agent pid");
    case.kill_at_end(pid.trim().parse().unwrap(), "gpg-agent");
    let version = gpg_connect(&client_home, &agent_sock, "GETINFO version").await;
    let version = version
        .lines()
        .find(|l| l.starts_with("D "))
        .unwrap()
        .to_string();

    // The Assuan socket file, as Gpg4win writes it, in front of that agent.
    let nonce: [u8; 16] = rand::random();
    let (port, bad_nonces) = tcp_front(agent_sock.clone(), Some(nonce)).await;
    let windows_home = case.host.windows_path(&case.private_dir("windows-gnupg"));
    let file = case
        .host
        .linux_path(&format!(r"{windows_home}\S.gpg-agent"));
    let mut contents = format!("{port}\n").into_bytes();
    contents.extend_from_slice(&nonce);
    std::fs::write(&file, contents).unwrap();

    let socket_dir = case.root.join("linux-gnupg");
    let out = case
        .pw(&[
            "wsl",
            "gpg-agent",
            "--dir",
            &case.dir_arg(),
            "--socket-dir",
            socket_dir.to_str().unwrap(),
            "--windows-gnupg-home",
            &windows_home,
            "--windows-command",
            &case.host.windows_command(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let through = gpg_connect(
        &client_home,
        &socket_dir.join("S.gpg-agent"),
        "GETINFO version",
    )
    .await;
    let lines: Vec<&str> = through.lines().collect();
    assert_eq!(lines, [version.as_str(), "OK"], "{through}");
    assert_eq!(bad_nonces.load(Ordering::Relaxed), 0);
    let status = case.status().await;
    let sock = socket_status(&status, &socket_dir.join("S.gpg-agent"));
    assert_eq!(
        sock["target"],
        format!(r"assuan:{windows_home}\S.gpg-agent"),
        "{status}"
    );
    assert_eq!(sock["failures"], 0, "{status}");
}

async fn slow_reply_after_half_close(host: Host) {
    let mut case = Case::new(host, "slow");
    let port = slow_server(Duration::from_secs(2)).await;
    let pipe = unique_name("slow");
    case.serve_pipe_with(&pipe, port, true).await;
    let socket = case.dir.join("slow.sock");
    case.up(&[format!("{}=npipe:{pipe}", socket.display())])
        .await;
    let mut conn = UnixStream::connect(&socket).await.unwrap();
    conn.write_all(b"request\n").await.unwrap();
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    assert_eq!(text(&got), "reply\n");
}

async fn concurrency_and_restart(host: Host) {
    let mut case = Case::new(host, "load");
    let port = tcp_echo().await;
    let pipe = unique_name("echo");
    case.serve_pipe(&pipe, port).await;
    let socket = case.dir.join("echo.sock");
    case.up(&[format!("{}=npipe:{pipe}", socket.display())])
        .await;

    // Wave 1: 100 at once.
    let failures = echo_wave(&socket, 100, 200 * 1024).await;
    assert!(failures.is_empty(), "wave 1: {failures:?}");
    let before = case.status().await;
    let old_pid = before["windows_host"]["pid"]
        .as_u64()
        .expect("the host runs") as u32;

    // Wave 2: 20 connections pumping data when the host is killed; each must end.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(32);
    let mut in_flight = Vec::new();
    for _ in 0..20 {
        let socket = socket.clone();
        let ready = ready_tx.clone();
        in_flight.push(tokio::spawn(async move {
            pump_until_closed(&socket, ready).await
        }));
    }
    drop(ready_tx);
    for n in 0..20 {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} of 20 connections got their first echo"))
            .expect("a pumping connection failed before the kill");
    }
    kill(old_pid);
    let killed = Instant::now();
    for (i, task) in in_flight.into_iter().enumerate() {
        let left = Duration::from_secs(30).saturating_sub(killed.elapsed());
        let ended = tokio::time::timeout(left, task)
            .await
            .unwrap_or_else(|_| panic!("connection {i} still open 30 s after the host was killed"));
        ended.expect("the pumping task");
    }

    // The daemon restarts the host. Connections may be retried until the new host answers
    // (Wine takes seconds to start one); after that every connection succeeds at once.
    wait_status(&case, "the host restarted", |s| {
        let h = &s["windows_host"];
        h["restarts"].as_u64() >= Some(1)
            && h["pid"].as_u64().is_some_and(|p| p != u64::from(old_pid))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = echo_once(&socket, 1024).await {
        assert!(
            Instant::now() < deadline,
            "no echo 60 s after the restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failures = echo_wave(&socket, 100, 200 * 1024).await;
    assert!(failures.is_empty(), "wave 3: {failures:?}");

    let status = case.status().await;
    let h = &status["windows_host"];
    assert!(h["restarts"].as_u64().unwrap() >= 1, "{status}");
    let last_exit = h["last_exit"].as_str().expect("status shows the last exit");
    assert!(
        last_exit.contains(&format!("process {old_pid} ended")),
        "{status}"
    );
    let sock = socket_status(&status, &socket);
    assert!(sock["connections"].as_u64().unwrap() >= 220, "{status}");
    assert_eq!(sock["active"], 0, "{status}");
    wait_log(&case, "restarting the Windows host").await;
}

async fn two_shells(host: Host) {
    let mut case = Case::new(host, "twice");
    let agent = MockAgent::start(AgentKind::AnswersExtensions).await;
    let pipe = unique_name("openssh-ssh-agent");
    case.serve_pipe(&pipe, agent.port).await;
    // A socket file left behind by a daemon that died: nobody listens on it.
    std::fs::create_dir_all(&case.dir).unwrap();
    let socket = case.dir.join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_err());

    // `ssh-add -l` exits 1 for an agent without keys (2 when it cannot reach one).
    let script = r#"
        out=$("$PW" wsl ssh-agent --dir "$D" --socket "$SOCK" --pipe "$PIPE" --windows-command "$CMD") || exit 10
        eval $out
        ssh-add -l
    "#;
    let vars = [("SOCK", socket.as_os_str()), ("PIPE", OsStr::new(&pipe))];
    let mut pids = Vec::new();
    let mut took = Vec::new();
    for shell in 1..=2 {
        let began = Instant::now();
        let out = case.sh(script, &vars).await;
        took.push(began.elapsed());
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "shell {shell}: {all}");
        assert!(
            all.contains("The agent has no identities"),
            "shell {shell}: {all}"
        );
        pids.push(case.status().await["daemon_pid"].as_u64().unwrap() as u32);
    }
    assert_eq!(pids[0], pids[1], "one daemon for both shells");
    assert!(
        took[1] < Duration::from_secs(5),
        "the second shell waited {:?}",
        took[1]
    );
    assert_eq!(
        lock_holders(&case.dir),
        [pids[0]],
        "only the daemon holds the directory's locks"
    );
    assert_eq!(
        daemons_for(&case.dir),
        [pids[0]],
        "one `wsl up` process for the directory"
    );
    let status = case.status().await;
    assert_eq!(status["sockets"].as_array().unwrap().len(), 1, "{status}");
    assert!(
        socket_status(&status, &socket)["connections"]
            .as_u64()
            .unwrap()
            >= 2,
        "{status}"
    );
}

async fn target_down(host: Host) {
    let case = Case::new(host, "down");
    let missing = unique_name("not-running");
    let raw = case.dir.join("raw.sock");
    let agent = case.dir.join("agent.sock");
    case.up(&[
        format!("{}=npipe:{missing}", raw.display()),
        format!("{}=npipe:{missing};kind=ssh-agent", agent.display()),
    ])
    .await;
    // The first connection may wait for the host to start (Wine takes seconds); the timed
    // ones after it find it running.
    assert!(
        closes(&raw, Duration::from_secs(60)).await,
        "the first connection hangs"
    );
    for sock in [&raw, &agent] {
        assert!(
            closes(sock, CLOSED_WITHIN).await,
            "{}: not closed within {CLOSED_WITHIN:?}",
            sock.display()
        );
    }
    let status = case.status().await;
    for sock in [&raw, &agent] {
        let s = socket_status(&status, sock);
        let error = s["last_error"]
            .as_str()
            .unwrap_or_else(|| panic!("no last_error: {status}"));
        assert!(error.contains(&missing), "{status}");
        assert!(s["failures"].as_u64().unwrap() >= 1, "{status}");
    }
    assert!(
        status["windows_host"]["pid"].as_u64().is_some(),
        "the host lives on: {status}"
    );
    wait_log(&case, &format!("npipe:{missing}")).await;
}

async fn bad_frames(host: Host) {
    let mut case = Case::new(host, "frames");
    let agent = MockAgent::start(AgentKind::AnswersExtensions).await;
    let pipe = unique_name("openssh-ssh-agent");
    case.serve_pipe(&pipe, agent.port).await;
    let socket = case.dir.join("agent.sock");
    case.up(&[format!("{}=npipe:{pipe};kind=ssh-agent", socket.display())])
        .await;

    // A valid request first: it waits for the host to start, so the bad ones are timed
    // against a running host.
    step("a valid request");
    let mut conn = UnixStream::connect(&socket).await.unwrap();
    conn.write_all(&frame(&[REQUEST_IDENTITIES])).await.unwrap();
    assert_eq!(read_frame(&mut conn).await.unwrap(), IDENTITIES_NONE);
    drop(conn);

    let bad: [&[u8]; 2] = [&[0x7f, 0xff, 0xff, 0xff, 11, 0, 0, 0], &[0, 0, 0, 0, 11]];
    for (i, bytes) in bad.iter().enumerate() {
        step(&format!("bad frame {i}"));
        let mut conn = UnixStream::connect(&socket).await.unwrap();
        let _ = conn.write_all(bytes).await;
        let mut got = Vec::new();
        let read = tokio::time::timeout(CLOSED_WITHIN, conn.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "bad frame {i}: the connection stays open");
        assert!(got.is_empty(), "bad frame {i}: {got:?}");
    }
    let mut conn = UnixStream::connect(&socket).await.unwrap();
    conn.write_all(&frame(&[REQUEST_IDENTITIES])).await.unwrap();
    assert_eq!(read_frame(&mut conn).await.unwrap(), IDENTITIES_NONE);

    let status = case.status().await;
    let s = socket_status(&status, &socket);
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("invalid agent message"), "{status}");
    wait_log(&case, "invalid agent message").await;
    assert_eq!(
        agent.requests(),
        [REQUEST_IDENTITIES; 2],
        "only the valid requests reached the agent"
    );
}

// ---------------------------------------------------------------------------------------
// The Windows side, and each test's processes.
// ---------------------------------------------------------------------------------------

/// Where the Windows side runs.
enum Host {
    /// `pipewright wsl-host` on Linux; pipes are Unix sockets in `$PIPEWRIGHT_RUNTIME_DIR`.
    Native,
    /// `wine64 pipewright.exe wsl-host`; pipes are Wine's named pipes.
    Wine { wine: PathBuf, exe: PathBuf },
}

impl Host {
    /// The Wine host from `$PIPEWRIGHT_WIN_EXE` (and `$WINE`, default `/usr/lib/wine/wine64`).
    fn wine() -> Host {
        let exe = std::env::var_os("PIPEWRIGHT_WIN_EXE")
            .map(PathBuf::from)
            .expect("set PIPEWRIGHT_WIN_EXE to the Windows pipewright.exe");
        assert!(exe.is_file(), "{} is not a file", exe.display());
        let wine = std::env::var_os("WINE")
            .map_or_else(|| PathBuf::from("/usr/lib/wine/wine64"), PathBuf::from);
        Host::Wine { wine, exe }
    }

    /// The `--windows-command` that starts the host.
    fn windows_command(&self) -> String {
        match self {
            Host::Native => format!("{} wsl-host", quote(Path::new(binary()))),
            Host::Wine { wine, exe } => format!("{} {} wsl-host", quote(wine), quote(exe)),
        }
    }

    /// A Windows-side `pipewright ARGS`.
    fn windows_pipewright(&self) -> Command {
        match self {
            Host::Native => Command::new(binary()),
            Host::Wine { wine, exe } => {
                let mut c = Command::new(wine);
                c.arg(exe);
                c
            }
        }
    }

    /// How the host writes the Linux directory `dir`.
    fn windows_path(&self, dir: &Path) -> String {
        let linux = dir.to_str().expect("temp paths are Unicode");
        match self {
            Host::Native => linux.to_string(),
            Host::Wine { .. } => format!("Z:{}", linux.replace('/', r"\")),
        }
    }

    /// The Linux file the host opens for the path `windows`. Natively a `\` is a character of
    /// a file name, so `DIR\S.gpg-agent` is a file beside DIR.
    fn linux_path(&self, windows: &str) -> PathBuf {
        match self {
            Host::Native => PathBuf::from(windows),
            Host::Wine { .. } => {
                let rest = windows.strip_prefix("Z:").expect("a Z: path");
                PathBuf::from(rest.replace('\\', "/"))
            }
        }
    }
}

/// One test's world: a temp directory holding the daemon's `--dir` and the runtime
/// directory, the environment every process gets, and the processes to end. Dropping it
/// runs `wsl down`, kills whatever is left, prints the logs if the test failed, and
/// removes the directory.
struct Case {
    host: Host,
    root: PathBuf,
    dir: PathBuf,
    runtime: PathBuf,
    children: Vec<Child>,
    pids: Vec<(u32, &'static str)>,
    /// The host pids `status` showed.
    hosts: Mutex<Vec<u32>>,
}

impl Case {
    fn new(host: Host, prefix: &str) -> Case {
        let root = std::env::temp_dir().join(unique_name(&format!("pwwsl-{prefix}")));
        let runtime = root.join("rt");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::create_dir_all(root.join("config")).unwrap();
        Case {
            host,
            dir: root.join("d"),
            root,
            runtime,
            children: Vec::new(),
            pids: Vec::new(),
            hosts: Mutex::new(Vec::new()),
        }
    }

    fn dir_arg(&self) -> String {
        self.dir.to_str().unwrap().to_string()
    }

    /// A fresh directory of mode 0700 under the test's directory.
    fn private_dir(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.root.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    /// The environment of every process the test starts: its own runtime directory, no
    /// user config, no agent or Docker of the caller's, Wine's prefix.
    fn env(&self, c: &mut Command) {
        c.env("PIPEWRIGHT_RUNTIME_DIR", &self.runtime)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DOCKER_HOST")
            .env_remove("PIPEWRIGHT_WSL_DIR")
            .env_remove("PIPEWRIGHT_WINDOWS_EXE")
            .env_remove("RUST_LOG");
        // The log lines the tests look for are warnings: the default level shows them.
        match std::env::var_os("PIPEWRIGHT_WSL_TEST_LOG") {
            Some(level) => c.env("PIPEWRIGHT_LOG", level),
            None => c.env_remove("PIPEWRIGHT_LOG"),
        };
        if let Host::Wine { .. } = self.host {
            let home = std::env::var("HOME").unwrap_or_default();
            let prefix = std::env::var("WINEPREFIX").unwrap_or(format!("{home}/.wine-pipewright"));
            let debug = std::env::var("WINEDEBUG").unwrap_or("-all".into());
            c.env("WINEPREFIX", prefix).env("WINEDEBUG", debug);
        }
    }

    /// Keeps `child` until the end of the test.
    fn keep(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Kills `pid` at the end of the test if it still runs a command containing `what`.
    fn kill_at_end(&mut self, pid: u32, what: &'static str) {
        self.pids.push((pid, what));
    }

    /// Runs the Linux `pipewright ARGS` to the end.
    async fn pw(&self, args: &[&str]) -> Output {
        let mut c = Command::new(binary());
        c.args(args).stdin(Stdio::null()).kill_on_drop(true);
        self.env(&mut c);
        c.output().await.expect("run pipewright")
    }

    /// Runs a shell script with `$PW` (the Linux pipewright), `$D` (the daemon's directory),
    /// `$CMD` (the windows command) and `vars`.
    async fn sh(&self, script: &str, vars: &[(&str, &OsStr)]) -> Output {
        step("running a shell script");
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(script)
            .env("PW", binary())
            .env("D", &self.dir)
            .env("CMD", self.host.windows_command())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in vars {
            c.env(k, v);
        }
        self.env(&mut c);
        c.output().await.expect("run sh")
    }

    /// `pipewright wsl up --detach` with `sockets`.
    async fn up(&self, sockets: &[String]) {
        let dir = self.dir_arg();
        let command = self.host.windows_command();
        let mut args = vec![
            "wsl",
            "up",
            "--detach",
            "--dir",
            &dir,
            "--windows-command",
            &command,
        ];
        for s in sockets {
            args.extend(["--socket", s]);
        }
        step("wsl up --detach");
        let out = self.pw(&args).await;
        assert_eq!(out.status.code(), Some(0), "wsl up: {}", text(&out.stderr));
        step("the daemon is up");
    }

    /// `pipewright wsl status --json`.
    async fn status(&self) -> Value {
        let out = self
            .pw(&["wsl", "status", "--dir", &self.dir_arg(), "--json"])
            .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "wsl status: {}",
            text(&out.stderr)
        );
        let status: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
        assert_eq!(
            status["windows_host"]["command"],
            self.host.windows_command(),
            "the daemon runs this test's host"
        );
        if let Some(pid) = status["windows_host"]["pid"].as_u64() {
            self.hosts.lock().unwrap().push(pid as u32);
        }
        status
    }

    /// Serves the Windows pipe `name`, each connection forwarded to 127.0.0.1:`port`, and
    /// waits until the pipe accepts connections.
    async fn serve_pipe(&mut self, name: &str, port: u16) {
        self.serve_pipe_with(name, port, false).await;
    }

    /// Serves the pipe `name` in front of `port`. With `half_close`, the pipe server hears a
    /// client's end of stream and waits for the reply however long it takes: a message pipe
    /// under Wine (a Windows byte pipe has no half-close; on Unix every socket has one), and
    /// a long linger in the bridge itself.
    async fn serve_pipe_with(&mut self, name: &str, port: u16, half_close: bool) {
        let mode = if half_close && matches!(self.host, Host::Wine { .. }) {
            ",mode=message"
        } else {
            ""
        };
        let linger = if half_close { "60s" } else { "1s" };
        let mut c = self.host.windows_pipewright();
        c.args([
            "bridge",
            "-t",
            linger,
            &format!("npipe-listen:{name}{mode}"),
            &format!("tcp:127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(self.log_file(&format!("pipe-server-{name}")))
        .kill_on_drop(true);
        self.env(&mut c);
        step(&format!("serving the pipe {name} -> 127.0.0.1:{port}"));
        let mut server = c.spawn().expect("start the pipe server");
        let deadline = Instant::now() + Duration::from_secs(60);
        for attempt in 0.. {
            let said = self.log_path(&format!("probe-{name}-{attempt}"));
            let mut probe = self.host.windows_pipewright();
            probe
                .args(["probe", name, "--timeout", "10s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(self.log_file(&format!("probe-{name}-{attempt}")))
                .kill_on_drop(true);
            self.env(&mut probe);
            let status = tokio::time::timeout(Duration::from_secs(30), probe.status())
                .await
                .unwrap_or_else(|_| panic!("probe {name} did not end within 30 s"))
                .expect("run probe");
            if status.success() {
                break;
            }
            let said = std::fs::read_to_string(said).unwrap_or_default();
            step(&format!("probe {name}: {status}: {said}"));
            if let Ok(Some(status)) = server.try_wait() {
                panic!("the server of the pipe {name} exited ({status}); probe: {said}");
            }
            assert!(
                Instant::now() < deadline,
                "the pipe {name} is not served within 60 s; probe exited {status}: {said}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.keep(server);
    }

    /// Where the output of a process named `name` goes: `ROOT/NAME.log`.
    fn log_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.log"))
    }

    /// A new log file for a process's stderr. Wine processes never get a pipe: the first one
    /// to run starts the wineserver, which keeps its stderr open for as long as it lives, so
    /// whoever reads that pipe would wait for its end long after the process has exited.
    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.log_path(name)).expect("create a log file")
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let mut down = std::process::Command::new(binary());
        down.args(["wsl", "down", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.dir.join("control.sock").exists() {
            if let Ok(child) = down.spawn() {
                wait_or_kill(child, Duration::from_secs(20));
            }
        }
        // Whatever `down` did not end.
        for pid in daemons_for(&self.dir) {
            kill(pid);
        }
        let seen = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|p| p.into_inner()));
        for pid in seen {
            if cmdline(pid).is_some_and(|c| c.contains("wsl-host")) {
                kill(pid);
            }
        }
        for &(pid, what) in &self.pids {
            if cmdline(pid).is_some_and(|c| c.contains(what)) {
                kill(pid);
            }
        }
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            let logs = std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .chain([self.dir.join("daemon.log")])
                .filter(|p| p.extension().is_some_and(|e| e == "log"));
            for path in logs {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                if !log.is_empty() {
                    eprintln!("--- {} ---\n{log}--- end ---", path.display());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs `scenario` on `host` under a `secs` watchdog and prints how long it took.
async fn run<F, Fut>(host: Host, secs: u64, scenario: F)
where
    F: FnOnce(Host) -> Fut,
    Fut: Future<Output = ()>,
{
    let began = Instant::now();
    let scenario = scenario(host);
    tokio::pin!(scenario);
    tokio::select! {
        () = &mut scenario => {}
        // Panicking here, with the scenario still alive, lets its Case print the daemon's log
        // while it cleans up.
        () = tokio::time::sleep(Duration::from_secs(secs)) => {
            panic!("watchdog: the scenario did not finish within {secs} s")
        }
    }
    eprintln!("scenario took {:.1} s", began.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// Servers behind the pipes.
// ---------------------------------------------------------------------------------------

/// A TCP port whose connections are spliced to the Unix socket `target`; with `nonce`, each
/// connection must first send those 16 bytes (as an Assuan client does), else it is closed
/// and counted.
async fn tcp_front(target: PathBuf, nonce: Option<[u8; 16]>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bad = Arc::new(AtomicUsize::new(0));
    let bad2 = bad.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let target = target.clone();
            let bad = bad2.clone();
            tokio::spawn(async move {
                if let Some(nonce) = nonce {
                    let mut got = [0u8; 16];
                    if tcp.read_exact(&mut got).await.is_err() {
                        return; // a probe that closed at once
                    }
                    if got != nonce {
                        bad.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                if let Ok(mut unix) = UnixStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    (port, bad)
}

/// A TCP echo server; returns its port.
async fn tcp_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A TCP server that reads a line, waits `delay`, answers `reply` and closes; returns its port.
async fn slow_server(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while !line.ends_with(b"\n") {
                    match s.read(&mut byte).await {
                        Ok(1) => line.push(byte[0]),
                        _ => return, // a probe that closed at once
                    }
                }
                tokio::time::sleep(delay).await;
                let _ = s.write_all(b"reply\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// An HTTP/1.1 server answering every request with `body` as JSON; returns its port and the
/// request lines it saw.
async fn http_server(body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return, // a probe that closed at once
                    }
                }
                let text = String::from_utf8_lossy(&head);
                seen.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_string());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, seen)
}

/// How a [`MockAgent`] treats extension requests.
#[derive(Clone, Copy, PartialEq)]
enum AgentKind {
    /// Closes the connection, as the OpenSSH agent bundled with older Windows does.
    DropsExtensions,
    /// Answers `SSH_AGENT_FAILURE`, as current agents do for extensions they do not know.
    AnswersExtensions,
}

/// A small ssh-agent on TCP without keys: answers `REQUEST_IDENTITIES` with no identities,
/// extension requests per its kind, anything else with `SSH_AGENT_FAILURE`. It records the
/// types of the requests and the names of the extensions it received.
struct MockAgent {
    port: u16,
    seen: Arc<Mutex<(Vec<u8>, Vec<String>)>>,
}

impl MockAgent {
    async fn start(kind: AgentKind) -> MockAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve_agent(s, kind, seen2.clone()));
            }
        });
        MockAgent { port, seen }
    }

    /// The types of the requests other than extensions, in order.
    fn requests(&self) -> Vec<u8> {
        self.seen.lock().unwrap().0.clone()
    }

    /// The names of the extensions requested, in order.
    fn extensions(&self) -> Vec<String> {
        self.seen.lock().unwrap().1.clone()
    }
}

async fn serve_agent(mut s: TcpStream, kind: AgentKind, seen: Arc<Mutex<(Vec<u8>, Vec<String>)>>) {
    while let Ok(request) = read_frame(&mut s).await {
        let body = &request[4..];
        let reply: &[u8] = match body.first() {
            Some(&EXTENSION) => {
                let name = body
                    .get(1..5)
                    .map(|l| u32::from_be_bytes(l.try_into().unwrap()) as usize)
                    .and_then(|n| body.get(5..5 + n))
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().1.push(name);
                if kind == AgentKind::DropsExtensions {
                    return;
                }
                &AGENT_FAILURE
            }
            Some(&t) => {
                seen.lock().unwrap().0.push(t);
                if t == REQUEST_IDENTITIES {
                    &IDENTITIES_NONE
                } else {
                    &AGENT_FAILURE
                }
            }
            None => return,
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------

const REQUEST_IDENTITIES: u8 = 11;
const EXTENSION: u8 = 27;
const AGENT_FAILURE: [u8; 5] = [0, 0, 0, 1, 5];
const IDENTITIES_NONE: [u8; 9] = [0, 0, 0, 5, 12, 0, 0, 0, 0];

/// An agent message: length prefix and body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// An SSH wire string.
fn ssh_string(bytes: &[u8]) -> Vec<u8> {
    frame(bytes)
}

/// A `session-bind@openssh.com` request as `ssh` sends it (host key, session id, signature,
/// forwarding flag), with made-up contents.
fn session_bind_request() -> Vec<u8> {
    let mut body = vec![EXTENSION];
    body.extend(ssh_string(b"session-bind@openssh.com"));
    body.extend(ssh_string(&[7; 51]));
    body.extend(ssh_string(&[9; 32]));
    body.extend(ssh_string(&[3; 83]));
    body.push(0);
    frame(&body)
}

/// Reads one agent message whole, length prefix included (at most 256 KiB).
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > 256 * 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes"),
        ));
    }
    let mut message = prefix.to_vec();
    message.resize(4 + len, 0);
    r.read_exact(&mut message[4..]).await?;
    Ok(message)
}

/// `n` connections at once to `socket`, each writing `len` bytes of its own random data,
/// half-closing, and reading the echo to the end; the failures, described.
async fn echo_wave(socket: &Path, n: usize, len: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let socket = socket.to_path_buf();
            tokio::spawn(async move {
                echo_once(&socket, len)
                    .await
                    .map_err(|e| format!("connection {i}: {e}"))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("echo task") {
            failures.push(e);
        }
    }
    failures
}

/// One echo connection: writes `len` random bytes while reading the echo, checks its
/// SHA-256, then half-closes and expects the end of stream back. (The half-close comes after
/// the whole echo: a Windows byte pipe cannot carry it, so the host ends such a stream once
/// it has been idle for its linger, and an echo still on its way then would be cut.)
async fn echo_once(socket: &Path, len: usize) -> io::Result<()> {
    let data = random_bytes(len);
    let sent = Sha256::digest(&data);
    let conn = UnixStream::connect(socket).await?;
    let (mut r, mut w) = conn.into_split();
    let mut got = vec![0u8; len];
    let (written, read) = tokio::join!(w.write_all(&data), r.read_exact(&mut got));
    written?;
    if let Err(e) = read {
        return Err(io::Error::new(e.kind(), format!("reading the echo: {e}")));
    }
    if Sha256::digest(&got) != sent {
        return Err(io::Error::other("the echo differs from the data sent"));
    }
    w.shutdown().await?;
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(io::Error::other(format!(
            "{} bytes after the echo",
            rest.len()
        )));
    }
    Ok(())
}

/// Writes 16 KiB chunks to `socket` and reads each echo back, telling `ready` after the first,
/// until the connection ends (end of stream or an error, either is fine here).
async fn pump_until_closed(socket: &Path, ready: tokio::sync::mpsc::Sender<()>) {
    let Ok(mut conn) = UnixStream::connect(socket).await else {
        return;
    };
    let mut first = true;
    loop {
        let chunk = random_bytes(16 * 1024);
        if conn.write_all(&chunk).await.is_err() {
            return;
        }
        let mut back = vec![0u8; chunk.len()];
        if conn.read_exact(&mut back).await.is_err() {
            return;
        }
        assert_eq!(back, chunk, "the echo differs");
        if first {
            first = false;
            let _ = ready.send(()).await;
        }
    }
}

/// Whether a connection to `socket` that sends a request is closed (end of stream, or a reset
/// for the request nobody read) within `limit`, without an answer.
async fn closes(socket: &Path, limit: Duration) -> bool {
    let Ok(mut conn) = UnixStream::connect(socket).await else {
        return false;
    };
    let _ = conn.write_all(&frame(&[REQUEST_IDENTITIES])).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, conn.read_to_end(&mut got)).await;
    read.is_ok() && got.is_empty()
}

/// `gpg-connect-agent -S SOCKET COMMAND /bye` with its own (empty) home; its output.
async fn gpg_connect(home: &Path, socket: &Path, command: &str) -> String {
    let out = Command::new("gpg-connect-agent")
        .env("GNUPGHOME", home)
        .arg("-S")
        .arg(socket)
        .args([command, "/bye"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run gpg-connect-agent");
    assert!(
        out.status.success(),
        "gpg-connect-agent: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

// ---------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------

/// A breadcrumb in the test's output (shown when it fails), with the time.
fn step(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.2} s] {what}");
}

/// The built Linux `pipewright`.
fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pipewright")
}

/// `path` with `suffix` appended to its file name.
fn path_with(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Single-quotes a path for `/bin/sh`.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_str().unwrap().replace('\'', r"'\''"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::fill(&mut data[..]);
    data
}

/// Waits (at most 30 s) until `path` exists.
async fn wait_for_path(path: &Path) {
    for _ in 0..300 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not appear within 30 s", path.display());
}

/// Polls `status` (at most 30 s) until `done` holds; returns that status.
async fn wait_status(case: &Case, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut status = Value::Null;
    for _ in 0..300 {
        status = case.status().await;
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 30 s; last status: {status}");
}

/// Waits (at most 10 s) until the daemon's log holds `needle`.
async fn wait_log(case: &Case, needle: &str) {
    let path = case.dir.join("daemon.log");
    for _ in 0..100 {
        if std::fs::read_to_string(&path).is_ok_and(|log| log.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} does not mention {needle:?} within 10 s", path.display());
}

/// The status of the socket at `path`.
fn socket_status<'a>(status: &'a Value, path: &Path) -> &'a Value {
    let path = path.to_str().unwrap();
    status["sockets"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["path"] == path))
        .unwrap_or_else(|| panic!("{path} is not in the status: {status}"))
}

/// Every process: its pid and its `/proc` directory.
fn processes() -> impl Iterator<Item = (u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// The pids of the `pipewright wsl up` processes for `dir`.
fn daemons_for(dir: &Path) -> Vec<u32> {
    let dir = dir.to_str().unwrap();
    processes()
        .filter(|(_, proc_dir)| {
            let Ok(raw) = std::fs::read(proc_dir.join("cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
            let is_up = args.windows(2).any(|w| w == [&b"wsl"[..], b"up"]);
            let for_dir = args
                .windows(2)
                .any(|w| w[0] == b"--dir" && w[1] == dir.as_bytes());
            is_up && for_dir
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The processes holding a `*.lock` file of `dir` open.
fn lock_holders(dir: &Path) -> Vec<u32> {
    processes()
        .filter(|(_, proc_dir)| {
            std::fs::read_dir(proc_dir.join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| {
                    target.parent() == Some(dir) && target.extension().is_some_and(|e| e == "lock")
                })
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// A process's command line (arguments joined by spaces), if it runs.
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (!raw.is_empty()).then(|| String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// SIGKILL to `pid`.
fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child` up to `limit`, then kills it.
fn wait_or_kill(mut child: std::process::Child, limit: Duration) {
    let began = Instant::now();
    while began.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
