//! `pipewright probe NAME`: is a server ready? A real client open and close.

use std::time::Duration;

use clap::Args;
use pipewright::PipeName;

use crate::{args, exit};

/// Check that a server accepts connections on NAME (exit 0), or say why not.
///
/// Exit codes: 0 ready, 3 not found, 4 busy, 5 access denied, 6 timed out, 2 bad arguments.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The pipe: NAME, \\.\pipe\NAME or //./pipe/NAME (a socket path on Unix).
    #[arg(value_parser = args::pipe_name)]
    pub name: PipeName,
    /// How long to keep trying a busy or missing server, like 500ms, 2s, 1m.
    #[arg(long, short = 't', default_value = "0s", value_parser = args::duration)]
    pub timeout: Duration,
    /// Print nothing; only the exit code tells.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Runs the probe and returns the exit code.
pub async fn run(a: ProbeArgs) -> u8 {
    match pipewright::probe(&a.name, a.timeout).await {
        Ok(()) => {
            if !a.quiet {
                outln!("{}: ready", a.name);
            }
            exit::OK
        }
        Err(e) => {
            if !a.quiet {
                eprintln!("pipewright probe: {e}");
            }
            exit::for_kind(e.kind())
        }
    }
}
