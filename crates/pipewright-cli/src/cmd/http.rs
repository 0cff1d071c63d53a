//! `pipewright http URL`: curl for pipes. Sends one request over a named pipe (or Unix socket)
//! and prints the response body.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use pipewright_http::{client_builder, PipeConnector, PipeUrl};

use crate::{args, exit, failure};

/// Send an HTTP request over a pipe and print the response body.
///
/// URL forms: npipe:////./pipe/NAME/path?query (also npipe:NAME/path) and
/// unix:///path/to.sock:/path?query.
///
/// Exit codes: 0 ok (and, with --fail, status < 400), 1 HTTP error with --fail, 2 bad
/// arguments, 3 no such pipe, 4 busy, 5 access denied, 6 timed out, 7 the server broke the
/// connection or the protocol (a malformed response, HTTP/1 only with --http2).
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The request URL, e.g. npipe:////./pipe/docker_engine/version.
    #[arg(value_parser = parse_url)]
    pub url: PipeUrl,
    /// The method (default GET, or POST when -d is given).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A request header, 'Name: value'; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "K: V", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The request body; @FILE reads it from a file, @- from stdin.
    #[arg(short = 'd', long = "data", value_name = "DATA|@FILE")]
    pub data: Option<String>,
    /// Print the status line and response headers before the body.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// Send the body as JSON (checked; Content-Type and Accept set to application/json) and
    /// pretty-print a JSON response.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the server answers with status 400 or more.
    #[arg(long, short = 'f')]
    pub fail: bool,
    /// Use HTTP/2 (prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,
    /// How long to wait for a busy or missing pipe, like 500ms, 2s.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub connect_timeout: Duration,
    /// How long the whole request may take.
    #[arg(long, short = 'm', default_value = "60s", value_parser = args::duration)]
    pub max_time: Duration,
}

fn parse_url(s: &str) -> Result<PipeUrl, String> {
    PipeUrl::parse(s).map_err(|e| e.to_string())
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a header; write it as 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} has characters a header cannot carry"))?;
    Ok((name, value))
}

/// Runs the request and returns the exit code.
pub async fn run(a: HttpArgs) -> u8 {
    let timeout = a.max_time;
    match tokio::time::timeout(timeout, request(a)).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("pipewright http: {}", failure::report(e.as_ref()));
            if e.downcast_ref::<UsageError>().is_some() {
                return exit::USAGE;
            }
            exit::for_error(&e)
        }
        Err(_) => {
            eprintln!("pipewright http: no complete answer within {timeout:?} (--max-time)");
            exit::TIMED_OUT
        }
    }
}

/// A problem with the arguments found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn read_body(data: &str) -> anyhow::Result<Bytes> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading the body from stdin")?;
            Ok(buf.into())
        }
        Some(path) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| UsageError(format!("cannot read the body from {path:?}: {e}")).into()),
        None => Ok(Bytes::from(data.to_string())),
    }
}

async fn request(a: HttpArgs) -> anyhow::Result<u8> {
    let body = match &a.data {
        Some(d) => read_body(d)?,
        None => Bytes::new(),
    };
    if a.json && !body.is_empty() {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
            return Err(UsageError(format!("--json: the body is not JSON ({e})")).into());
        }
    }
    let method = match &a.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| UsageError(format!("{m:?} is not an HTTP method")))?,
        None if a.data.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut builder = Request::builder().method(method).uri(a.url.uri()?);
    if a.json {
        builder = builder
            .header("content-type", "application/json")
            .header("accept", "application/json");
    }
    let mut req = builder
        .body(Full::new(body))
        .context("building the request")?;
    for (name, value) in a.headers {
        req.headers_mut().insert(name, value);
    }
    let endpoint = a.url.endpoint().to_string();
    let connector = PipeConnector::new().connect_timeout(a.connect_timeout);
    let client = client_builder()
        .http2_only(a.http2)
        .build::<_, Full<Bytes>>(connector);
    let resp = client
        .request(req)
        .await
        .map_err(|e| request_error(pipewright_http::Error::from(e), &endpoint, a.http2))?;
    let status = resp.status();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| request_error(pipewright_http::Error::from(e), &endpoint, a.http2))?
        .to_bytes();
    let mut out = std::io::stdout().lock();
    if a.include {
        writeln!(out, "{version:?} {status}")?;
        for (k, v) in &headers {
            writeln!(out, "{k}: {}", String::from_utf8_lossy(v.as_bytes()))?;
        }
        writeln!(out)?;
    }
    let pretty = a
        .json
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten();
    match pretty {
        Some(value) => writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?,
        None => out.write_all(&body)?,
    }
    out.flush()?;
    if a.fail && (status.is_client_error() || status.is_server_error()) {
        drop(out);
        eprintln!("pipewright http: the server answered {status}");
        Ok(exit::FAILURE)
    } else {
        Ok(exit::OK)
    }
}

/// A failed request as one sentence: a failed connect says it all (the pipe, why, the fix);
/// anything later names the URL, and a protocol error under `--http2` suggests the cause.
fn request_error(err: pipewright_http::Error, endpoint: &str, http2: bool) -> anyhow::Error {
    if matches!(&err, pipewright_http::Error::Client(c) if c.is_connect()) {
        return err.into();
    }
    let hint = if http2 && err.is_peer_error() {
        "; does the server speak HTTP/2? try without --http2"
    } else {
        ""
    };
    RequestError {
        endpoint: endpoint.to_string(),
        hint,
        err,
    }
    .into()
}

/// An HTTP failure after the connect, with the URL it concerns.
#[derive(Debug, thiserror::Error)]
#[error("request to {endpoint} failed: {err}{hint}")]
struct RequestError {
    endpoint: String,
    hint: &'static str,
    #[source]
    err: pipewright_http::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_malformed_ones_say_why() {
        let (k, v) = parse_header("X-Thing:  yes ").unwrap();
        assert_eq!(k, "x-thing");
        assert_eq!(v, "yes");
        assert!(parse_header("no colon")
            .unwrap_err()
            .contains("'Name: value'"));
        assert!(parse_header("bad name: x")
            .unwrap_err()
            .contains("not a valid header name"));
        assert!(parse_header("X: a\nb")
            .unwrap_err()
            .contains("cannot carry"));
    }

    #[test]
    fn malformed_urls_list_the_accepted_forms() {
        let err = parse_url("http://localhost/").unwrap_err();
        assert!(err.contains("npipe:////./pipe/NAME/path"), "{err}");
        assert!(err.contains("unix:///path/to.sock:/path"), "{err}");
    }
}
