//! `pipewright forward --listen npipe:NAME --to tcp:HOST:PORT | unix:PATH | exec:CMDLINE`:
//! an HTTP-aware reverse proxy from a pipe to an upstream (e.g. a WSL service).

use std::time::Duration;

use clap::Args;
use pipewright::{Listener, PipeName};
use pipewright_http::forward::{parse_listen, Forwarder, Upstream};
use pipewright_http::Server;

use crate::{args, exit};

/// Serve HTTP on a pipe and forward every request to an upstream.
///
/// Keep-alive connections to the upstream are pooled, WebSocket upgrades pass through, and an
/// upstream that is down or slow gets a 502 or 504 with a plain message. Check readiness with
/// `pipewright probe NAME`. With -v, one access-log line per request goes to stderr.
///
/// Upstreams: tcp:HOST:PORT, unix:PATH (Unix), npipe:NAME, or exec:CMDLINE, a helper started
/// per upstream connection that speaks HTTP on its stdin/stdout, e.g.
/// exec:wsl.exe -d Ubuntu -- socat - UNIX-CONNECT:/run/agent.sock
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Where to listen: npipe:NAME (or npipe:////./pipe/NAME), or unix:PATH on Unix.
    #[arg(long, short = 'l', value_parser = listen_address)]
    pub listen: PipeName,
    /// Where to forward: tcp:HOST:PORT, unix:PATH, npipe:NAME or exec:CMDLINE.
    #[arg(long, value_parser = upstream_address)]
    pub to: Upstream,
    /// Do not add Forwarded / X-Forwarded-For / X-Forwarded-Proto / X-Forwarded-Host.
    #[arg(long)]
    pub no_forwarding_headers: bool,
    /// Answer GET on this path with "200 ok" locally (a readiness check that needs no
    /// upstream), e.g. /healthz.
    #[arg(long, value_name = "PATH", value_parser = health_path)]
    pub health_path: Option<String>,
    /// How long opening an upstream connection may take before a 504.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub connect_timeout: Duration,
    /// How long the upstream may take to start its response before a 504.
    #[arg(long, default_value = "60s", value_parser = args::duration)]
    pub timeout: Duration,
    /// The most client connections served at once.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
}

fn listen_address(s: &str) -> Result<PipeName, String> {
    parse_listen(s).map_err(|e| e.to_string())
}

fn upstream_address(s: &str) -> Result<Upstream, String> {
    Upstream::parse(s).map_err(|e| e.to_string())
}

fn health_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') && !s.contains(|c: char| c.is_whitespace() || c == '?') {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a path; write it like /healthz"))
    }
}

/// Runs the forwarder until Ctrl-C, then lets in-flight requests finish.
pub async fn run(a: ForwardArgs) -> u8 {
    let listener = match Listener::bind(&a.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pipewright forward: cannot listen on {}: {e}", a.listen);
            return exit::for_kind(e.kind());
        }
    };
    let access_log = tracing::enabled!(target: "pipewright::access", tracing::Level::INFO);
    let mut forwarder = Forwarder::new(a.to.clone())
        .forwarding_headers(!a.no_forwarding_headers)
        .connect_timeout(a.connect_timeout)
        .response_timeout(a.timeout)
        .access_log(access_log);
    if let Some(path) = a.health_path {
        forwarder = forwarder.health_path(path);
    }
    tracing::info!("forwarding {} to {}", a.listen.platform_path(), a.to);
    let shutdown = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("stopping; letting in-flight requests finish");
    };
    let served = Server::new()
        .max_connections(a.max_connections)
        .drain_timeout(Duration::from_secs(30))
        .serve_with_shutdown(listener, forwarder.service(), shutdown)
        .await;
    match served {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("pipewright forward: {e}");
            exit::for_kind(e.kind())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_paths_must_be_paths() {
        assert_eq!(health_path("/healthz").unwrap(), "/healthz");
        for bad in ["healthz", "/a b", "/x?y", ""] {
            assert!(
                health_path(bad).unwrap_err().contains("/healthz"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn addresses_come_with_their_forms_in_errors() {
        assert!(upstream_address("localhost:80")
            .unwrap_err()
            .contains("tcp:HOST:PORT"));
        assert!(listen_address("NAME").unwrap_err().contains("npipe:NAME"));
    }
}
