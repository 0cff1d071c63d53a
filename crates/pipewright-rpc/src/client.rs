//! The client: typed calls over one connection, many in flight at once, matched to their
//! answers by id.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{ConnectOptions, PipeName, ToPipeName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::connection::{Connection, Outcome};
use crate::error::RpcError;
use crate::frame::{FrameBuf, DEFAULT_MAX_FRAME_SIZE};
use crate::wire;

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
    pub(crate) connect: ConnectOptions,
    pub(crate) call_timeout: Duration,
    pub(crate) max_frame_size: usize,
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
        let conn = self.connection().await?;
        let id = self.next_id();
        let frame = call_frame(method, params, id, self.inner.options.max_frame_size)?;
        let method = || method.to_owned();
        let raw = self.exchange(&conn, id, &frame, timeout, &method).await?;
        decode(&method, &raw)
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
        let conn = self.connection().await?;
        let id = self.next_id();
        let frame = request_frame(request, id, self.inner.options.max_frame_size)?;
        // The method's name is only needed for an error: read it from the frame then.
        let method = || wire::method_of(frame.body());
        let raw = self.exchange(&conn, id, &frame, timeout, &method).await?;
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
            old.close("the client reconnected");
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

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends request `id` (a sealed frame) and waits for its answer's params. `method`
    /// names the method in errors.
    async fn exchange(
        &self,
        conn: &Connection,
        id: u64,
        frame: &FrameBuf,
        timeout: Duration,
        method: &(dyn Fn() -> String + Sync),
    ) -> Result<Box<RawValue>, RpcError> {
        let disconnected = |reason: String| RpcError::Disconnected {
            method: method(),
            reason,
        };
        // Registered before sending, so the answer cannot come first. Dropping `answer`
        // (also when this future is dropped) abandons the call.
        let answer = conn.register(id, timeout).map_err(disconnected)?;
        // Synchronous: the whole frame is committed to the connection here, or none of it.
        conn.send(frame.frame()).map_err(disconnected)?;
        match answer.await {
            Outcome::Answered(Ok(params)) => Ok(params),
            Outcome::Answered(Err(message)) => Err(RpcError::Remote(message)),
            Outcome::TimedOut => Err(RpcError::TimedOut {
                method: method(),
                timeout,
            }),
            Outcome::Disconnected(reason) => Err(disconnected(reason)),
        }
    }
}

/// The sealed frame of call `id` to `method` with `params`, within the frame limit `max`.
pub(crate) fn call_frame<P: Serialize + ?Sized>(
    method: &str,
    params: &P,
    id: u64,
    max: usize,
) -> Result<FrameBuf, RpcError> {
    let encode_error = |detail| RpcError::Encode {
        method: method.to_owned(),
        detail,
    };
    let mut frame =
        wire::encode_call(method, params, Some(id)).map_err(|e| encode_error(e.to_string()))?;
    seal(&mut frame, max).map_err(encode_error)?;
    Ok(frame)
}

/// The sealed frame of request `id` (a `{"method": ..., "params": ...}` value), within the
/// frame limit `max`.
pub(crate) fn request_frame<Q: Serialize + ?Sized>(
    request: &Q,
    id: u64,
    max: usize,
) -> Result<FrameBuf, RpcError> {
    let mut frame = wire::encode_tagged(request, Some(id)).map_err(|detail| RpcError::Encode {
        method: "request".to_owned(),
        detail,
    })?;
    seal(&mut frame, max).map_err(|detail| RpcError::Encode {
        method: wire::method_of(frame.body()),
        detail,
    })?;
    Ok(frame)
}

/// Checks `frame` against the frame limit `max` and fills in its length, or says why not.
fn seal(frame: &mut FrameBuf, max: usize) -> Result<(), String> {
    if frame.body_len() > max {
        return Err(format!(
            "the request is {} bytes, over the {max}-byte frame limit; send less or raise max_frame_size on both ends",
            frame.body_len()
        ));
    }
    frame.seal().map_err(|e| e.to_string())
}

/// Decodes an Ok answer's params as `R`.
pub(crate) fn decode<R: DeserializeOwned>(
    method: &(dyn Fn() -> String + Sync),
    raw: &RawValue,
) -> Result<R, RpcError> {
    serde_json::from_str(raw.get()).map_err(|e| RpcError::Decode {
        method: method(),
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
