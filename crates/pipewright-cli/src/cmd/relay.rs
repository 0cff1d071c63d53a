//! `pipewright relay [flags] PIPE`: stdin/stdout to one pipe connection, a drop-in for
//! npiperelay (the binary also acts as npiperelay when it is named `npiperelay[.exe]`).
//!
//! ```text
//! socat UNIX-LISTEN:$SSH_AUTH_SOCK,fork EXEC:"pipewright.exe relay -ei -s //./pipe/openssh-ssh-agent",nofork
//! ```

pub mod argv;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pipewright::{ConnectOptions, PipeMode, PipeName, PipeStream};

use crate::address::{assuan, stdio};
use crate::exit;
use crate::failure::Failure;
use crate::join::{join, AfterEof, Policy, Side};
pub use argv::{ModeChoice, Parsed, RelayArgs};

/// How long a relay without `-p` waits for a busy pipe (go-winio's default dial timeout).
pub const BUSY_WAIT: Duration = Duration::from_secs(2);

/// The relay's arguments as clap hands them over: everything after `relay`, parsed by
/// [`argv::parse`] with npiperelay's rules (run `pipewright relay -h` for the flags).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RelayCli {
    /// npiperelay's flags and the pipe: [-p] [-l] [-s] [-ep] [-ei] [-v] [-bg] [-a] PIPE.
    #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// Whether this process runs the relay: started under the name `npiperelay[.exe]` (then
/// every argument is a relay argument), or as `pipewright relay ...`. Returns the program
/// name for messages and the relay's arguments.
pub fn relay_argv(argv: impl Iterator<Item = OsString>) -> Option<(&'static str, Vec<OsString>)> {
    let mut argv = argv;
    let argv0 = argv.next()?;
    // Both separators on every platform: WSL starts Windows programs by either kind of path.
    let file = argv0
        .to_string_lossy()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if file == "npiperelay" || file == "npiperelay.exe" {
        return Some(("npiperelay", argv.collect()));
    }
    let rest: Vec<OsString> = argv.collect();
    match rest.split_first() {
        Some((word, args)) if word == "relay" => Some(("pipewright relay", args.to_vec())),
        _ => None,
    }
}

/// Runs the relay as the whole program: parses, sets up logging and the runtime, runs.
pub fn main(program: &str, args: Vec<OsString>, init_logging: fn(u8)) -> ExitCode {
    let a = match parse_or_report(program, &args) {
        Ok(a) => a,
        Err(code) => return ExitCode::from(code),
    };
    init_logging(u8::from(a.verbose));
    let runtime = match crate::lean_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(relay(program, a));
    // Nothing left running may hold the process.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// `pipewright relay ...` through clap.
pub async fn run(cli: RelayCli) -> u8 {
    match parse_or_report("pipewright relay", &cli.args) {
        Ok(a) => relay("pipewright relay", a).await,
        Err(code) => code,
    }
}

fn parse_or_report(program: &str, args: &[OsString]) -> Result<RelayArgs, u8> {
    match argv::parse(args) {
        Ok(Parsed::Run(a)) => Ok(a),
        Ok(Parsed::Help) => {
            outln!("{}", argv::usage(program));
            Err(exit::OK)
        }
        Ok(Parsed::Version) => {
            outln!("{program} (pipewright {})", env!("CARGO_PKG_VERSION"));
            Err(exit::OK)
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            eprintln!(
                "usage: {program} [-p] [-l] [-s] [-ep] [-ei] [-v] [-bg] [-a] PIPE (-h for help)"
            );
            Err(exit::USAGE)
        }
    }
}

/// Runs a parsed relay and returns the exit code.
pub async fn relay(program: &str, a: RelayArgs) -> u8 {
    if a.background {
        crate::sys::hide_console_window();
    }
    match relay_inner(&a).await {
        Ok(()) => exit::OK,
        Err(f) => {
            eprintln!("{program}: {f}");
            f.code
        }
    }
}

async fn relay_inner(a: &RelayArgs) -> Result<(), Failure> {
    tracing::info!(target = %a.target, assuan = a.assuan, "connecting");
    let pipe_side = if a.assuan {
        let wait = a.poll.then_some(a.timeout);
        let stream = assuan::connect(Path::new(&a.target), wait).await?;
        Side::from_tcp(format!("{} (Assuan)", a.target), stream)
    } else {
        let name = PipeName::parse(&a.target).map_err(|e| Failure::from_pipe(&e))?;
        let stream = connect_pipe(&name, a)
            .await
            .map_err(|e| Failure::from_pipe(&e))?;
        tracing::info!(mode = ?stream.mode(), "connected");
        Side::from_pipe(name.to_string(), stream)
    };
    let stdin = stdio::stdin().map_err(|e| Failure::from_io("open stdin", &e))?;
    let stdout = stdio::stdout().map_err(|e| Failure::from_io("open stdout", &e))?;
    let stdio_side = Side {
        label: "stdio".into(),
        reader: Box::new(stdin),
        writer: Box::new(stdout),
        half_close: true,
        eof_is_close: false,
        keep_alive: None,
    };
    let policy = relay_policy(a, pipe_side.eof_is_close);
    let totals = join(stdio_side, pipe_side, &policy)
        .await
        .map_err(|e| Failure::from_join(&e))?;
    tracing::info!(
        stdin_to_pipe = totals.left_to_right,
        pipe_to_stdout = totals.right_to_left,
        "finished"
    );
    Ok(())
}

/// The join policy for the relay's flags (left = stdio, right = the pipe).
pub fn relay_policy(a: &RelayArgs, pipe_eof_is_close: bool) -> Policy {
    Policy {
        half_close_right: a.send_zero,
        half_close_left: true,
        after_left_eof: if a.exit_on_stdin_eof {
            AfterEof::Linger(a.linger)
        } else {
            AfterEof::Wait
        },
        after_right_eof: if a.exit_on_pipe_eof {
            AfterEof::Exit
        } else if pipe_eof_is_close {
            AfterEof::Finish
        } else {
            // An orderly end: a half-close or a close (in message mode a server that died
            // is an error instead, exit 7). Either way stdin gets the same bounded linger as
            // -ei gives the pipe.
            AfterEof::Linger(a.linger)
        },
    }
}

async fn connect_pipe(name: &PipeName, a: &RelayArgs) -> pipewright::Result<PipeStream> {
    let base = if a.poll {
        ConnectOptions::new().timeout(a.timeout)
    } else {
        ConnectOptions::new()
            .timeout(BUSY_WAIT)
            .retry_not_found(false)
    };
    match a.mode {
        ModeChoice::Byte => pipewright::connect_with(name, &base).await,
        ModeChoice::Message => {
            pipewright::connect_with(name, &base.clone().mode(PipeMode::Message)).await
        }
        // Message read mode on a message pipe, as go-winio (npiperelay) does: `-s` needs it
        // to send the zero-byte message, and it tells a server's orderly end (zero-byte
        // message: exit 0) from its death (exit 7). A byte pipe stays in byte mode on the
        // same connection.
        ModeChoice::Auto if cfg!(windows) => {
            let stream =
                pipewright::connect_with(name, &base.clone().mode_from_server(true)).await?;
            if stream.mode() == PipeMode::Byte {
                tracing::info!("the server's pipe is a byte pipe: relaying in byte mode");
            }
            Ok(stream)
        }
        ModeChoice::Auto => pipewright::connect_with(name, &base).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> RelayArgs {
        let mut v: Vec<OsString> = flags.iter().map(OsString::from).collect();
        v.push("x".into());
        match argv::parse(&v).unwrap() {
            Parsed::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn argv0_npiperelay_in_any_form() {
        for name in [
            "npiperelay",
            "npiperelay.exe",
            "/mnt/c/tools/npiperelay.exe",
            r"C:\bin\NPipeRelay.EXE",
        ] {
            let argv = [name, "-ei", "x"].map(OsString::from);
            let (program, got) = relay_argv(argv.into_iter()).unwrap();
            assert_eq!(program, "npiperelay");
            assert_eq!(
                got,
                vec![OsString::from("-ei"), OsString::from("x")],
                "{name}"
            );
        }
        for name in ["pipewright", "pipewright.exe", "npiperelay2"] {
            let argv = [name, "-ei", "x"].map(OsString::from);
            assert_eq!(relay_argv(argv.into_iter()), None, "{name}");
        }
    }

    #[test]
    fn the_relay_word_selects_the_relay() {
        let argv = ["pipewright", "relay", "-v", "-ei", "x"].map(OsString::from);
        let (program, got) = relay_argv(argv.into_iter()).unwrap();
        assert_eq!(program, "pipewright relay");
        assert_eq!(got.len(), 3);
        let other = ["pipewright", "bridge", "relay"].map(OsString::from);
        assert_eq!(relay_argv(other.into_iter()), None);
    }

    #[test]
    fn policies_follow_the_flags() {
        let ssh = relay_policy(&args(&["-ei", "-s"]), true);
        assert!(ssh.half_close_right);
        assert_eq!(ssh.after_left_eof, AfterEof::Linger(argv::DEFAULT_LINGER));
        assert_eq!(ssh.after_right_eof, AfterEof::Finish);
        let docker = relay_policy(&args(&["-ep", "-s"]), false);
        assert_eq!(docker.after_right_eof, AfterEof::Exit);
        assert_eq!(docker.after_left_eof, AfterEof::Wait);
        let plain = relay_policy(&args(&[]), false);
        assert!(!plain.half_close_right);
        assert_eq!(plain.after_left_eof, AfterEof::Wait);
        assert_eq!(
            plain.after_right_eof,
            AfterEof::Linger(argv::DEFAULT_LINGER)
        );
    }
}
