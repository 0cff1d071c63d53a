//! Serves HTTP/1.1 on stdin/stdout: the helper end of `pipewright forward --to exec:...`.
//!
//! `GET /whoami` answers `stdio helper <pid>`; `POST /echo` returns the body; any other path
//! answers `METHOD PATH`. The process ends when stdin closes.
//!
//! ```text
//! pipewright forward --listen npipe:helper --to "exec:stdio_server"
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = match req.uri().path() {
        "/whoami" => format!("stdio helper {}", std::process::id()),
        "/echo" => match req.into_body().collect().await {
            Ok(body) => return Ok(Response::new(Full::new(body.to_bytes()))),
            Err(e) => format!("cannot read the body: {e}"),
        },
        path => format!("{} {path}", req.method()),
    };
    Ok(Response::new(Full::new(Bytes::from(reply))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let io = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service_fn(handle))
        .await;
    if let Err(e) = result {
        eprintln!("stdio_server: {e}");
    }
}
