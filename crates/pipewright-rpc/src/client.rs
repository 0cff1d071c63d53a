//! The client: typed calls over one connection, many in flight at once, matched to their
//! answers by id.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{ConnectOptions, PipeName, PipeStream, ToPipeName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::RpcError;
use crate::frame::{read_frame, Frame, FrameBuf, DEFAULT_MAX_FRAME_SIZE};
use crate::wire::{self, Status};

/// The default time a call waits for its answer.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`Client`] connects and calls.
///
/// ```
/// use std::time::Duration;
/// use pipewright_rpc::ClientOptions;
/// let opts = ClientOptions::new()
///     .connect_timeout(Duration::from_secs(2))
///     .call_timeout(Duration::from_millis(500));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    connect: ConnectOptions,
    call_timeout: Duration,
    max_frame_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect: ConnectOptions::default(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

impl ClientOptions {
    /// The defaults: the core's connect options (5 s of retrying a busy or missing server),
    /// 30 s per call, 16 MiB frames.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long connecting keeps retrying a busy or missing server (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect = self.connect.timeout(timeout);
        self
    }

    /// All the core's connect options at once (the mode must stay byte mode).
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.connect = options;
        self
    }

    /// How long a call waits for its answer unless it says otherwise (default 30 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The largest request sent and answer accepted (default 16 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes.min(u32::MAX as usize);
        self
    }
}

/// A typed RPC client. Cheap to clone; clones share one connection, on which any number of
/// calls can be in flight. A call whose future is dropped is abandoned (its answer, if it
/// comes, is thrown away). When the connection has ended, the next call reconnects.
///
/// ```no_run
/// use pipewright_rpc::{demo, Client};
/// # async fn run() -> Result<(), pipewright_rpc::RpcError> {
/// let client = Client::connect("rpc_demo").await?;
/// let answer: demo::Response = client.request(&demo::Request::Factorial { n: 5 }).await?;
/// assert_eq!(answer, demo::Response::Number(120));
/// let text: demo::Response = client.call("Reverse", &serde_json::json!({"text": "abc"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    name: PipeName,
    options: ClientOptions,
    current: Mutex<Option<Arc<Connection>>>,
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `name` with the default options.
    pub async fn connect(name: impl ToPipeName) -> Result<Client, RpcError> {
        Self::connect_with(name, ClientOptions::default()).await
    }

    /// Connects to `name` with `options`, retrying a busy or missing server until the connect
    /// timeout.
    pub async fn connect_with(
        name: impl ToPipeName,
        options: ClientOptions,
    ) -> Result<Client, RpcError> {
        let client = Client {
            inner: Arc::new(ClientInner {
                name: name.to_pipe_name()?,
                options,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                next_id: AtomicU64::new(1),
            }),
        };
        client.connection().await?;
        Ok(client)
    }

    /// The name this client connects to.
    pub fn name(&self) -> &PipeName {
        &self.inner.name
    }

    /// Calls `method` with `params` and decodes the Ok answer as `R`, within the default call
    /// timeout.
    pub async fn call<P, R>(&self, method: &str, params: &P) -> Result<R, RpcError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with_timeout(method, params, self.inner.options.call_timeout)
            .await
    }

    /// Like [`call`](Self::call), with its own timeout.
    pub async fn call_with_timeout<P, R>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, RpcError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let raw = self
            .exchange(method, timeout, |id| {
                wire::encode_call(method, params, Some(id)).map_err(|e| e.to_string())
            })
            .await?;
        decode(method, &raw)
    }

    /// Sends a request value that serializes as `{"method": ..., "params": ...}` (a
    /// `#[serde(tag = "method", content = "params")]` enum, as pipe-rpc defines them) and
    /// decodes the Ok answer as `R`.
    pub async fn request<Q, R>(&self, request: &Q) -> Result<R, RpcError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_with_timeout(request, self.inner.options.call_timeout)
            .await
    }

    /// Like [`request`](Self::request), with its own timeout.
    pub async fn request_with_timeout<Q, R>(
        &self,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, RpcError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let buf = wire::encode_tagged(request, None).map_err(|detail| RpcError::Encode {
            method: "request".to_owned(),
            detail,
        })?;
        let method = wire::method_of(buf.body());
        let raw = self
            .exchange(&method, timeout, move |id| Ok(wire::with_id(buf, id)))
            .await?;
        decode(&method, &raw)
    }

    /// Drops the current connection (calls in flight on it fail with
    /// [`Disconnected`](RpcError::Disconnected)) and connects again.
    pub async fn reconnect(&self) -> Result<(), RpcError> {
        let old = self
            .inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old {
            old.shared.close("the client reconnected");
        }
        self.connection().await.map(drop)
    }

    /// The live connection, connecting first when there is none or it has ended.
    async fn connection(&self) -> Result<Arc<Connection>, RpcError> {
        if let Some(conn) = self.live_connection() {
            return Ok(conn);
        }
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(conn) = self.live_connection() {
            return Ok(conn);
        }
        let stream =
            pipewright::connect_with(&self.inner.name, &self.inner.options.connect).await?;
        let conn = Arc::new(Connection::start(stream, self.inner.options.max_frame_size));
        *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn live_connection(&self) -> Option<Arc<Connection>> {
        let current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|c| c.is_open()).cloned()
    }

    /// Sends one request frame and waits for its answer's params.
    async fn exchange(
        &self,
        method: &str,
        timeout: Duration,
        encode: impl FnOnce(u64) -> Result<FrameBuf, String>,
    ) -> Result<Box<RawValue>, RpcError> {
        let conn = self.connection().await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id).map_err(|detail| RpcError::Encode {
            method: method.to_owned(),
            detail,
        })?;
        let max = self.inner.options.max_frame_size;
        if frame.body_len() > max {
            return Err(RpcError::Encode {
                method: method.to_owned(),
                detail: format!(
                    "the request is {} bytes, over the {max}-byte frame limit; send less or raise max_frame_size on both ends",
                    frame.body_len()
                ),
            });
        }
        let frame = frame.finish().map_err(|e| RpcError::Encode {
            method: method.to_owned(),
            detail: e.to_string(),
        })?;
        let disconnected = |reason: String| RpcError::Disconnected {
            method: method.to_owned(),
            reason,
        };
        let answer = conn.register(id).map_err(disconnected)?;
        let _abandon_on_drop = Waiting { conn: &conn, id };
        if conn.outgoing.send(frame).is_err() {
            return Err(disconnected(conn.shared.reason()));
        }
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(RpcError::TimedOut {
                method: method.to_owned(),
                timeout,
            }),
            Ok(Err(_)) => Err(disconnected(conn.shared.reason())),
            Ok(Ok(Ok(params))) => Ok(params),
            Ok(Ok(Err(message))) => Err(RpcError::Remote(message)),
        }
    }
}

fn decode<R: DeserializeOwned>(method: &str, raw: &RawValue) -> Result<R, RpcError> {
    serde_json::from_str(raw.get()).map_err(|e| RpcError::Decode {
        method: method.to_owned(),
        detail: format!("{e}; the answer was {}", truncate(raw.get(), 200)),
    })
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An answer: the Ok params, or the Err message.
type Answer = Result<Box<RawValue>, String>;

/// Removes a call's waiter when the call ends in any way, including by being dropped.
struct Waiting<'a> {
    conn: &'a Connection,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.conn.shared.lock().waiters.remove(&self.id);
    }
}

/// One connection: a writer task fed by a queue, and a reader task that hands answers to
/// their waiters.
struct Connection {
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiters: HashMap<u64, oneshot::Sender<Answer>>,
    closed: Option<String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection ended; every waiter sees its call fail.
    fn close(&self, reason: &str) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(reason.to_owned());
        }
        state.waiters.clear();
    }

    fn reason(&self) -> String {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| "the connection ended".to_owned())
    }
}

impl Connection {
    fn start(stream: PipeStream, max_frame_size: usize) -> Connection {
        let (read_half, write_half) = tokio::io::split(stream);
        let shared = Arc::new(Shared::default());
        let (outgoing, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(write_half, queue, shared.clone()));
        let reader = tokio::spawn(read_answers(read_half, shared.clone(), max_frame_size));
        Connection {
            outgoing,
            shared,
            reader,
        }
    }

    fn is_open(&self) -> bool {
        !self.outgoing.is_closed() && self.shared.lock().closed.is_none()
    }

    fn register(&self, id: u64) -> Result<oneshot::Receiver<Answer>, String> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.shared.lock();
        if let Some(reason) = &state.closed {
            return Err(reason.clone());
        }
        state.waiters.insert(id, tx);
        Ok(rx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn write_requests(
    write_half: WriteHalf<PipeStream>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(frame) = queue.recv().await {
        let mut result = w.write_all(&frame).await;
        if result.is_ok() && queue.is_empty() {
            result = w.flush().await;
        }
        if let Err(e) = result {
            shared.close(&format!("sending failed: {e}"));
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_answers(read_half: ReadHalf<PipeStream>, shared: Arc<Shared>, max_frame_size: usize) {
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let reason = loop {
        let body = match read_frame(&mut reader, max_frame_size).await {
            Ok(Some(Frame::Body(body))) => body,
            Ok(Some(Frame::Oversize { len })) => {
                break format!(
                    "the server sent a {len}-byte answer, over the {max_frame_size}-byte frame limit; raise the client's max_frame_size"
                )
            }
            Ok(None) => break "the server closed the connection".to_owned(),
            Err(e) => break e.to_string(),
        };
        let envelope = match wire::decode_response(&body) {
            Ok(envelope) => envelope,
            Err(message) => break message,
        };
        let answer: Answer = match envelope.status {
            Status::Ok => Ok(envelope
                .params
                .map(|p| p.to_owned())
                .unwrap_or_else(null_value)),
            Status::Err => Err(envelope.params.map_or_else(String::new, |p| {
                serde_json::from_str::<String>(p.get()).unwrap_or_else(|_| p.get().to_owned())
            })),
        };
        let mut state = shared.lock();
        let waiter = match envelope.id {
            Some(id) => state.waiters.remove(&id),
            // A server without ids (pipe-rpc's own) answers in order: the oldest call.
            None => {
                let oldest = state.waiters.keys().min().copied();
                oldest.and_then(|id| state.waiters.remove(&id))
            }
        };
        drop(state);
        if let Some(waiter) = waiter {
            let _ = waiter.send(answer);
        }
    };
    tracing::debug!(%reason, "rpc connection ended");
    shared.close(&reason);
}

fn null_value() -> Box<RawValue> {
    Box::<RawValue>::default()
}
