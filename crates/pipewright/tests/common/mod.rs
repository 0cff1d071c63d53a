//! Shared test helpers: unique names, child processes, Wine detection, a watchdog.
#![allow(dead_code)]

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Environment variable that turns a test binary into a child process playing a role.
pub const ROLE_ENV: &str = "PIPEWRIGHT_TEST_ROLE";
/// Environment variable that gives the child the pipe name.
pub const PIPE_ENV: &str = "PIPEWRIGHT_TEST_PIPE";

/// A pipe name no other test or run uses.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    format!("pw-{tag}-{}-{n}-{r:08x}", std::process::id())
}

/// Runs `f` on a multi-threaded runtime with a watchdog, so a hang fails the test.
pub fn run<F: Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .expect("test timed out after 120 s (watchdog)");
    });
}

/// When this returns true the test must return: it prints why it is skipped.
pub fn skip_under_wine(reason: &str) -> bool {
    if pipewright::platform::is_wine() {
        eprintln!("SKIPPED under Wine: {reason}");
        return true;
    }
    false
}

/// The role this process plays, when it was started by [`spawn_role`].
pub fn role() -> Option<(String, String)> {
    let role = std::env::var(ROLE_ENV).ok()?;
    let pipe = std::env::var(PIPE_ENV).unwrap_or_default();
    Some((role, pipe))
}

/// Starts this test binary again as a child that runs `test` (an exact test name) playing
/// `role` against `pipe`.
pub fn spawn_role(test: &str, role: &str, pipe: &str) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(PIPE_ENV, pipe)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

/// A deterministic byte pattern of `len` bytes seeded by `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ seed)
        .collect()
}

/// A listener and one connected pair (server, client) in `mode`.
pub async fn pair(
    tag: &str,
    mode: pipewright::PipeMode,
) -> (
    pipewright::Listener,
    pipewright::PipeStream,
    pipewright::PipeStream,
) {
    let name = unique_name(tag);
    let listener =
        pipewright::Listener::bind_with(&name, &pipewright::ListenerOptions::new().mode(mode))
            .unwrap();
    let client = pipewright::connect_with(&name, &pipewright::ConnectOptions::new().mode(mode))
        .await
        .unwrap();
    let server = listener.accept().await.unwrap();
    (listener, server, client)
}
