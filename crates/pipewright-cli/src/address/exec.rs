//! `exec:CMDLINE[,wsl][,distro=D][,user=U]`: a child process's stdin and stdout; with `wsl`
//! the command runs through `wsl.exe` in a WSL distribution.
//!
//! ```ignore
//! let side = Exec { argv: vec!["cat".into()], wsl: None }.spawn()?;
//! ```

use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::process::{Child, ChildStdin, Command};

use crate::exit;
use crate::failure::Failure;
use crate::join::Side;

/// Run the command in WSL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wsl {
    /// `wsl.exe -d`.
    pub distro: Option<String>,
    /// `wsl.exe -u`.
    pub user: Option<String>,
}

/// A command to run per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Run through `wsl.exe`.
    pub wsl: Option<Wsl>,
}

/// Splits a command line into words: blanks separate; `'...'` is literal; `"..."` groups,
/// with `\"` and `\\` inside; a backslash elsewhere is literal (Windows paths). Errors give
/// the byte offset (0-based) and the problem.
pub fn split_command_line(line: &str) -> Result<Vec<String>, (usize, String)> {
    // A value quoted as a whole (to protect its commas from the address grammar) is the
    // command line itself: `exec:"prog -a, -b"`.
    let trimmed = line.trim();
    for q in ['"', '\''] {
        if let Some(inner) = trimmed.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            if !inner.contains(q) {
                let offset = line.find(q).unwrap_or(0) + 1;
                return split_words(inner).map_err(|(i, m)| (i + offset, m));
            }
        }
    }
    split_words(line)
}

fn split_words(line: &str) -> Result<Vec<String>, (usize, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if c == '"' && d == '\\' {
                        if let Some(&(_, e)) = chars.peek() {
                            if e == '"' || e == '\\' {
                                word.push(e);
                                chars.next();
                                continue;
                            }
                        }
                    }
                    word.push(d);
                }
                if !closed {
                    return Err((i, format!("the quote {c} is never closed")));
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err((0, "empty command line: write exec:PROGRAM [ARGS...]".into()));
    }
    Ok(words)
}

/// The child's stdin; shutting it down closes it, so the child reads end of stream.
struct ClosingStdin(Option<ChildStdin>);

impl AsyncWrite for ClosingStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(w) => Pin::new(w).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(w) = self.0.as_mut() {
            std::task::ready!(Pin::new(w).poll_flush(cx))?;
        }
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

impl Exec {
    /// The program and arguments actually started.
    pub fn command_line(&self) -> Vec<String> {
        let Some(wsl) = &self.wsl else {
            return self.argv.clone();
        };
        let mut line = vec!["wsl.exe".to_string()];
        if let Some(d) = &wsl.distro {
            line.extend(["-d".to_string(), d.clone()]);
        }
        if let Some(u) = &wsl.user {
            line.extend(["-u".to_string(), u.clone()]);
        }
        line.push("--".into());
        line.extend(self.argv.iter().cloned());
        line
    }

    /// Starts the child with piped stdin and stdout (stderr is shared); it is killed when
    /// the connection ends.
    pub fn spawn(&self) -> Result<Side, Failure> {
        let line = self.command_line();
        let mut child: Child = Command::new(&line[0])
            .args(&line[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                let code = if e.kind() == std::io::ErrorKind::NotFound {
                    exit::NOT_FOUND
                } else {
                    exit::FAILURE
                };
                Failure::new(code, format!("exec {}: {e}", line[0]))
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        Ok(Side {
            label: format!("exec:{}", line[0]),
            reader: Box::new(stdout),
            writer: Box::new(ClosingStdin(Some(stdin))),
            half_close: true,
            eof_is_close: false,
            keep_alive: Some(Box::new(child)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_backslashes() {
        assert_eq!(split_command_line("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_command_line(r#"sh -c 'echo "x y"'"#).unwrap(),
            ["sh", "-c", r#"echo "x y""#]
        );
        assert_eq!(
            split_command_line(r#""a \"b\" \\c""#).unwrap(),
            [r#"a "b" \c"#]
        );
        assert_eq!(
            split_command_line(r"C:\tools\relay.exe -s").unwrap(),
            [r"C:\tools\relay.exe", "-s"]
        );
        assert_eq!(split_command_line(r#"x''y "" z"#).unwrap(), ["xy", "", "z"]);
        assert_eq!(
            split_command_line("'socat - TCP:h:1,crlf'").unwrap(),
            ["socat", "-", "TCP:h:1,crlf"]
        );
        assert_eq!(split_command_line(r#""a 'b c'""#).unwrap(), ["a", "b c"]);
        assert_eq!(split_command_line(r#""a" "b""#).unwrap(), ["a", "b"]);
    }

    #[test]
    fn malformed_command_lines() {
        assert_eq!(split_command_line("a 'b").unwrap_err().0, 2);
        assert!(split_command_line("").unwrap_err().1.contains("empty"));
        assert!(split_command_line("  ").unwrap_err().1.contains("empty"));
    }

    #[test]
    fn wsl_wraps_the_command() {
        let e = Exec {
            argv: vec!["socat".into(), "-".into()],
            wsl: Some(Wsl {
                distro: Some("Debian".into()),
                user: Some("me".into()),
            }),
        };
        assert_eq!(
            e.command_line(),
            ["wsl.exe", "-d", "Debian", "-u", "me", "--", "socat", "-"]
        );
    }
}
