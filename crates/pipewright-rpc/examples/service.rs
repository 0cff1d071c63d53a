//! A small RPC service and a typed client talking to it over a pipe.
//!
//! Run with `cargo run -p pipewright-rpc --example service`.

use pipewright_rpc::{Client, Router, RpcError, Server};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Divide {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Quotient {
    quotient: i64,
    remainder: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("pipewright-rpc-example-{}", std::process::id());

    // The service: one async handler per method, with serde types.
    let router = Router::new()
        .handle("Divide", |p: Divide| async move {
            match (p.a.checked_div(p.b), p.a.checked_rem(p.b)) {
                (Some(quotient), Some(remainder)) => Ok(Quotient {
                    quotient,
                    remainder,
                }),
                _ => Err(format!("cannot divide {} by {}", p.a, p.b)),
            }
        })
        .handle("Shout", |text: String| async move {
            Ok::<_, String>(text.to_uppercase())
        });
    let listener = pipewright::Listener::bind(&name)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(router).serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));

    // The client: typed calls, several at once on one connection.
    let client = Client::connect(&name).await?;
    let (q, shout) = tokio::join!(
        client.call::<_, Quotient>("Divide", &Divide { a: 17, b: 5 }),
        client.call::<_, String>("Shout", "hello"),
    );
    println!("17 / 5 = {:?}; shout: {}", q?, shout?);
    match client
        .call::<_, Quotient>("Divide", &Divide { a: 1, b: 0 })
        .await
    {
        Err(RpcError::Remote(message)) => println!("the server refused: {message}"),
        other => println!("unexpected: {other:?}"),
    }

    drop(client);
    let _ = stop.send(());
    server.await??;
    Ok(())
}
