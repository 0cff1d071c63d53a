//! The built `pipewright` binary: `probe` exit codes and `demo`, on this platform's transport.

use std::process::{Command, Output};

use pipewright::{Listener, ListenerOptions};

fn pipewright(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(args)
        .output()
        .expect("run pipewright")
}

fn unique(tag: &str) -> String {
    let r: u32 = rand::random();
    format!("pw-cli-{tag}-{}-{r:08x}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn probe_exits_0_for_a_ready_server_and_3_for_a_missing_one() {
    let rt = runtime();
    let name = unique("probe");
    let listener = {
        let _g = rt.enter();
        Listener::bind(name.as_str()).unwrap()
    };
    // Accept (and drop) the probe's connection in the background.
    rt.spawn(async move { while listener.accept().await.is_ok() {} });
    let out = pipewright(&["probe", &name, "--timeout", "5s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));

    let missing = unique("missing");
    let out = pipewright(&["probe", &missing, "--timeout", "300ms"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no server is listening"), "{err}");
    let out = pipewright(&["probe", "-q", &missing]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "-q prints nothing"
    );
    drop(rt);
}

/// Every instance of the pipe is held: the probe exits 4 (busy) once its timeout is over.
#[cfg(windows)]
#[test]
fn probe_exits_4_while_every_instance_stays_busy() {
    let rt = runtime();
    let name = unique("busy");
    let _held = hold_the_only_instance(&rt, &name);
    let out = pipewright(&["probe", &name, "--timeout", "300ms"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Unix socket has no instance limit: with the listener's only admitted connection held,
/// the kernel's queue still admits the probe, which exits 0.
#[cfg(unix)]
#[test]
fn probe_exits_0_on_a_unix_socket_with_its_connection_held() {
    let rt = runtime();
    let name = unique("busy");
    let _held = hold_the_only_instance(&rt, &name);
    let out = pipewright(&["probe", &name]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A listener with one instance (backlog 1), connected and accepted.
fn hold_the_only_instance(
    rt: &tokio::runtime::Runtime,
    name: &str,
) -> (Listener, pipewright::PipeStream, pipewright::PipeStream) {
    rt.block_on(async {
        let opts = ListenerOptions::new().backlog(1).max_instances(1);
        let listener = Listener::bind_with(name, &opts).unwrap();
        let client = pipewright::connect(name).await.unwrap();
        let server = listener.accept().await.unwrap();
        (listener, client, server)
    })
}

#[test]
fn bad_arguments_exit_2_and_say_what_is_expected() {
    let out = pipewright(&["probe", "x", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("500ms"), "{err}");
    let out = pipewright(&["probe", r"\\.\notapipe\x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'notapipe' is not 'pipe'"));
}

#[test]
fn demo_verifies_every_exchange_and_exits_0() {
    let out = pipewright(&["demo", "--clients", "4", "--size", "2MiB"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[byte mode]") && stdout.contains("[message mode]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 clients each sent and got back 2097152 bytes, verified"),
        "{stdout}"
    );
    assert!(stdout.contains("all exchanges verified: OK"), "{stdout}");
    let transport = if cfg!(windows) { r"\\.\pipe\" } else { ".sock" };
    assert!(stdout.contains(transport), "{stdout}");
}
