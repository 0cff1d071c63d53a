//! A gRPC echo service and its client over a pipe, with tonic and no `protoc`: the messages
//! are `prost` derives written by hand and the service goes through `tonic::server::Grpc`,
//! which is what `tonic-build` would generate from this `.proto`:
//!
//! ```text
//! syntax = "proto3";
//! package pipewright.examples;
//! message EchoRequest { string message = 1; uint32 count = 2; uint32 size = 3; bytes payload = 4; }
//! message EchoReply {
//!   string message = 1; uint32 index = 2; optional uint32 peer_pid = 3;
//!   optional string peer_user = 4; bytes payload = 5;
//! }
//! service Echo {
//!   rpc Unary(EchoRequest) returns (EchoReply);               // the message and payload back
//!   rpc Stream(EchoRequest) returns (stream EchoReply);       // `count` replies of `size` bytes
//! }
//! ```
//!
//! Every reply says which process called (the pipe's peer pid and user).
//!
//! ```text
//! cargo run -p pipewright-http --features grpc --example grpc_echo -- serve echo-grpc
//! cargo run -p pipewright-http --features grpc --example grpc_echo -- call npipe:echo-grpc hello
//! ```
//!
//! `serve NAME` prints `ready NAME` once the pipe is served and stops on Ctrl+C; `call ENDPOINT
//! [MESSAGE]` makes one unary call and one streaming call of three replies, and prints them.

pub mod echo {
    //! The hand-written messages, server and client of `pipewright.examples.Echo`.

    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_util::stream::{self, Stream, StreamExt};
    use hyper::http::uri::PathAndQuery;
    use tonic::body::Body;
    use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status, Streaming};
    use tonic_prost::ProstCodec;

    /// The service's full name.
    pub const SERVICE: &str = "pipewright.examples.Echo";
    const UNARY: &str = "/pipewright.examples.Echo/Unary";
    const STREAM: &str = "/pipewright.examples.Echo/Stream";

    /// What the client sends.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoRequest {
        /// Echoed back (with the reply's index on a stream).
        #[prost(string, tag = "1")]
        pub message: String,
        /// How many replies `Stream` sends.
        #[prost(uint32, tag = "2")]
        pub count: u32,
        /// The payload size of each `Stream` reply.
        #[prost(uint32, tag = "3")]
        pub size: u32,
        /// Echoed back by `Unary`.
        #[prost(bytes = "vec", tag = "4")]
        pub payload: Vec<u8>,
    }

    /// What the server answers.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoReply {
        /// The request's message (`Stream`: followed by a space and the index).
        #[prost(string, tag = "1")]
        pub message: String,
        /// The position of this reply in a stream.
        #[prost(uint32, tag = "2")]
        pub index: u32,
        /// The caller's process id, as the pipe reports it.
        #[prost(uint32, optional, tag = "3")]
        pub peer_pid: Option<u32>,
        /// The caller's user (a SID on Windows, `uid N` on Unix).
        #[prost(string, optional, tag = "4")]
        pub peer_user: Option<String>,
        /// `Unary`: the request's payload; `Stream`: `size` bytes, byte `j` of reply `i`
        /// being `(i + j) % 256`.
        #[prost(bytes = "vec", tag = "5")]
        pub payload: Vec<u8>,
    }

    /// The payload of reply `index` of a stream.
    pub fn stream_payload(index: u32, size: u32) -> Vec<u8> {
        (0..size as usize)
            .map(|j| (index as usize + j) as u8)
            .collect()
    }

    fn reply_for<T>(request: &Request<T>, message: String, index: u32) -> EchoReply {
        let peer = pipewright_http::grpc::peer(request);
        EchoReply {
            message,
            index,
            peer_pid: peer.and_then(|p| p.pid),
            peer_user: peer.and_then(|p| p.user.as_ref()).map(|u| u.to_string()),
            payload: Vec::new(),
        }
    }

    struct Unary;

    impl UnaryService<EchoRequest> for Unary {
        type Response = EchoReply;
        type Future = Pin<Box<dyn Future<Output = Result<Response<EchoReply>, Status>> + Send>>;

        fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
            let mut reply = reply_for(&request, String::new(), 0);
            let request = request.into_inner();
            reply.message = request.message;
            reply.payload = request.payload;
            Box::pin(async move { Ok(Response::new(reply)) })
        }
    }

    type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

    struct ServerStream;

    impl ServerStreamingService<EchoRequest> for ServerStream {
        type Response = EchoReply;
        type ResponseStream = ReplyStream;
        type Future = Pin<Box<dyn Future<Output = Result<Response<ReplyStream>, Status>> + Send>>;

        fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
            let template = reply_for(&request, String::new(), 0);
            let EchoRequest {
                message,
                count,
                size,
                ..
            } = request.into_inner();
            let replies = stream::iter(0..count).map(move |index| {
                Ok(EchoReply {
                    message: format!("{message} {index}"),
                    index,
                    payload: stream_payload(index, size),
                    ..template.clone()
                })
            });
            Box::pin(async move { Ok(Response::new(replies.boxed() as ReplyStream)) })
        }
    }

    /// The server side: add it with `tonic::transport::Server::builder().add_service(EchoServer)`.
    #[derive(Debug, Clone, Default)]
    pub struct EchoServer;

    impl NamedService for EchoServer {
        const NAME: &'static str = SERVICE;
    }

    impl tower_service::Service<hyper::Request<Body>> for EchoServer {
        type Response = hyper::Response<Body>;
        type Error = Infallible;
        type Future =
            Pin<Box<dyn Future<Output = Result<hyper::Response<Body>, Infallible>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: hyper::Request<Body>) -> Self::Future {
            let codec = ProstCodec::<EchoReply, EchoRequest>::default();
            match request.uri().path() {
                UNARY => Box::pin(async move { Ok(Grpc::new(codec).unary(Unary, request).await) }),
                STREAM => Box::pin(async move {
                    Ok(Grpc::new(codec)
                        .server_streaming(ServerStream, request)
                        .await)
                }),
                other => {
                    let status = Status::unimplemented(format!("{SERVICE} has no method {other}"));
                    Box::pin(async move { Ok(status.into_http()) })
                }
            }
        }
    }

    /// The client side, on any tonic channel (e.g. `pipewright_http::grpc::connect`).
    #[derive(Debug, Clone)]
    pub struct EchoClient {
        inner: tonic::client::Grpc<Channel>,
    }

    impl EchoClient {
        /// A client on `channel`.
        pub fn new(channel: Channel) -> Self {
            EchoClient {
                inner: tonic::client::Grpc::new(channel),
            }
        }

        /// Calls `Unary`.
        pub async fn unary(&mut self, request: EchoRequest) -> Result<EchoReply, Status> {
            self.ready().await?;
            let codec = ProstCodec::<EchoRequest, EchoReply>::default();
            let path = PathAndQuery::from_static(UNARY);
            let response = self.inner.unary(Request::new(request), path, codec).await?;
            Ok(response.into_inner())
        }

        /// Calls `Stream`.
        pub async fn stream(
            &mut self,
            request: EchoRequest,
        ) -> Result<Streaming<EchoReply>, Status> {
            self.ready().await?;
            let codec = ProstCodec::<EchoRequest, EchoReply>::default();
            let path = PathAndQuery::from_static(STREAM);
            let response = self
                .inner
                .server_streaming(Request::new(request), path, codec)
                .await?;
            Ok(response.into_inner())
        }

        async fn ready(&mut self) -> Result<(), Status> {
            self.inner
                .ready()
                .await
                .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))
        }
    }
}

use echo::{EchoClient, EchoRequest, EchoServer};
use pipewright::Listener;
use pipewright_http::grpc;

async fn serve(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind(name)?;
    println!("ready {}", listener.name());
    tonic::transport::Server::builder()
        .add_service(EchoServer)
        .serve_with_incoming_shutdown(grpc::incoming(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn call(endpoint: &str, message: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = EchoClient::new(grpc::connect(endpoint).await?);
    let reply = client
        .unary(EchoRequest {
            message: message.into(),
            ..Default::default()
        })
        .await?;
    println!(
        "unary: {} (server saw pid {})",
        reply.message,
        reply.peer_pid.unwrap_or(0)
    );
    let mut replies = client
        .stream(EchoRequest {
            message: message.into(),
            count: 3,
            size: 16,
            ..Default::default()
        })
        .await?;
    while let Some(reply) = replies.message().await? {
        println!(
            "stream: {} ({} payload bytes)",
            reply.message,
            reply.payload.len()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", name] => serve(name).await,
        ["call", endpoint] => call(endpoint, "hello").await,
        ["call", endpoint, message] => call(endpoint, message).await,
        _ => {
            eprintln!("usage: grpc_echo serve NAME | grpc_echo call ENDPOINT [MESSAGE]");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("grpc_echo: {e}");
        std::process::exit(1);
    }
}
