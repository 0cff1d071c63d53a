//! `pipewright wsl-host`: the Windows side of `pipewright wsl`. One long-lived process that
//! serves many streams multiplexed over its stdin and stdout. Each stream names its target
//! in a header line (`npipe:NAME[,options]` or `assuan:FILE`); the host connects, answers
//! `ok` or the failure, then joins the two with `bridge`'s half-close and end-of-stream
//! rules. A target that fails fails its stream only.
//!
//! ```text
//! pipewright wsl up --windows-command "pipewright.exe wsl-host"   (the daemon starts it)
//! ```

use std::time::Duration;

use clap::Args;

use super::mux::{self, Duplex, MuxStream};
use super::wire::{self, Reply};
use crate::address::{stdio, Address};
use crate::exit;
use crate::failure::Failure;
use crate::join::{join, AfterEof, Policy, Side};

/// Serve the streams of a `pipewright wsl` daemon on stdin and stdout (started by the daemon).
#[derive(Debug, Args)]
pub struct HostArgs {
    /// When the daemon's side of a stream ends and the target cannot be told (a Windows byte
    /// pipe has no half-close), keep the target's direction going while data moves, and stop
    /// once it has been idle this long (as `bridge -t`). Targets with a half-close are told and
    /// waited for.
    #[arg(short = 't', long = "linger", default_value = "1s", value_parser = crate::args::duration)]
    pub linger: Duration,
}

/// Runs the host until stdin ends (the daemon went away) and returns the exit code.
pub async fn run(a: HostArgs) -> u8 {
    let link = match (stdio::stdin(), stdio::stdout()) {
        (Ok(stdin), Ok(stdout)) => Duplex::new(Box::new(stdin), Box::new(stdout)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("pipewright wsl-host: cannot open stdin and stdout: {e}");
            return exit::FAILURE;
        }
    };
    let policy = Policy::bridge(a.linger);
    let served = mux::serve(link, |stream| {
        let policy = policy.clone();
        tokio::spawn(async move { serve_stream(stream, &policy).await });
    })
    .await;
    match served {
        Ok(()) => {
            tracing::info!("the daemon closed the link");
            exit::OK
        }
        Err(e) => {
            eprintln!("pipewright wsl-host: the link to the daemon failed: {e}");
            exit::PEER_ERROR
        }
    }
}

/// Reads a stream's header, opens its target and joins the two.
async fn serve_stream(mut stream: MuxStream, policy: &Policy) {
    let line = match mux::read_line(&mut stream).await {
        Ok(line) => line,
        Err(e) => {
            tracing::warn!("stream without a valid header: {e}");
            let reply = Reply::Failed {
                code: exit::PEER_ERROR,
                message: e.to_string(),
            };
            let _ = mux::send_reply(&mut stream, &reply).await;
            return;
        }
    };
    let side = match open(&line).await {
        Ok(side) => side,
        Err(f) => {
            tracing::warn!("{f}");
            let reply = Reply::Failed {
                code: f.code,
                message: f.message,
            };
            let _ = mux::send_reply(&mut stream, &reply).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
    };
    if mux::send_reply(&mut stream, &Reply::Connected)
        .await
        .is_err()
    {
        return;
    }
    let label = side.label.clone();
    // A target that has a half-close (message pipes, Assuan's TCP) hears the client's end of
    // stream and answers in its own time, so nothing is cut; a byte pipe cannot be told, so
    // `bridge`'s linger ends the stream once it has gone idle.
    let policy = if side.half_close {
        Policy {
            after_left_eof: AfterEof::Wait,
            ..policy.clone()
        }
    } else {
        policy.clone()
    };
    let link = Side::from_stream("the wsl daemon", stream, true, false);
    match join(link, side, &policy).await {
        Ok(totals) => tracing::info!(target = %label, ?totals, "stream done"),
        Err(e) => tracing::info!(target = %label, "stream ended: {e}"),
    }
}

/// Parses a request line and connects its target: a pipe or an Assuan socket file only.
async fn open(line: &[u8]) -> Result<Side, Failure> {
    let target =
        wire::decode_request(line).map_err(|e| Failure::new(exit::PEER_ERROR, e.to_string()))?;
    let address = Address::parse(&expand_env(target)).map_err(|e| Failure::usage(e.to_string()))?;
    match address {
        Address::Npipe(_) | Address::Assuan { .. } => address.connect().await,
        _ => Err(Failure::usage(format!(
            "`{target}` is not a target the host opens: use npipe:NAME or assuan:FILE"
        ))),
    }
}

/// Expands `%NAME%` from the environment, as Windows paths are written
/// (`assuan:%LOCALAPPDATA%\gnupg\S.gpg-agent`). An unknown name stays as written.
pub fn expand_env(text: &str) -> String {
    expand_with(text, |name| std::env::var(name).ok())
}

fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 && !after[..end].contains(['\\', '/', ' ']) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand_with;

    #[test]
    fn expands_known_names_and_keeps_the_rest() {
        let lookup =
            |name: &str| (name == "LOCALAPPDATA").then(|| r"C:\Users\a\AppData\Local".to_string());
        assert_eq!(
            expand_with(r"assuan:%LOCALAPPDATA%\gnupg\S.gpg-agent", lookup),
            r"assuan:C:\Users\a\AppData\Local\gnupg\S.gpg-agent"
        );
        assert_eq!(
            expand_with("npipe:a%UNKNOWN%b", lookup),
            "npipe:a%UNKNOWN%b"
        );
        assert_eq!(expand_with("100%", lookup), "100%");
        assert_eq!(expand_with("%%", lookup), "%%");
        assert_eq!(
            expand_with(r"%a\b%LOCALAPPDATA%", lookup),
            r"%a\bC:\Users\a\AppData\Local"
        );
    }
}
