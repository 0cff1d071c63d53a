//! The router: maps a method name to an async handler with serde request and response types,
//! or hands whole requests to a [`Service`] over a tagged enum.

use std::collections::HashMap;
use std::fmt::{self, Display};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::wire::{self, RequestEnvelope};

/// The encoded response frame a handler produces.
pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

/// A service over a `#[serde(tag = "method", content = "params")]` request enum, the way
/// pipe-rpc defines its services. Serve it with [`Router::service`].
///
/// ```
/// use pipewright_rpc::{Router, Service};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// #[serde(tag = "method", content = "params")]
/// enum Request { Add { a: i64, b: i64 } }
///
/// #[derive(Serialize)]
/// enum Response { Number(i64) }
///
/// struct Calc;
/// impl Service for Calc {
///     type Request = Request;
///     type Response = Response;
///     type Error = String;
///     async fn call(&self, req: Request) -> Result<Response, String> {
///         match req {
///             Request::Add { a, b } => a.checked_add(b).map(Response::Number).ok_or("overflow".into()),
///         }
///     }
/// }
/// let router = Router::new().service(Calc);
/// ```
pub trait Service: Send + Sync + 'static {
    /// The request enum, `#[serde(tag = "method", content = "params")]`.
    type Request: DeserializeOwned + Send + 'static;
    /// What an Ok answer carries.
    type Response: Serialize + Send + 'static;
    /// What an Err answer says (its `Display` text is sent).
    type Error: Display + Send + 'static;
    /// Answers one request.
    fn call(
        &self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
}

/// Where and how to encode one answer.
#[derive(Debug)]
pub(crate) struct ReplyTo {
    pub id: Option<u64>,
    pub max_frame: usize,
    pub method: String,
}

impl ReplyTo {
    pub(crate) fn ok<R: Serialize>(&self, value: &R) -> Vec<u8> {
        match wire::encode_ok(value, self.id) {
            Ok(buf) if buf.body_len() <= self.max_frame => self.finish(buf),
            Ok(buf) => self.err(&format!(
                "the answer to {:?} is {} bytes, over the {}-byte frame limit; ask for less or raise the limit on both ends",
                self.method,
                buf.body_len(),
                self.max_frame
            )),
            Err(e) => self.err(&format!(
                "the server could not encode its answer to {:?}: {e}",
                self.method
            )),
        }
    }

    pub(crate) fn err(&self, message: &str) -> Vec<u8> {
        self.finish(wire::encode_err(message, self.id))
    }

    fn finish(&self, buf: crate::frame::FrameBuf) -> Vec<u8> {
        // Bodies here are bounded by max_frame (at most 4 GiB - 1), so the header fits.
        buf.finish().unwrap_or_else(|_| {
            wire::encode_err("answer too large", self.id)
                .finish()
                .unwrap_or_default()
        })
    }
}

/// Runs a handler's future into an encoded answer, turning a panic into an Err answer.
fn reply_future<R, E>(
    fut: impl Future<Output = Result<R, E>> + Send + 'static,
    reply: ReplyTo,
) -> ReplyFuture
where
    R: Serialize,
    E: Display,
{
    Box::pin(async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(Ok(value)) => reply.ok(&value),
            Ok(Err(e)) => reply.err(&e.to_string()),
            Err(_) => reply.err(&format!(
                "the handler for {:?} panicked; see the server's log",
                reply.method
            )),
        }
    })
}

trait ErasedHandler: Send + Sync {
    /// Decodes the params and starts the handler, or says why the params do not fit.
    fn start(&self, params: Option<&RawValue>, reply: ReplyTo) -> Result<ReplyFuture, String>;
}

struct FnHandler<F, P, R, E> {
    f: F,
    _types: PhantomData<fn(P) -> (R, E)>,
}

impl<F, Fut, P, R, E> ErasedHandler for FnHandler<F, P, R, E>
where
    F: Fn(P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: Display + Send + 'static,
{
    fn start(&self, params: Option<&RawValue>, reply: ReplyTo) -> Result<ReplyFuture, String> {
        let text = params.map_or("null", RawValue::get);
        let params: P = serde_json::from_str(text).map_err(|e| {
            format!(
                "invalid params for {:?}: {e}; got {}",
                reply.method,
                truncate(text, 200)
            )
        })?;
        Ok(reply_future((self.f)(params), reply))
    }
}

struct ServiceHandler<S>(Arc<S>);

impl<S: Service> ServiceHandler<S> {
    fn start(&self, body: &[u8], reply: ReplyTo) -> Result<ReplyFuture, String> {
        let request: S::Request = serde_json::from_slice(body).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown variant") {
                format!("unknown method {:?} ({text})", reply.method)
            } else {
                format!("invalid params for {:?}: {text}", reply.method)
            }
        })?;
        let service = self.0.clone();
        Ok(reply_future(
            async move { service.call(request).await },
            reply,
        ))
    }
}

trait ErasedService: Send + Sync {
    fn start(&self, body: &[u8], reply: ReplyTo) -> Result<ReplyFuture, String>;
}

impl<S: Service> ErasedService for ServiceHandler<S> {
    fn start(&self, body: &[u8], reply: ReplyTo) -> Result<ReplyFuture, String> {
        ServiceHandler::start(self, body, reply)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Methods and their handlers. Named handlers are tried first, then the [`Service`], if any.
///
/// ```
/// use pipewright_rpc::Router;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Reverse { text: String }
///
/// let router = Router::new()
///     .handle("Reverse", |p: Reverse| async move {
///         Ok::<_, String>(p.text.chars().rev().collect::<String>())
///     })
///     .handle("Now", |_: ()| async { Ok::<_, String>(42u64) });
/// assert_eq!(router.methods(), ["Now", "Reverse"]);
/// ```
#[derive(Default)]
pub struct Router {
    handlers: HashMap<String, Box<dyn ErasedHandler>>,
    service: Option<Box<dyn ErasedService>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("methods", &self.methods())
            .field("service", &self.service.is_some())
            .finish()
    }
}

/// What the server does with one request frame.
pub(crate) enum Dispatch {
    /// The answer is known already (an error).
    Ready(Vec<u8>),
    /// Run this to get the answer.
    Run(ReplyFuture),
}

impl Router {
    /// An empty router: every method is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `method`. The params decode as `P` (a missing `params` field
    /// decodes as JSON `null`, so `()` takes none); an `Ok(R)` is sent as the answer's params;
    /// an `Err(E)` is sent as its message. A later registration of the same name replaces the
    /// earlier one.
    pub fn handle<P, R, E, F, Fut>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Display + Send + 'static,
    {
        self.handlers.insert(
            method.into(),
            Box::new(FnHandler {
                f: handler,
                _types: PhantomData,
            }),
        );
        self
    }

    /// Serves every method not registered with [`handle`](Self::handle) by decoding the
    /// whole request as `S::Request`.
    pub fn service<S: Service>(mut self, service: S) -> Self {
        self.service = Some(Box::new(ServiceHandler(Arc::new(service))));
        self
    }

    /// The names registered with [`handle`](Self::handle), sorted.
    pub fn methods(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Decodes one request body and starts its handler. Returns the request's id (when it
    /// could be read) and what to do.
    pub(crate) fn dispatch(&self, body: &[u8], max_frame: usize) -> (Option<u64>, Dispatch) {
        let RequestEnvelope { method, params, id } = match wire::decode_request(body) {
            Ok(envelope) => envelope,
            Err(bad) => {
                let reply = ReplyTo {
                    id: bad.id,
                    max_frame,
                    method: String::new(),
                };
                return (bad.id, Dispatch::Ready(reply.err(&bad.message)));
            }
        };
        let reply = ReplyTo {
            id,
            max_frame,
            method,
        };
        let started = if let Some(handler) = self.handlers.get(&reply.method) {
            handler.start(params, reply)
        } else if let Some(service) = &self.service {
            service.start(body, reply)
        } else {
            let message = format!(
                "unknown method {:?}; this server has: {}",
                reply.method,
                self.methods().join(", ")
            );
            return (id, Dispatch::Ready(reply.err(&message)));
        };
        match started {
            Ok(fut) => (id, Dispatch::Run(fut)),
            Err(message) => {
                let reply = ReplyTo {
                    id,
                    max_frame,
                    method: String::new(),
                };
                (id, Dispatch::Ready(reply.err(&message)))
            }
        }
    }
}
