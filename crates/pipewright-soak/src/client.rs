//! The client side: one operation against one target with one behaviour, and the killable
//! client process (`pipewright-soak client TAG TARGET SEED`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use pipewright::{connect_with, ConnectOptions, ErrorKind, PipeStream};
use pipewright_http::{Endpoint, PipeConnector};
use pipewright_netipc::client::{Client as NetipcClient, ClientConfig, ClientError};
use pipewright_rpc::RpcError;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::{sleep, timeout};

use crate::names::{self, Names};
use crate::proto::{self, Rng};

/// What a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The pipewright `Listener` echo/sink server.
    Listener,
    /// The same server through `bridge npipe-listen -> tcp -> tcp-listen -> npipe`.
    Bridge,
    /// The HTTP server.
    Http,
    /// The HTTP forwarder (pipe -> pipe upstream: the HTTP server).
    Forward,
    /// The RPC server.
    Rpc,
    /// The netipc managed server, baseline profile.
    NetipcBase,
    /// The netipc managed server, shared memory offered and preferred.
    NetipcShm,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Listener,
        Target::Bridge,
        Target::Http,
        Target::Forward,
        Target::Rpc,
        Target::NetipcBase,
        Target::NetipcShm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Listener => "listener",
            Target::Bridge => "bridge",
            Target::Http => "http",
            Target::Forward => "forward",
            Target::Rpc => "rpc",
            Target::NetipcBase => "netipc",
            Target::NetipcShm => "netipc-shm",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn index(self) -> usize {
        Target::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// How a client behaves in one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A checked transfer.
    Normal,
    /// A checked transfer dropped after a random 1-30 ms (counted as done if it finished).
    Cancel,
    /// A checked transfer read in small pieces with pauses.
    Slow,
    /// Connects, makes the server send (or sends without reading answers), never reads, drops.
    NeverRead,
    /// A client process killed mid-transfer.
    Kill,
}

/// How one operation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Checked: every byte arrived, this many in both directions.
    Done(u64),
    /// Dropped mid-flight on purpose.
    Cancelled,
    /// Never read, dropped on purpose.
    Abandoned,
    /// The client process was killed mid-transfer.
    Killed,
    ConnectFailed(String),
    /// Bytes lost or changed.
    Mismatch(String),
    /// Anything else that went wrong.
    Error(String),
}

/// Per-worker client state: the pooled HTTP client, the RPC client and the netipc clients.
pub struct Worker {
    pub rng: Rng,
    pub names: Names,
    http: HttpClient<PipeConnector, Full<Bytes>>,
    rpc: Option<pipewright_rpc::Client>,
    netipc: [Option<NetipcClient>; 2],
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn connect_options() -> ConnectOptions {
    ConnectOptions::new().timeout(CONNECT_TIMEOUT)
}

async fn connect(name: &str) -> Result<PipeStream, Outcome> {
    connect_with(name, &connect_options())
        .await
        .map_err(|e| Outcome::ConnectFailed(format!("{name}: {e}")))
}

fn netipc_client(dir: &Path, shm: bool) -> NetipcClient {
    let mut cfg = ClientConfig::new(names::netipc_endpoint(shm));
    cfg.connect_attempts = 400;
    cfg.connect_interval = Duration::from_millis(25);
    cfg.call_timeout = Duration::from_secs(30);
    let service = if shm {
        names::NETIPC_SHM
    } else {
        names::NETIPC_BASE
    };
    NetipcClient::new(dir, service, cfg)
}

/// A length: mostly small, some medium, a few large.
fn pick_len(rng: &mut Rng) -> u64 {
    match rng.range(0, 100) {
        0..60 => rng.range(1, 64 << 10),
        60..95 => rng.range(64 << 10, 1 << 20),
        _ => rng.range(1 << 20, 4 << 20),
    }
}

/// A string of `len` letters and digits from the seed.
fn text(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut r = Rng::new(seed);
    (0..len)
        .map(|_| ALPHABET[(r.next_u64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

impl Worker {
    pub fn new(seed: u64, names: Names) -> Worker {
        Worker {
            rng: Rng::new(seed),
            names,
            http: pipewright_http::client(),
            rpc: None,
            netipc: [None, None],
        }
    }

    /// One operation (the `Kill` behaviour is the orchestrator's, which spawns processes).
    pub async fn run(&mut self, target: Target, behaviour: Behaviour) -> Outcome {
        let cancel_after = Duration::from_millis(self.rng.range(1, 30));
        let slow = behaviour == Behaviour::Slow;
        let op = async {
            match behaviour {
                Behaviour::NeverRead => self.never_read(target).await,
                _ => self.checked(target, slow).await,
            }
        };
        if behaviour == Behaviour::Cancel {
            match timeout(cancel_after, op).await {
                Ok(o) => o,
                Err(_) => {
                    // A netipc client is not documented as cancel-safe: start a fresh one.
                    self.netipc = [None, None];
                    Outcome::Cancelled
                }
            }
        } else {
            op.await
        }
    }

    async fn checked(&mut self, target: Target, slow: bool) -> Outcome {
        match target {
            Target::Listener => {
                let name = self.names.echo.clone();
                self.stream_checked(&name, slow).await
            }
            Target::Bridge => {
                let name = self.names.front.clone();
                self.stream_checked(&name, slow).await
            }
            Target::Http => {
                let name = self.names.http.clone();
                self.http_checked(&name, slow).await
            }
            Target::Forward => {
                let name = self.names.fwd.clone();
                self.http_checked(&name, slow).await
            }
            Target::Rpc => {
                if slow {
                    self.rpc_slow().await
                } else {
                    self.rpc_checked().await
                }
            }
            Target::NetipcBase => self.netipc_checked(false).await,
            Target::NetipcShm => self.netipc_checked(true).await,
        }
    }

    async fn stream_checked(&mut self, name: &str, slow: bool) -> Outcome {
        let seed = self.rng.next_u64();
        let ops = [
            proto::OP_SINK,
            proto::OP_ECHO,
            proto::OP_DROP,
            proto::OP_SHUTDOWN,
        ];
        let (op, len) = if slow {
            let op = if self.rng.chance(50) {
                proto::OP_DROP
            } else {
                proto::OP_SHUTDOWN
            };
            (op, self.rng.range(256 << 10, 2 << 20))
        } else {
            (ops[self.rng.range(0, 4) as usize], pick_len(&mut self.rng))
        };
        let mut pause = Rng::new(seed ^ 1);
        let mut s = match connect(name).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        let what = format!("{name} op {} len {len}", op as char);
        let io = |e: std::io::Error| Outcome::Error(format!("{what}: {e}"));
        if let Err(e) = s.write_all(&proto::header(op, len, seed)).await {
            return io(e);
        }
        match op {
            proto::OP_SINK => {
                let sent = match proto::write_data(&mut s, seed, len).await {
                    Ok(d) => d,
                    Err(e) => return io(e),
                };
                let mut got = [0u8; 32];
                match s.read_exact(&mut got).await {
                    Ok(_) if got == sent => Outcome::Done(len),
                    Ok(_) => Outcome::Mismatch(format!("{what}: the server's checksum differs")),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Outcome::Mismatch(
                        format!("{what}: no checksum: the server read fewer bytes than written"),
                    ),
                    Err(e) => io(e),
                }
            }
            proto::OP_ECHO => {
                let (mut r, mut w) = tokio::io::split(s);
                let writer = async {
                    let d = proto::write_data(&mut w, seed, len).await;
                    (d, w)
                };
                let (written, read) = tokio::join!(writer, proto::read_digest(&mut r, len));
                let (sent, _w) = written;
                match (sent, read) {
                    (Ok(sent), Ok((got, d))) if got == len && d == sent => Outcome::Done(2 * len),
                    (Ok(_), Ok((got, _))) if got < len => Outcome::Mismatch(format!(
                        "{what}: the echo ended after {got} of {len} bytes"
                    )),
                    (Ok(_), Ok(_)) => Outcome::Mismatch(format!("{what}: the echo differs")),
                    (Err(e), _) | (_, Err(e)) => io(e),
                }
            }
            _ => {
                let read = if slow {
                    let mut h = Sha256::new();
                    let mut buf = vec![0u8; 16 << 10];
                    let mut got = 0u64;
                    loop {
                        let want = pause.range(1 << 10, 16 << 10) as usize;
                        match s.read(&mut buf[..want]).await {
                            Ok(0) => break Ok((got, h.finalize().into())),
                            Ok(n) => {
                                h.update(&buf[..n]);
                                got += n as u64;
                            }
                            Err(e) => break Err(e),
                        }
                        sleep(Duration::from_millis(pause.range(0, 3))).await;
                    }
                } else {
                    proto::read_digest(&mut s, len + 1).await
                };
                match read {
                    Ok((got, d)) if got == len && d == proto::expected_digest(seed, len) => {
                        Outcome::Done(len)
                    }
                    Ok((got, _)) if got != len => Outcome::Mismatch(format!(
                        "{what}: {got} of {len} bytes arrived, then end of stream"
                    )),
                    Ok(_) => Outcome::Mismatch(format!("{what}: the bytes differ")),
                    Err(e) => Outcome::Mismatch(format!(
                        "{what}: the read failed ({e}) before all {len} bytes arrived"
                    )),
                }
            }
        }
    }

    fn uri(name: &str, path: &str) -> Result<hyper::Uri, Outcome> {
        Endpoint::parse(name)
            .map_err(|e| Outcome::Error(format!("{name}: {e}")))?
            .uri(path)
            .map_err(|e| Outcome::Error(format!("{name}{path}: {e}")))
    }

    async fn http_checked(&mut self, name: &str, slow: bool) -> Outcome {
        let seed = self.rng.next_u64();
        let kind = if slow { 2 } else { self.rng.range(0, 3) };
        let len = if slow {
            self.rng.range(256 << 10, 2 << 20)
        } else {
            pick_len(&mut self.rng).min(1 << 20)
        };
        let (method, path, body) = match kind {
            0 | 1 => {
                let mut data = vec![0u8; len as usize];
                Rng::new(seed).fill(&mut data);
                let path = if kind == 0 { "/sum" } else { "/echo" };
                (Method::POST, path.to_owned(), Bytes::from(data))
            }
            _ => (
                Method::GET,
                format!("/gen?len={len}&seed={seed}"),
                Bytes::new(),
            ),
        };
        let what = format!(
            "{name} {method} {} len {len}",
            path.split('?').next().unwrap_or("")
        );
        let uri = match Self::uri(name, &path) {
            Ok(u) => u,
            Err(o) => return o,
        };
        let expected_sum = Sha256::digest(&body);
        let req = match Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
        {
            Ok(r) => r,
            Err(e) => return Outcome::Error(format!("{what}: {e}")),
        };
        let resp = match self.http.request(req).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Outcome::ConnectFailed(format!("{what}: {e} ({:?})", e))
            }
            Err(e) => return Outcome::Error(format!("{what}: {e} ({e:?})")),
        };
        if resp.status() != StatusCode::OK {
            return Outcome::Error(format!("{what}: status {}", resp.status()));
        }
        let mut body = resp.into_body();
        let mut h = Sha256::new();
        let mut got = 0u64;
        let mut collected = Vec::new();
        let mut pause = Rng::new(seed ^ 2);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        h.update(d);
                        got += d.len() as u64;
                        if kind == 0 {
                            collected.extend_from_slice(d);
                        }
                    }
                }
                Err(e) => {
                    return Outcome::Mismatch(format!(
                        "{what}: the body failed after {got} bytes: {e}"
                    ))
                }
            }
            if slow {
                sleep(Duration::from_millis(pause.range(0, 3))).await;
            }
        }
        let ok = match kind {
            0 => collected == proto::hex(&expected_sum).as_bytes(),
            1 => got == len && h.finalize()[..] == expected_sum[..],
            _ => got == len && h.finalize()[..] == proto::expected_digest(seed, len)[..],
        };
        if ok {
            Outcome::Done(2 * len)
        } else {
            Outcome::Mismatch(format!("{what}: the checksum differs ({got} bytes came)"))
        }
    }

    fn rpc_error(e: RpcError) -> Outcome {
        match &e {
            RpcError::Transport(t)
                if matches!(
                    t.kind(),
                    ErrorKind::NotFound | ErrorKind::Busy | ErrorKind::TimedOut
                ) =>
            {
                Outcome::ConnectFailed(format!("rpc: {e}"))
            }
            _ => Outcome::Error(format!("rpc: {e}")),
        }
    }

    async fn rpc_client(&mut self) -> Result<&pipewright_rpc::Client, Outcome> {
        if self.rpc.is_none() {
            let opts = pipewright_rpc::ClientOptions::new()
                .connect_timeout(CONNECT_TIMEOUT)
                .call_timeout(Duration::from_secs(30));
            let c = pipewright_rpc::Client::connect_with(self.names.rpc.as_str(), opts)
                .await
                .map_err(Self::rpc_error)?;
            self.rpc = Some(c);
        }
        self.rpc
            .as_ref()
            .ok_or_else(|| Outcome::Error("rpc: no client".into()))
    }

    async fn rpc_checked(&mut self) -> Outcome {
        let seed = self.rng.next_u64();
        let len = self.rng.range(1, 64 << 10) as usize;
        let sum = self.rng.chance(50);
        let payload = text(seed, len);
        let client = match self.rpc_client().await {
            Ok(c) => c,
            Err(o) => return o,
        };
        if sum {
            match client.call::<_, String>("Sum", &payload).await {
                Ok(h) if h == proto::hex(&Sha256::digest(payload.as_bytes())) => {
                    Outcome::Done(len as u64)
                }
                Ok(_) => Outcome::Mismatch(format!("rpc Sum len {len}: the checksum differs")),
                Err(e) => Self::rpc_error(e),
            }
        } else {
            match client.call::<_, String>("Echo", &payload).await {
                Ok(back) if back == payload => Outcome::Done(2 * len as u64),
                Ok(back) => Outcome::Mismatch(format!(
                    "rpc Echo len {len}: {} bytes came back, different",
                    back.len()
                )),
                Err(e) => Self::rpc_error(e),
            }
        }
    }

    /// Pipelines Echo requests on a raw connection, then reads the answers slowly.
    async fn rpc_slow(&mut self) -> Outcome {
        let seed = self.rng.next_u64();
        let count = self.rng.range(2, 16);
        let mut s = match connect(&self.names.rpc).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        let mut sent = Vec::new();
        let mut total = 0u64;
        for id in 0..count {
            let payload = text(seed ^ id, self.rng.range(1, 64 << 10) as usize);
            let frame = rpc_frame(&payload, id);
            total += payload.len() as u64;
            sent.push(payload);
            if let Err(e) = s.write_all(&frame).await {
                return Outcome::Error(format!("rpc raw write: {e}"));
            }
        }
        let mut pause = Rng::new(seed ^ 3);
        let mut answered = vec![false; count as usize];
        for _ in 0..count {
            let mut len = [0u8; 4];
            if let Err(e) = s.read_exact(&mut len).await {
                return Outcome::Mismatch(format!("rpc raw: an answer is missing: {e}"));
            }
            let len = u32::from_le_bytes(len) as usize;
            let mut body = vec![0u8; len];
            let mut at = 0;
            while at < len {
                let want = (len - at).min(pause.range(1 << 10, 8 << 10) as usize);
                match s.read(&mut body[at..at + want]).await {
                    Ok(0) => {
                        return Outcome::Mismatch("rpc raw: end of stream in an answer".into())
                    }
                    Ok(n) => at += n,
                    Err(e) => return Outcome::Error(format!("rpc raw read: {e}")),
                }
                sleep(Duration::from_millis(pause.range(0, 2))).await;
            }
            let v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return Outcome::Mismatch(format!("rpc raw: answer is not JSON: {e}")),
            };
            let id = v.get("id").and_then(|i| i.as_u64()).unwrap_or(u64::MAX);
            let ok = v.get("status").and_then(|s| s.as_str()) == Some("Ok")
                && (id as usize) < sent.len()
                && v.get("params").and_then(|p| p.as_str()) == Some(sent[id as usize].as_str());
            if !ok || answered[id as usize] {
                return Outcome::Mismatch(format!("rpc raw: a wrong answer for id {id}"));
            }
            answered[id as usize] = true;
        }
        Outcome::Done(2 * total)
    }

    async fn netipc_checked(&mut self, shm: bool) -> Outcome {
        let seed = self.rng.next_u64();
        let len = self.rng.range(1, 60 << 10) as usize;
        let mut payload = vec![0u8; len];
        Rng::new(seed).fill(&mut payload);
        let dir = self.names.netipc_dir.clone();
        let slot = &mut self.netipc[usize::from(shm)];
        let client = slot.get_or_insert_with(|| netipc_client(&dir, shm));
        let label = if shm { "netipc-shm" } else { "netipc" };
        match client.call(1, &payload).await {
            Ok(back) if back == payload => Outcome::Done(2 * len as u64),
            Ok(back) => Outcome::Mismatch(format!(
                "{label} call len {len}: {} bytes came back, different",
                back.len()
            )),
            Err(e) => {
                *slot = None;
                match e {
                    ClientError::NotFound { .. } => Outcome::ConnectFailed(format!("{label}: {e}")),
                    e => Outcome::Error(format!("{label} call len {len}: {e}")),
                }
            }
        }
    }

    async fn never_read(&mut self, target: Target) -> Outcome {
        let hold = Duration::from_millis(self.rng.range(100, 400));
        let seed = self.rng.next_u64();
        let name = match target {
            Target::Listener => self.names.echo.clone(),
            Target::Bridge => self.names.front.clone(),
            Target::Http => self.names.http.clone(),
            Target::Forward => self.names.fwd.clone(),
            Target::Rpc => self.names.rpc.clone(),
            Target::NetipcBase | Target::NetipcShm => {
                let svc = if target == Target::NetipcShm {
                    names::NETIPC_SHM
                } else {
                    names::NETIPC_BASE
                };
                // Connects and never says hello.
                let t = pipewright_netipc::endpoint::connect(&self.names.netipc_dir, svc, 0).await;
                return match t {
                    Ok(t) => {
                        sleep(hold).await;
                        drop(t);
                        Outcome::Abandoned
                    }
                    Err(e) => Outcome::ConnectFailed(format!("{}: {e}", target.name())),
                };
            }
        };
        let mut s = match connect(&name).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        let big: u64 = 16 << 20;
        let _ = timeout(hold, async {
            match target {
                Target::Listener | Target::Bridge => {
                    if seed & 1 == 0 {
                        // The server echoes into a client that never reads.
                        s.write_all(&proto::header(proto::OP_ECHO, big, seed))
                            .await?;
                        proto::write_data(&mut s, seed, big).await?;
                    } else {
                        // The server writes 16 MiB to a client that never reads.
                        s.write_all(&proto::header(proto::OP_DROP, big, seed))
                            .await?;
                    }
                }
                Target::Http | Target::Forward => {
                    let req =
                        format!("GET /gen?len={big}&seed={seed} HTTP/1.1\r\nhost: soak\r\n\r\n");
                    s.write_all(req.as_bytes()).await?;
                }
                _ => {
                    // Pipelined 60 KB Echo requests whose answers are never read.
                    let payload = text(seed, 60 << 10);
                    for id in 0..(big / (60 << 10)) {
                        s.write_all(&rpc_frame(&payload, id)).await?;
                    }
                }
            }
            std::future::pending::<()>().await;
            Ok::<(), std::io::Error>(())
        })
        .await;
        drop(s);
        Outcome::Abandoned
    }
}

fn rpc_frame(payload: &str, id: u64) -> Vec<u8> {
    let json = serde_json::json!({"method": "Echo", "params": payload, "id": id}).to_string();
    let mut frame = (json.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(json.as_bytes());
    frame
}

/// Starts `pipewright-soak client TAG TARGET SEED`, waits until it is mid-transfer, kills
/// it after a random pause.
pub async fn spawn_and_kill(exe: &Path, tag: &str, target: Target, rng: &mut Rng) -> Outcome {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["client", tag, target.name(), &rng.next_u64().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Error(format!("start a client process: {e}")),
    };
    let Some(out) = child.stdout.take() else {
        return Outcome::Error("client process: no stdout".into());
    };
    let mut lines = BufReader::new(out).lines();
    let first = timeout(Duration::from_secs(30), lines.next_line()).await;
    let outcome = match first {
        Ok(Ok(Some(l))) if l == "go" => {
            sleep(Duration::from_millis(rng.range(20, 300))).await;
            Outcome::Killed
        }
        Ok(Ok(Some(l))) if l.starts_with("connect-failed") => {
            Outcome::ConnectFailed(format!("client process for {}: {l}", target.name()))
        }
        Ok(Ok(other)) => Outcome::Error(format!(
            "client process for {} said {other:?} instead of go",
            target.name()
        )),
        Ok(Err(e)) => Outcome::Error(format!("client process stdout: {e}")),
        Err(_) => Outcome::Error(format!(
            "client process for {} did not start its transfer within 30 s",
            target.name()
        )),
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    outcome
}

/// The killable client process: starts an endless transfer to `target`, says `go` once it is
/// under way.
pub async fn killable(tag: &str, target: &str, seed: u64) -> Result<(), String> {
    let names = Names::new(tag);
    let target = Target::parse(target).ok_or_else(|| format!("unknown target {target:?}"))?;
    let go = || println!("go");
    let failed = |e: String| {
        println!("connect-failed {e}");
        Ok(())
    };
    let pace = Duration::from_millis(1);
    match target {
        Target::Listener | Target::Bridge | Target::Http | Target::Forward => {
            let name = match target {
                Target::Listener => &names.echo,
                Target::Bridge => &names.front,
                Target::Http => &names.http,
                _ => &names.fwd,
            };
            let mut s = match connect_with(name.as_str(), &connect_options()).await {
                Ok(s) => s,
                Err(e) => return failed(e.to_string()),
            };
            let head = match target {
                Target::Listener | Target::Bridge => {
                    proto::header(proto::OP_SINK, 1 << 40, seed).to_vec()
                }
                _ => b"POST /sum HTTP/1.1\r\nhost: soak\r\ncontent-length: 1073741824\r\n\r\n"
                    .to_vec(),
            };
            s.write_all(&head).await.map_err(|e| e.to_string())?;
            go();
            let mut d = proto::DataStream::new(seed, 1 << 40);
            loop {
                s.write_all(&d.next_block()[..16 << 10])
                    .await
                    .map_err(|e| e.to_string())?;
                sleep(pace).await;
            }
        }
        Target::Rpc => {
            let opts = pipewright_rpc::ClientOptions::new().connect_timeout(CONNECT_TIMEOUT);
            let c = match pipewright_rpc::Client::connect_with(names.rpc.as_str(), opts).await {
                Ok(c) => c,
                Err(e) => return failed(e.to_string()),
            };
            go();
            let payload = text(seed, 32 << 10);
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let (c, payload) = (c.clone(), payload.clone());
                calls.spawn(async move {
                    loop {
                        if c.call::<_, String>("Echo", &payload).await.is_err() {
                            return;
                        }
                    }
                });
            }
            while calls.join_next().await.is_some() {}
            Err("the rpc calls failed".into())
        }
        Target::NetipcBase | Target::NetipcShm => {
            let shm = target == Target::NetipcShm;
            let mut c = netipc_client(&names.netipc_dir, shm);
            if let Err(e) = c.connect().await {
                return failed(e.to_string());
            }
            go();
            let mut payload = vec![0u8; 32 << 10];
            Rng::new(seed).fill(&mut payload);
            loop {
                c.call(1, &payload).await.map_err(|e| e.to_string())?;
            }
        }
    }
}
