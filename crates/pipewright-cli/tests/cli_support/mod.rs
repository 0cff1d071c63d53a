//! Helpers shared by the tests that run the built `pipewright` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
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
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("watchdog: pipewright did not finish within 60 s")
        .expect("pipewright output")
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

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's stdout, trimmed.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A process's stderr, trimmed.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}
