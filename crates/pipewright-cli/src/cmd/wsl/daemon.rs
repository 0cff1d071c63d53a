//! The Linux side of `pipewright wsl`: one daemon that starts the Windows host once, keeps
//! it running (restarts with backoff when it dies), listens on the configured Unix sockets
//! and opens one multiplexed stream per accepted connection.
//!
//! ```ignore
//! let daemon = Daemon::new(launch, ExtensionSetting::Auto, 0);
//! daemon.serve(spec)?;   // listen on spec.path, forward to spec.target
//! daemon.run().await;    // until daemon.stop() (`pipewright wsl down`, a signal)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pipewright::{Listener, PipeStream};
use serde::Serialize;
use tokio::process::Command;
use tokio::sync::watch;

use super::agent::{self, ExtensionMode};
use super::config::{ExtensionSetting, Kind, SocketSpec};
use super::launch::Launch;
use super::mux::{self, Duplex, Link, MuxStream};
use crate::join::{join, AfterEof, Policy, Side};

/// How long a connection waits for the Windows host while it (re)starts.
const LINK_WAIT: Duration = Duration::from_secs(15);
/// The first restart delay; it doubles on each quick failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A host that ran this long was healthy: the next restart starts from [`FIRST_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// After the target's end of stream, how long a client may still send (as `bridge -t`).
const LINGER: Duration = Duration::from_secs(1);

/// The Windows host process as `status` reports it.
#[derive(Debug, Default)]
struct HostState {
    pid: Option<u32>,
    since: Option<Instant>,
    starts: u64,
    last_exit: Option<String>,
}

/// What the daemon knows of a socket's ssh-agent extension handling.
#[derive(Debug, Clone)]
struct ExtensionState {
    mode: Option<ExtensionMode>,
    reason: String,
}

/// One socket the daemon serves, with its counters.
struct Served {
    spec: SocketSpec,
    connections: AtomicU64,
    active: AtomicU64,
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    extensions: Mutex<ExtensionState>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Served {
    /// Counts what a connection that ended cleanly moved.
    fn moved(&self, to_target: u64, from_target: u64) {
        self.bytes_to_target.fetch_add(to_target, Ordering::Relaxed);
        self.bytes_from_target
            .fetch_add(from_target, Ordering::Relaxed);
    }

    fn fail(&self, message: String) {
        tracing::warn!("{}", message);
        self.failures.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(message);
    }
}

struct Shared {
    launch: Launch,
    verbose: u8,
    setting: ExtensionSetting,
    link: watch::Sender<Option<Link>>,
    host: Mutex<HostState>,
    sockets: Mutex<Vec<Arc<Served>>>,
    stop: watch::Sender<bool>,
    started: Instant,
    started_at: SystemTime,
}

/// Why a socket could not be served, with the exit code that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError {
    /// `exit::ALREADY_IN_USE` when another server (or another target) has the path, else
    /// `exit::FAILURE`.
    pub code: u8,
    /// What went wrong and the fix.
    pub message: String,
}

impl ServeError {
    fn in_use(message: String) -> Self {
        ServeError {
            code: crate::exit::ALREADY_IN_USE,
            message,
        }
    }

    fn other(message: String) -> Self {
        ServeError {
            code: crate::exit::FAILURE,
            message,
        }
    }
}

/// The daemon: cheap to clone, every clone is the same daemon.
#[derive(Clone)]
pub struct Daemon {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Daemon {
    /// A daemon that will start the host with `launch` (an executable with `verbose` times
    /// `-v`).
    pub fn new(launch: Launch, setting: ExtensionSetting, verbose: u8) -> Self {
        Daemon {
            shared: Arc::new(Shared {
                launch,
                verbose,
                setting,
                link: watch::channel(None).0,
                host: Mutex::new(HostState::default()),
                sockets: Mutex::new(Vec::new()),
                stop: watch::channel(false).0,
                started: Instant::now(),
                started_at: SystemTime::now(),
            }),
        }
    }

    /// Starts serving `spec` (binding its socket, replacing a stale socket file). Serving a
    /// path that is already served with the same target is a no-op; with another target it
    /// is an error.
    pub fn serve(&self, spec: SocketSpec) -> Result<(), ServeError> {
        let mut sockets = lock(&self.shared.sockets);
        if let Some(s) = sockets.iter().find(|s| s.spec.path == spec.path) {
            if s.spec == spec {
                return Ok(());
            }
            return Err(ServeError::in_use(format!(
                "{} is already served, to {} ({}); `pipewright wsl down` first to change it",
                spec.path.display(),
                s.spec.target,
                s.spec.kind.as_str()
            )));
        }
        if let Some(parent) = spec.path.parent() {
            super::paths::private_dir(parent).map_err(ServeError::other)?;
        }
        let name = pipewright::PipeName::from_path(&spec.path)
            .map_err(|e| ServeError::other(e.to_string()))?;
        let listener = Listener::bind(name).map_err(|e| {
            let message = format!("cannot listen on {}: {e}", spec.path.display());
            match e.kind() {
                pipewright::ErrorKind::AlreadyInUse => ServeError::in_use(message),
                _ => ServeError::other(message),
            }
        })?;
        let extensions = match self.shared.setting {
            ExtensionSetting::Forward => ExtensionState {
                mode: Some(ExtensionMode::Forward),
                reason: "set by the ssh_extensions setting (forward)".into(),
            },
            ExtensionSetting::Fail => ExtensionState {
                mode: Some(ExtensionMode::Fail),
                reason: "set by the ssh_extensions setting (fail)".into(),
            },
            ExtensionSetting::Auto => ExtensionState {
                mode: None,
                reason: "not asked yet: the agent is asked when the Windows host starts".into(),
            },
        };
        let served = Arc::new(Served {
            spec,
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            bytes_to_target: AtomicU64::new(0),
            bytes_from_target: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
            extensions: Mutex::new(extensions),
            task: Mutex::new(None),
        });
        tracing::info!(socket = %served.spec.path.display(), target = %served.spec.target, "serving");
        let task = tokio::spawn(accept_loop(self.clone(), served.clone(), listener));
        *lock(&served.task) = Some(task.abort_handle());
        if served.spec.kind == Kind::SshAgent
            && self.shared.setting == ExtensionSetting::Auto
            && self.shared.link.borrow().is_some()
        {
            tokio::spawn(probe_extensions(self.clone(), served.clone()));
        }
        sockets.push(served);
        Ok(())
    }

    /// Runs the host supervisor until [`Daemon::stop`]; then closes every socket.
    pub async fn run(&self) {
        let mut stop = self.shared.stop.subscribe();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let ran = tokio::select! {
                ran = self.run_host_once() => ran,
                _ = stop.wait_for(|s| *s) => break,
            };
            if ran >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            tracing::warn!("restarting the Windows host in {backoff:?}");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.shared.link.send_replace(None);
        for s in lock(&self.shared.sockets).drain(..) {
            if let Some(task) = lock(&s.task).take() {
                task.abort();
            }
        }
        // Let the aborted accept loops drop their listeners (which removes the socket files).
        tokio::task::yield_now().await;
    }

    /// Asks [`Daemon::run`] to end.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Starts the host, serves its link until it ends and says how long it ran.
    async fn run_host_once(&self) -> Duration {
        let began = Instant::now();
        let mut command: Command = self.shared.launch.command(self.shared.verbose);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let why = format!(
                    "cannot start the Windows host `{}`: {e}",
                    self.shared.launch
                );
                tracing::error!("{why}");
                lock(&self.shared.host).last_exit = Some(why);
                return began.elapsed();
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return began.elapsed();
        };
        let pid = child.id();
        {
            let mut host = lock(&self.shared.host);
            host.pid = pid;
            host.since = Some(Instant::now());
            host.starts += 1;
        }
        tracing::info!(pid, command = %self.shared.launch, "Windows host started");
        let (link, driver) = mux::client(Duplex::new(Box::new(stdout), Box::new(stdin)));
        self.shared.link.send_replace(Some(link));
        self.reprobe();
        let why = tokio::select! {
            why = driver => why,
            status = child.wait() => match status {
                Ok(s) => format!("the Windows host exited ({s})"),
                Err(e) => format!("cannot wait for the Windows host: {e}"),
            },
        };
        self.shared.link.send_replace(None);
        let _ = child.start_kill();
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let why = format!("{why}; process {} ended: {status}", pid.unwrap_or(0));
        tracing::warn!("{why}");
        let mut host = lock(&self.shared.host);
        host.pid = None;
        host.since = None;
        host.last_exit = Some(why);
        began.elapsed()
    }

    /// After a host start: forget what auto-detected agents answered and ask again.
    fn reprobe(&self) {
        if self.shared.setting != ExtensionSetting::Auto {
            return;
        }
        for s in lock(&self.shared.sockets).iter() {
            if s.spec.kind == Kind::SshAgent {
                *lock(&s.extensions) = ExtensionState {
                    mode: None,
                    reason: "not decided yet: the agent is being asked".into(),
                };
                tokio::spawn(probe_extensions(self.clone(), s.clone()));
            }
        }
    }

    /// The current link to the host, waiting for it while the host (re)starts.
    async fn link(&self) -> Option<Link> {
        let mut rx = self.shared.link.subscribe();
        let wait = async {
            rx.wait_for(|l| l.is_some())
                .await
                .ok()
                .and_then(|l| l.clone())
        };
        tokio::time::timeout(LINK_WAIT, wait).await.ok().flatten()
    }

    /// Opens a stream to `served`'s target, logging and recording a failure.
    async fn open(&self, served: &Served) -> Option<MuxStream> {
        let Some(link) = self.link().await else {
            served.fail(format!(
                "{}: no Windows host is running (last exit: {}); connection closed",
                served.spec.path.display(),
                lock(&self.shared.host)
                    .last_exit
                    .as_deref()
                    .unwrap_or("none")
            ));
            return None;
        };
        match mux::open_target(&link, &served.spec.target).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                served.fail(format!(
                    "{} -> {}: {e}; connection closed",
                    served.spec.path.display(),
                    served.spec.target
                ));
                None
            }
        }
    }

    /// What `pipewright wsl status` shows.
    pub fn status(&self) -> Status {
        let host = lock(&self.shared.host);
        let sockets = lock(&self.shared.sockets)
            .iter()
            .map(|s| {
                let ext = lock(&s.extensions).clone();
                SocketStatus {
                    path: s.spec.path.display().to_string(),
                    target: s.spec.target.clone(),
                    kind: s.spec.kind.as_str().to_string(),
                    connections: s.connections.load(Ordering::Relaxed),
                    active: s.active.load(Ordering::Relaxed),
                    failures: s.failures.load(Ordering::Relaxed),
                    bytes_to_target: s.bytes_to_target.load(Ordering::Relaxed),
                    bytes_from_target: s.bytes_from_target.load(Ordering::Relaxed),
                    last_error: lock(&s.last_error).clone(),
                    ssh_extensions: (s.spec.kind == Kind::SshAgent).then(|| ExtensionStatus {
                        mode: ext.mode.map_or("undecided", |m| m.as_str()).to_string(),
                        reason: ext.reason,
                    }),
                }
            })
            .collect();
        Status {
            daemon_pid: std::process::id(),
            daemon_uptime_secs: self.shared.started.elapsed().as_secs(),
            daemon_started_unix: self
                .shared
                .started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            windows_host: HostStatus {
                command: self.shared.launch.to_string(),
                pid: host.pid,
                uptime_secs: host.since.map(|s| s.elapsed().as_secs()),
                starts: host.starts,
                restarts: host.starts.saturating_sub(1),
                last_exit: host.last_exit.clone(),
            },
            sockets,
        }
    }
}

/// `pipewright wsl status --json`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Status {
    /// The daemon's process id.
    pub daemon_pid: u32,
    /// Seconds since the daemon started.
    pub daemon_uptime_secs: u64,
    /// When the daemon started (seconds since 1970).
    pub daemon_started_unix: u64,
    /// The Windows host process.
    pub windows_host: HostStatus,
    /// Each socket served.
    pub sockets: Vec<SocketStatus>,
}

/// The Windows host process in [`Status`].
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct HostStatus {
    /// How it is started.
    pub command: String,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    /// Seconds since it started, while it runs.
    pub uptime_secs: Option<u64>,
    /// How many times it was started.
    pub starts: u64,
    /// Starts after the first.
    pub restarts: u64,
    /// Why it last ended.
    pub last_exit: Option<String>,
}

/// One socket in [`Status`].
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct SocketStatus {
    /// The Unix socket.
    pub path: String,
    /// Its Windows-side target.
    pub target: String,
    /// `raw` or `ssh-agent`.
    pub kind: String,
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections that failed: the target could not be reached, or (ssh-agent sockets) a
    /// client or agent broke the protocol.
    pub failures: u64,
    /// Bytes from clients to the target, counted when each connection ends cleanly.
    pub bytes_to_target: u64,
    /// Bytes from the target to clients, counted when each connection ends cleanly.
    pub bytes_from_target: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// For ssh-agent sockets: how extension requests are handled, and why.
    pub ssh_extensions: Option<ExtensionStatus>,
}

/// How a socket handles ssh-agent extension requests.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ExtensionStatus {
    /// `forward`, `fail` or `undecided`.
    pub mode: String,
    /// Why.
    pub reason: String,
}

async fn accept_loop(daemon: Daemon, served: Arc<Served>, listener: Listener) {
    loop {
        match listener.accept().await {
            Ok(client) => {
                tokio::spawn(serve_connection(daemon.clone(), served.clone(), client));
            }
            Err(e) => {
                served.fail(format!(
                    "{}: accept failed: {e}",
                    served.spec.path.display()
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Counts a connection as active while it lives.
struct Active<'a>(&'a Served);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(daemon: Daemon, served: Arc<Served>, client: PipeStream) {
    served.connections.fetch_add(1, Ordering::Relaxed);
    served.active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(&served);
    let Some(stream) = daemon.open(&served).await else {
        return;
    };
    let label = served.spec.path.display().to_string();
    match served.spec.kind {
        Kind::Raw => {
            let left = Side::from_pipe(label.clone(), client);
            let right = Side::from_stream(served.spec.target.clone(), stream, true, false);
            // After the client's end of stream the host decides when the stream ends (it
            // knows whether the target can be told), so this side waits for it.
            let policy = Policy {
                after_left_eof: AfterEof::Wait,
                ..Policy::bridge(LINGER)
            };
            match join(left, right, &policy).await {
                Ok(totals) => served.moved(totals.left_to_right, totals.right_to_left),
                Err(e) => tracing::info!(socket = %label, "connection ended: {e}"),
            }
        }
        Kind::SshAgent => {
            let mode = match extension_mode(&daemon, &served).await {
                Some(mode) => mode,
                None => ExtensionMode::Fail,
            };
            match agent::proxy(client, stream, mode, &label).await {
                Ok(totals) => served.moved(totals.bytes_to_agent, totals.bytes_to_client),
                Err(e) => served.fail(format!("{label}: ssh-agent connection closed: {e}")),
            }
        }
    }
}

/// The socket's extension mode, asking the agent first when nobody has yet.
async fn extension_mode(daemon: &Daemon, served: &Arc<Served>) -> Option<ExtensionMode> {
    if let Some(mode) = lock(&served.extensions).mode {
        return Some(mode);
    }
    probe_extensions(daemon.clone(), served.clone()).await;
    lock(&served.extensions).mode
}

/// Asks the agent behind `served` whether it understands extension requests, on a
/// connection of its own, and records the answer.
async fn probe_extensions(daemon: Daemon, served: Arc<Served>) {
    let Some(link) = daemon.link().await else {
        return;
    };
    let stream = match mux::open_target(&link, &served.spec.target).await {
        Ok(stream) => stream,
        Err(e) => {
            lock(&served.extensions).reason = format!(
                "not decided: the agent could not be reached to ask ({e}); asked again on the next connection"
            );
            return;
        }
    };
    let (mode, reason) = agent::probe(stream).await;
    tracing::info!(socket = %served.spec.path.display(), mode = mode.as_str(), "{reason}");
    *lock(&served.extensions) = ExtensionState {
        mode: Some(mode),
        reason,
    };
}
