//! The proxy service: one request in, one request upstream, the response back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use pipewright::Peer;

use super::upstream::UpstreamConnector;
use super::Forwarder;
use crate::ws::is_upgrade_request;

/// Response body of the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// The forwarder as a hyper service; serve it with [`Server`](crate::Server).
#[derive(Debug, Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Forwarder,
    client: Client<UpstreamConnector, Incoming>,
    authority: String,
}

impl ProxyService {
    pub(super) fn new(config: Forwarder) -> Self {
        let connector = UpstreamConnector {
            upstream: config.upstream.clone(),
            connect_timeout: config.connect_timeout,
        };
        let client = crate::client_builder()
            .pool_max_idle_per_host(config.max_idle_upstream)
            .build(connector);
        let authority = match &config.upstream {
            super::Upstream::Tcp(addr) => addr.clone(),
            _ => "localhost".to_string(),
        };
        ProxyService {
            shared: Arc::new(Shared {
                config,
                client,
                authority,
            }),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, std::convert::Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.handle(req).await) })
    }
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let entry = AccessEntry {
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            pid: req.extensions().get::<Peer>().and_then(|p| p.pid),
            started,
            enabled: self.config.access_log,
        };
        let response = match &self.config.health_path {
            Some(path) if req.uri().path() == path => local_response(StatusCode::OK, "ok\n"),
            _ => self.forward(req).await,
        };
        let status = response.status();
        response.map(|body| LoggedBody::wrap(body, entry, status))
    }

    async fn forward(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let upgrade = is_upgrade_request(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let upstream_req = match self.upstream_request(req, upgrade) {
            Ok(r) => r,
            Err(message) => return local_response(StatusCode::BAD_REQUEST, &message),
        };
        let timeout = self.config.response_timeout;
        let mut response =
            match tokio::time::timeout(timeout, self.shared_request(upstream_req)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return self.upstream_failure(&e),
                Err(_) => {
                    return local_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "504 Gateway Timeout: the upstream {} sent no response within {:?}\n",
                            self.config.upstream, timeout
                        ),
                    )
                }
            };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, upstream)) => {
                            let mut client = TokioIo::new(client);
                            let mut upstream = TokioIo::new(upstream);
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                            {
                                tracing::debug!(error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
            }
            return response.map(|b| b.boxed());
        }
        strip_hop_by_hop(response.headers_mut(), false);
        // An intermediary sends its own version, not the upstream's (RFC 9110 section 6.2):
        // an HTTP/1.0 upstream must not turn the client's keep-alive connection into one
        // that closes after each response. hyper answers an HTTP/1.0 client in HTTP/1.0.
        *response.version_mut() = hyper::Version::HTTP_11;
        response.map(|b| b.boxed())
    }

    fn shared_request(&self, req: Request<Incoming>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(req)
    }

    fn upstream_request(
        &self,
        req: Request<Incoming>,
        upgrade: bool,
    ) -> Result<Request<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        parts.uri = format!("http://{}{path}", self.authority)
            .parse::<Uri>()
            .map_err(|e| format!("400 Bad Request: cannot forward the path {path:?} ({e})\n"))?;
        parts.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if let Some(host) = &original_host {
            parts.headers.insert(header::HOST, host.clone());
        }
        if self.config.forwarding_headers {
            let pid = parts.extensions.get::<Peer>().and_then(|p| p.pid);
            add_forwarding_headers(&mut parts.headers, original_host.as_ref(), pid);
        }
        Ok(Request::from_parts(parts, body))
    }

    fn upstream_failure(&self, err: &hyper_util::client::legacy::Error) -> Response<ProxyBody> {
        let timed_out = io_kind(err) == Some(io::ErrorKind::TimedOut);
        let (status, what) = if timed_out {
            (StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout")
        } else {
            (StatusCode::BAD_GATEWAY, "502 Bad Gateway")
        };
        let cause = root_cause(err);
        tracing::warn!(upstream = %self.config.upstream, error = %cause, "upstream failed");
        local_response(
            status,
            &format!(
                "{what}: the upstream {} failed: {cause}\n",
                self.config.upstream
            ),
        )
    }
}

fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cause = e.source();
    }
    None
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        last = e.to_string();
        cause = e.source();
    }
    last
}

/// A short plain-text response made by the forwarder itself.
fn local_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(message.to_string()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Removes the headers that describe one hop (RFC 9110 section 7.6.1), keeping `Connection:
/// upgrade` and `Upgrade` when the request is being upgraded.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// `Forwarded` (RFC 7239) and the `X-Forwarded-*` headers. A pipe client has no address, so
/// it is named by an obfuscated identifier carrying its process id.
fn add_forwarding_headers(headers: &mut HeaderMap, host: Option<&HeaderValue>, pid: Option<u32>) {
    let client = match pid {
        Some(pid) => format!("_pipe-pid-{pid}"),
        None => "_pipe".to_string(),
    };
    let host = host.and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty());
    let mut forwarded = format!("for={client};proto=http");
    if let Some(host) = host {
        forwarded.push_str(&format!(";host=\"{}\"", host.replace(['"', '\\'], "")));
    }
    let pairs = [
        ("forwarded", forwarded),
        ("x-forwarded-for", client),
        ("x-forwarded-proto", "http".to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
}

/// What one access-log line says.
#[derive(Debug)]
struct AccessEntry {
    method: String,
    path: String,
    pid: Option<u32>,
    started: Instant,
    enabled: bool,
}

/// A response body that counts its bytes and writes the access-log line when it is done
/// (sent in full, or dropped because the client went away).
struct LoggedBody {
    inner: ProxyBody,
    entry: AccessEntry,
    status: StatusCode,
    bytes: u64,
    finished: bool,
}

impl LoggedBody {
    fn wrap(inner: ProxyBody, entry: AccessEntry, status: StatusCode) -> ProxyBody {
        if !entry.enabled {
            return inner;
        }
        LoggedBody {
            inner,
            entry,
            status,
            bytes: 0,
            finished: false,
        }
        .boxed()
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let e = &self.entry;
        let pid = e.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let ms = e.started.elapsed().as_secs_f64() * 1000.0;
        let note = if self.finished || self.inner.is_end_stream() {
            ""
        } else {
            " (client went away)"
        };
        tracing::info!(
            target: "pipewright::access",
            "{} {} {} {}B {:.1}ms pid={}{}",
            e.method,
            e.path,
            self.status.as_u16(),
            self.bytes,
            ms,
            pid,
            note
        );
    }
}

/// Default time the forwarder waits for upstream response headers.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
