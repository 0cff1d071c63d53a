//! Helpers shared by the tests that run the built `pipewright` binary.
#![allow(dead_code)] // each test file uses only some of them

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The built `pipewright` binary.
pub fn pipewright() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
}

/// Runs a command to completion, with a 60 s watchdog so a hang fails the test.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pipewright");
    finish(child, 60)
}

/// Waits for `child` and returns its output, with a `secs` watchdog so a hang fails the test.
pub fn finish(child: Child, secs: u64) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("watchdog: pipewright did not finish within {secs} s"))
        .expect("pipewright output")
}

/// A name no other test or run uses: `prefix`, then the process id, a counter and a random
/// number.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Fails the test instead of hanging: `fut`'s output, or a panic after `secs` seconds.
pub async fn watchdog<F: Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("watchdog: no result within {secs} s"))
}

/// A finished `pipewright` run: its exit code (-1 when a signal ended it) and output.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `pipewright ARGS` as a tokio process with stdin closed and collects what it printed.
pub async fn pipewright_run(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run pipewright");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A unique run directory in the temp dir (removed on drop); on Windows it makes the pipe
/// name unique.
pub struct RunDir(PathBuf);

impl RunDir {
    /// Creates `TEMP/PREFIX-...`, a name from [`unique_name`].
    pub fn new(prefix: &str) -> RunDir {
        let p = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&p).expect("create run dir");
        RunDir(p)
    }

    /// The directory as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp dir is Unicode")
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed when dropped.
pub struct Served(Child);

impl Served {
    /// Starts `cmd` and waits (at most 60 s) for its first stdout line, which must start with
    /// `ready`.
    pub fn start(cmd: &mut Command, ready: &str) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pipewright server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let server = Served(child);
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("watchdog: the server printed no ready line within 60 s");
        assert!(line.starts_with(ready), "ready line: {line:?}");
        server
    }
}

impl Served {
    /// The server's process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `netipc serve` for `service` in `dir` with `extra` arguments and waits for its ready
/// line; the server is killed when the result is dropped.
pub fn netipc_serve(dir: &RunDir, service: &str, extra: &[&str]) -> Served {
    let mut cmd = pipewright();
    cmd.args([
        "netipc",
        "serve",
        "--run-dir",
        dir.arg(),
        "--service",
        service,
    ]);
    Served::start(cmd.args(extra), "listening on ")
}

/// A process's stdout, trimmed.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A process's stderr, trimmed.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}
