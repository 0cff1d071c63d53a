//! The relay's command line, parsed the way Go's `flag` package parses npiperelay's: flags
//! with one or two dashes (`-ep` == `--ep`), boolean flags optionally `=true`/`=false`,
//! value flags as `-timeout 5s` or `-timeout=5s`, parsing stops at the first non-flag or
//! `--`, then exactly one pipe (or, with `-a`, file) follows.
//!
//! ```ignore
//! let parsed = argv::parse(&["-ei".into(), "-s".into(), "//./pipe/x".into()])?;
//! ```

use std::ffi::OsString;
use std::time::Duration;

use crate::args;

/// How the relay opens the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeChoice {
    /// On Windows the server's pipe type: message mode on a message pipe (as go-winio and
    /// npiperelay: the zero-byte message can be sent, and a server that ends orderly can be
    /// told from one that died), byte mode on a byte pipe. Byte mode on Unix.
    #[default]
    Auto,
    /// Byte mode.
    Byte,
    /// Message mode (the server's pipe must be a message pipe).
    Message,
}

/// Default cap on waiting for a pipe with `-p` (npiperelay's `-l` gave up after ~60 s).
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default linger after stdin's end with `-ei`.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// The relay's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayArgs {
    /// `-p`: wait for a pipe that does not exist yet or is busy.
    pub poll: bool,
    /// `-l`: with `-p`, give up after the cap (always on; kept for compatibility).
    pub limit: bool,
    /// `-s`: half-close the pipe at stdin's end (a zero-byte message on a message pipe).
    pub send_zero: bool,
    /// `-ep`: exit at the pipe's end of stream, without waiting for stdin.
    pub exit_on_pipe_eof: bool,
    /// `-ei`: exit at stdin's end, after a bounded linger for a reply in flight.
    pub exit_on_stdin_eof: bool,
    /// `-v`: log progress on stderr.
    pub verbose: bool,
    /// `-bg`: hide the console window.
    pub background: bool,
    /// `-a`: the target is an Assuan socket file (gpg-agent).
    pub assuan: bool,
    /// `-timeout`: how long `-p` waits.
    pub timeout: Duration,
    /// `-linger`: how long `-ei` keeps copying an idle pipe to stdout.
    pub linger: Duration,
    /// `-mode`: byte, message or auto.
    pub mode: ModeChoice,
    /// The pipe or file.
    pub target: String,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run the relay.
    Run(RelayArgs),
    /// Print the usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A bad command line: the message names the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The usage text (`-h`).
pub fn usage(program: &str) -> String {
    format!(
        "Relays stdin/stdout to a Windows named pipe (a Unix socket elsewhere), npiperelay-compatible.

Usage: {program} [flags] PIPE        (//./pipe/NAME, \\\\.\\pipe\\NAME or NAME)
       {program} [flags] -a FILE     (an Assuan socket file, e.g. gpg-agent's S.gpg-agent)

Flags (one or two dashes; all flags go before PIPE):
  -p          wait for the pipe while it does not exist or is busy (up to -timeout)
  -l          with -p, give up after the cap (the default; kept for compatibility)
  -s          at stdin's end, half-close: a zero-byte message on a message pipe,
              shutdown(send) on TCP and Unix sockets (byte pipes have no half-close)
  -ep         exit at the pipe's end of stream, without waiting for stdin
  -ei         exit at stdin's end, after copying a reply in flight (see -linger)
  -v          log progress on stderr
  -bg         hide the console window (when there is one)
  -a          the argument is an Assuan socket file: connect to its 127.0.0.1 port
              and send its nonce first
  -timeout D  how long -p waits, like 500ms, 30s, 2m (default 60s)
  -linger D   with -ei, stop once the pipe has been idle this long (default 1s)
  -mode M     auto, byte or message (default auto: the pipe's own type on Windows)
  -h          this help

Exit codes: 0 done, 1 failure, 2 usage, 3 not found, 4 busy, 5 access denied,
6 timed out, 7 peer closed early (on a message pipe: the server died), or broke
the protocol."
    )
}

/// Go's `strconv.ParseBool`.
fn parse_bool(name: &str, value: &str) -> Result<bool, UsageError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(UsageError(format!(
            "invalid boolean value {value:?} for -{name}; write -{name}, -{name}=true or -{name}=false"
        ))),
    }
}

fn parse_mode(value: &str) -> Result<ModeChoice, UsageError> {
    match value.to_ascii_lowercase().as_str() {
        "auto" => Ok(ModeChoice::Auto),
        "byte" => Ok(ModeChoice::Byte),
        "message" => Ok(ModeChoice::Message),
        _ => Err(UsageError(format!(
            "invalid value {value:?} for -mode; use auto, byte or message"
        ))),
    }
}

/// Parses the relay's arguments (without the program name).
pub fn parse(argv: &[OsString]) -> Result<Parsed, UsageError> {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            a.to_str().map(str::to_owned).ok_or_else(|| {
                UsageError(format!(
                    "argument {a:?} is not valid Unicode; give the pipe name in Unicode"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut a = RelayArgs {
        poll: false,
        limit: false,
        send_zero: false,
        exit_on_pipe_eof: false,
        exit_on_stdin_eof: false,
        verbose: false,
        background: false,
        assuan: false,
        timeout: DEFAULT_POLL_TIMEOUT,
        linger: DEFAULT_LINGER,
        mode: ModeChoice::Auto,
        target: String::new(),
    };
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--" {
            i += 1;
            break;
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(UsageError(format!("bad flag syntax: {arg}")));
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        i += 1;
        let flag = match name {
            "p" => &mut a.poll,
            "l" => &mut a.limit,
            "s" => &mut a.send_zero,
            "ep" => &mut a.exit_on_pipe_eof,
            "ei" => &mut a.exit_on_stdin_eof,
            "v" => &mut a.verbose,
            "bg" => &mut a.background,
            "a" => &mut a.assuan,
            "h" | "help" => return Ok(Parsed::Help),
            "version" => return Ok(Parsed::Version),
            "timeout" | "linger" | "mode" => {
                let value = match value {
                    Some(v) => v.to_string(),
                    None => {
                        let v = argv.get(i).ok_or_else(|| {
                            UsageError(format!("flag needs an argument: -{name}"))
                        })?;
                        i += 1;
                        v.clone()
                    }
                };
                match name {
                    "timeout" => a.timeout = args::duration(&value).map_err(UsageError)?,
                    "linger" => a.linger = args::duration(&value).map_err(UsageError)?,
                    _ => a.mode = parse_mode(&value)?,
                }
                continue;
            }
            _ => {
                return Err(UsageError(format!(
                    "flag provided but not defined: -{name}; see -h for the flags"
                )))
            }
        };
        *flag = match value {
            Some(v) => parse_bool(name, v)?,
            None => true,
        };
    }
    let rest = &argv[i..];
    match rest {
        [] => Err(UsageError(
            "no pipe given; write the pipe last, like -ei -s //./pipe/openssh-ssh-agent".into(),
        )),
        [target] if target.is_empty() => Err(UsageError("the pipe name is empty".into())),
        [target] => {
            a.target = target.clone();
            Ok(Parsed::Run(a))
        }
        [target, extra, ..] => Err(UsageError(format!(
            "one pipe expected, got {target:?} and then {extra:?}; flags go before the pipe"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RelayArgs {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse(&argv) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse(&argv) {
            Err(UsageError(m)) => m,
            other => panic!("{args:?} should fail, gave {other:?}"),
        }
    }

    #[test]
    fn the_three_recipes() {
        let ssh = run(&["-ei", "-s", "//./pipe/openssh-ssh-agent"]);
        assert!(ssh.exit_on_stdin_eof && ssh.send_zero && !ssh.exit_on_pipe_eof);
        assert_eq!(ssh.target, "//./pipe/openssh-ssh-agent");
        let docker = run(&["-ep", "-s", "//./pipe/docker_engine"]);
        assert!(docker.exit_on_pipe_eof && docker.send_zero && !docker.exit_on_stdin_eof);
        let gpg = run(&[
            "-ei",
            "-ep",
            "-s",
            "-a",
            "C:/Users/me/AppData/Local/gnupg/S.gpg-agent",
        ]);
        assert!(gpg.assuan && gpg.exit_on_pipe_eof && gpg.exit_on_stdin_eof && gpg.send_zero);
        assert_eq!(gpg.target, "C:/Users/me/AppData/Local/gnupg/S.gpg-agent");
    }

    #[test]
    fn single_and_double_dashes_and_every_flag() {
        let a = run(&[
            "--p",
            "-l",
            "--s",
            "-ep",
            "--ei",
            "-v",
            "--bg",
            "-a",
            r"\\.\pipe\x",
        ]);
        assert!(a.poll && a.limit && a.send_zero && a.exit_on_pipe_eof);
        assert!(a.exit_on_stdin_eof && a.verbose && a.background && a.assuan);
        assert_eq!(a.target, r"\\.\pipe\x");
        let b = run(&["x"]);
        assert!(!b.poll && !b.send_zero && !b.assuan);
        assert_eq!(b.timeout, DEFAULT_POLL_TIMEOUT);
        assert_eq!(b.linger, DEFAULT_LINGER);
        assert_eq!(b.mode, ModeChoice::Auto);
    }

    #[test]
    fn go_style_boolean_values() {
        let a = run(&["-s=true", "-ep=1", "-ei=false", "--v=F", "x"]);
        assert!(a.send_zero && a.exit_on_pipe_eof && !a.exit_on_stdin_eof && !a.verbose);
        assert!(err(&["-s=yes", "x"]).contains("invalid boolean value \"yes\" for -s"));
    }

    #[test]
    fn value_flags_take_the_next_argument_or_an_equals() {
        let a = run(&[
            "-p",
            "-timeout",
            "5s",
            "--linger=250ms",
            "-mode",
            "message",
            "x",
        ]);
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!(a.linger, Duration::from_millis(250));
        assert_eq!(a.mode, ModeChoice::Message);
        assert_eq!(run(&["--mode=BYTE", "x"]).mode, ModeChoice::Byte);
    }

    #[test]
    fn help_and_version() {
        for h in ["-h", "--help", "-help"] {
            assert_eq!(parse(&[OsString::from(h)]), Ok(Parsed::Help));
        }
        assert_eq!(parse(&[OsString::from("--version")]), Ok(Parsed::Version));
        assert!(usage("npiperelay.exe").contains("-ei"));
    }

    #[test]
    fn parsing_stops_at_the_first_non_flag_and_at_double_dash() {
        assert!(err(&["x", "-s"]).contains("flags go before the pipe"));
        let a = run(&["-s", "--", "-odd-name"]);
        assert_eq!(a.target, "-odd-name");
        let dash = run(&["-"]);
        assert_eq!(dash.target, "-");
    }

    #[test]
    fn malformed_command_lines() {
        assert!(err(&[]).contains("no pipe given"));
        assert!(err(&["-s"]).contains("no pipe given"));
        assert!(err(&["-bogus", "x"]).contains("flag provided but not defined: -bogus"));
        assert!(err(&["-e", "x"]).contains("not defined: -e"));
        assert!(err(&["---s", "x"]).contains("bad flag syntax: ---s"));
        assert!(err(&["-=s", "x"]).contains("bad flag syntax"));
        assert!(err(&["-timeout"]).contains("flag needs an argument: -timeout"));
        assert!(err(&["-timeout", "soon", "x"]).contains("not a duration"));
        assert!(err(&["-linger=5", "x"]).contains("not a duration"));
        assert!(err(&["-mode", "stream", "x"]).contains("use auto, byte or message"));
        assert!(err(&["a", "b"]).contains("one pipe expected"));
        assert!(err(&[""]).contains("empty"));
        // Go's flag package reads -ei as one flag, never as -e -i.
        assert!(err(&["-ie", "x"]).contains("not defined: -ie"));
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_arguments_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff, 0xfe]);
        assert!(matches!(parse(&[bad]), Err(UsageError(m)) if m.contains("not valid Unicode")));
    }
}
