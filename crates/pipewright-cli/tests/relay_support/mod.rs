//! Shared by the relay, bridge and ls tests: unique names, the built binary, pipe servers
//! in this process, and a watchdog.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pipewright::{Listener, ListenerOptions, PipeMode, PipeStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A hang fails the test instead of stalling the run.
pub const WATCHDOG: Duration = Duration::from_secs(60);

pub async fn watchdog<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WATCHDOG, f)
        .await
        .expect("watchdog: the test hung")
}

/// A pipe name no other test uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pw-{tag}-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pipewright"))
}

/// The binary under the name npiperelay(.exe), in a directory of its own: one per test
/// process, a hard link where the file system allows it (the binary is ~100 MB with debug
/// information, and the directory outlives the test run).
pub fn npiperelay() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("npiperelay-bin"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(if cfg!(windows) {
            "npiperelay.exe"
        } else {
            "npiperelay"
        });
        if std::fs::hard_link(binary(), &path).is_err() {
            std::fs::copy(binary(), &path).unwrap();
        }
        path
    })
    .clone()
}

/// `pipewright relay ARGS...` with piped stdio.
pub fn relay(args: &[&str]) -> Child {
    let mut cmd = Command::new(binary());
    cmd.arg("relay").args(args);
    piped(cmd)
}

pub fn piped(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary")
}

/// Flags that make the relay speak the server's mode: on Unix, message mode is framed and
/// must be asked for; on Windows the relay finds out by itself.
pub fn mode_flags(mode: PipeMode) -> Vec<&'static str> {
    if cfg!(unix) && mode == PipeMode::Message {
        vec!["-mode", "message"]
    } else {
        vec![]
    }
}

/// What the server saw on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// End of stream from the client (zero-byte message, half-close or close), after this
    /// many bytes.
    Eof(usize),
}

/// How the test server treats each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Echo everything (after `delay`), and at the client's end of stream send `bye` and close.
    Echo { delay: Duration },
    /// Send a line and close at once.
    LineThenClose,
    /// Send a line and half-close (a zero-byte message on message pipes), keep reading.
    LineThenHalfClose,
    /// Send this many bytes as fast as possible, then close.
    Stream(usize),
}

pub struct Server {
    pub name: String,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub listener: std::sync::Arc<Listener>,
}

pub fn serve(tag: &str, mode: PipeMode, behaviour: Behaviour) -> Server {
    let name = unique(tag);
    serve_named(&name, ListenerOptions::new().mode(mode), behaviour)
}

pub fn serve_named(name: &str, options: ListenerOptions, behaviour: Behaviour) -> Server {
    let listener = std::sync::Arc::new(Listener::bind_with(name, &options).expect("bind"));
    let (tx, events) = mpsc::unbounded_channel();
    let l = listener.clone();
    tokio::spawn(async move {
        while let Ok(conn) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(handle(conn, behaviour, tx));
        }
    });
    Server {
        name: name.to_string(),
        events,
        listener,
    }
}

async fn handle(mut conn: PipeStream, behaviour: Behaviour, tx: mpsc::UnboundedSender<Event>) {
    match behaviour {
        Behaviour::Echo { delay } => {
            let mut total = 0;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                total += n;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Eof(total));
            let _ = conn.write_all(b"bye\n").await;
            // A byte pipe waits until the client has read everything, then disconnects.
            let _ = conn.shutdown().await;
        }
        Behaviour::LineThenClose => {
            let _ = conn.write_all(b"line\n").await;
            let _ = conn.shutdown().await;
        }
        Behaviour::LineThenHalfClose => {
            let _ = conn.write_all(b"line\n").await;
            if conn.mode() == PipeMode::Message || cfg!(unix) {
                let _ = conn.shutdown().await;
            }
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink).await;
            let _ = tx.send(Event::Eof(sink.len()));
        }
        Behaviour::Stream(len) => {
            let block = vec![7u8; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = block.len().min(len - sent);
                if conn.write_all(&block[..n]).await.is_err() {
                    let _ = tx.send(Event::Eof(sent));
                    return;
                }
                sent += n;
            }
            let _ = conn.shutdown().await;
            let _ = tx.send(Event::Eof(sent));
        }
    }
}

/// Waits for the child and returns (exit code, stdout, stderr).
pub async fn finish(child: Child) -> (i32, Vec<u8>, String) {
    let out = watchdog(child.wait_with_output()).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `data` to the child's stdin and closes it.
pub async fn feed(child: &mut Child, data: &[u8]) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(data).await.unwrap();
    drop(stdin);
}

pub fn skip_under_wine(reason: &str) -> bool {
    if pipewright::platform::is_wine() {
        eprintln!("SKIPPED under Wine: {reason}");
        return true;
    }
    false
}

/// Starts the built binary with `args`, logging at debug level (`PIPEWRIGHT_LOG=debug`), so
/// that each failed connect attempt that will be retried prints a line containing
/// `retrying` on stderr (see [`StderrWatch`]).
pub fn logged(args: &[&str]) -> Child {
    let mut cmd = Command::new(binary());
    cmd.args(args).env("PIPEWRIGHT_LOG", "debug");
    piped(cmd)
}

/// Reads a child's stderr as it comes, so a test can wait for a line without waiting for
/// the child to end.
pub struct StderrWatch {
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    reader: tokio::task::JoinHandle<()>,
}

impl StderrWatch {
    /// Takes `child`'s stderr (so [`finish`] then reports it empty: use [`Self::rest`]).
    pub fn new(child: &mut Child) -> Self {
        use tokio::io::AsyncBufReadExt;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            lines,
            seen: Vec::new(),
            reader,
        }
    }

    /// Waits for a line that contains `needle`; panics (with what was printed) if stderr
    /// ends first.
    pub async fn wait_for(&mut self, needle: &str) {
        while let Some(line) = self.lines.recv().await {
            let found = line.contains(needle);
            self.seen.push(line);
            if found {
                return;
            }
        }
        panic!(
            "stderr ended without a line containing {needle:?}:\n{}",
            self.seen.join("\n")
        );
    }

    /// Everything printed on stderr, once the child has ended.
    pub async fn rest(mut self) -> String {
        watchdog(self.reader).await.expect("stderr reader");
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}
