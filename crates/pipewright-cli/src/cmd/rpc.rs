//! `pipewright rpc serve-demo [NAME]` and `pipewright rpc call [NAME] METHOD PARAMS`: the
//! pipe-rpc demo service, and one typed call printed as JSON.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use pipewright::PipeName;
use pipewright_rpc::{demo, Client, ClientOptions, RpcError, Server};
use serde_json::Value;

use crate::{args, exit};

/// JSON RPC over pipes, wire-compatible with pipe-rpc.
#[derive(Debug, Args)]
pub struct RpcArgs {
    #[command(subcommand)]
    pub command: RpcCommand,
}

/// The `rpc` subcommands.
#[derive(Debug, Subcommand)]
pub enum RpcCommand {
    /// Serve the demo service (Factorial, Reverse, Echo) until Ctrl-C.
    ///
    /// Exit codes: 0 stopped by Ctrl-C, 8 the name is already served, 5 access denied,
    /// 2 bad arguments.
    ServeDemo(ServeDemoArgs),
    /// Call METHOD with the JSON PARAMS and print the response as JSON.
    ///
    /// Example: pipewright rpc call Factorial '{"n": 5}' prints
    /// {"status":"Ok","params":{"Number":120}}.
    ///
    /// Exit codes: 0 the server answered Ok, 1 it answered Err (the response is still
    /// printed), 2 bad arguments, 3 no server, 4 busy, 5 access denied, 6 timed out,
    /// 7 the connection broke or the answer was not valid.
    #[command(override_usage = "pipewright rpc call [NAME] METHOD PARAMS")]
    Call(CallArgs),
}

/// Arguments of `rpc serve-demo`.
#[derive(Debug, Args)]
pub struct ServeDemoArgs {
    /// The pipe: NAME, \\.\pipe\NAME or //./pipe/NAME (a socket path on Unix).
    #[arg(value_parser = args::pipe_name, default_value = demo::DEFAULT_NAME)]
    pub name: PipeName,
    /// Requests one connection may have in flight at once.
    #[arg(long, default_value_t = pipewright_rpc::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Bytes of answers one connection may have waiting to be written before the server
    /// stops reading its requests (a client that does not read its answers is slowed down).
    #[arg(long, value_name = "BYTES", default_value_t = pipewright_rpc::DEFAULT_MAX_QUEUED_ANSWER_BYTES)]
    pub max_queued_answer_bytes: usize,
    /// Connections served each on a thread of its own, one request at a time (the fastest
    /// form for clients that make one call at a time); the rest are served as tasks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub connection_threads: usize,
}

/// Arguments of `rpc call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// [NAME] METHOD PARAMS: the pipe (default rpc_demo), the method, and its params as JSON,
    /// like '{"n": 5}'.
    #[arg(num_args = 2..=3, required = true, value_name = "ARGS")]
    pub words: Vec<String>,
    /// How long to wait for the server (connecting, then the answer), like 500ms, 2s, 1m.
    #[arg(long, short = 't', default_value = "5s", value_parser = args::duration)]
    pub timeout: Duration,
}

/// Runs an `rpc` subcommand and returns the exit code.
pub async fn run(a: RpcArgs) -> u8 {
    match a.command {
        RpcCommand::ServeDemo(a) => serve_demo(a).await,
        RpcCommand::Call(a) => call(a).await,
    }
}

async fn serve_demo(a: ServeDemoArgs) -> u8 {
    let listener = match pipewright::Listener::bind(&a.name) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pipewright rpc serve-demo: {e}");
            return exit::for_kind(e.kind());
        }
    };
    outln!(
        "serving the demo RPC service (Factorial, Reverse, Echo) on {}; Ctrl-C stops",
        a.name
    );
    let _ = std::io::stdout().flush();
    let server = Server::new(demo::router())
        .max_in_flight(a.max_in_flight)
        .max_queued_answer_bytes(a.max_queued_answer_bytes)
        .connection_threads(a.connection_threads);
    let stopped = server
        .serve_with_shutdown(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match stopped {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("pipewright rpc serve-demo: {e}");
            exit::for_kind(e.kind())
        }
    }
}

/// Splits `[NAME] METHOD PARAMS` and parses the name and the params.
fn parse_call_words(words: &[String]) -> Result<(PipeName, &str, Value), String> {
    let (name, method, params) = match words {
        [method, params] => (demo::DEFAULT_NAME, method.as_str(), params.as_str()),
        [name, method, params] => (name.as_str(), method.as_str(), params.as_str()),
        _ => return Err("give [NAME] METHOD PARAMS, like: rpc call Factorial '{\"n\": 5}'".into()),
    };
    let name = args::pipe_name(name)?;
    if method.is_empty() {
        return Err("METHOD is empty; give a method name like Factorial".into());
    }
    let params = serde_json::from_str(params).map_err(|e| {
        format!("PARAMS {params:?} is not JSON ({e}); quote it for the shell, like '{{\"n\": 5}}'")
    })?;
    Ok((name, method, params))
}

/// The response as it travels on the wire: `{"status":...,"params":...}`, in that order.
fn response_json(status: &str, params: &Value) -> String {
    format!(r#"{{"status":"{status}","params":{params}}}"#)
}

async fn call(a: CallArgs) -> u8 {
    let (name, method, params) = match parse_call_words(&a.words) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("pipewright rpc call: {message}");
            return exit::USAGE;
        }
    };
    let options = ClientOptions::new()
        .connect_timeout(a.timeout)
        .call_timeout(a.timeout);
    let result = match Client::connect_with(&name, options).await {
        Ok(client) => client.call::<_, Value>(method, &params).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(answer) => {
            outln!("{}", response_json("Ok", &answer));
            exit::OK
        }
        Err(RpcError::Remote(message)) => {
            outln!("{}", response_json("Err", &Value::String(message)));
            exit::FAILURE
        }
        Err(e) => {
            eprintln!("pipewright rpc call: {e}");
            match &e {
                RpcError::Transport(t) => exit::for_kind(t.kind()),
                RpcError::TimedOut { .. } => exit::TIMED_OUT,
                RpcError::Disconnected { .. } | RpcError::Decode { .. } => exit::PEER_ERROR,
                _ => exit::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn name_is_optional() {
        let two = words(&["Factorial", r#"{"n":5}"#]);
        let (name, method, params) = parse_call_words(&two).unwrap();
        assert_eq!((name.name(), method), ("rpc_demo", "Factorial"));
        assert_eq!(params, json!({"n": 5}));
        let three = words(&["other", "Echo", r#"{"payload":"x"}"#]);
        let (name, method, _) = parse_call_words(&three).unwrap();
        assert_eq!((name.name(), method), ("other", "Echo"));
    }

    #[test]
    fn responses_print_in_wire_order() {
        assert_eq!(
            response_json("Ok", &json!({"Number": 120})),
            r#"{"status":"Ok","params":{"Number":120}}"#
        );
        assert_eq!(
            response_json("Err", &json!("a \"b\"")),
            r#"{"status":"Err","params":"a \"b\""}"#
        );
    }

    #[test]
    fn bad_call_words_name_the_problem() {
        let err = parse_call_words(&words(&["Factorial", "{n: 5}"])).unwrap_err();
        assert!(
            err.contains("is not JSON") && err.contains("quote it"),
            "{err}"
        );
        let err = parse_call_words(&words(&["", "Echo", "{}"])).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = parse_call_words(&words(&["x", "", "{}"])).unwrap_err();
        assert!(err.contains("METHOD is empty"), "{err}");
        assert!(parse_call_words(&words(&["only-one"])).is_err());
    }
}
