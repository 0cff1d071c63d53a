//! The address grammar, `TYPE[:VALUE][,KEY[=VALUE]]...`, split into its parts with the
//! position of each, so that errors can point at the offending character. Quotes (`"..."`
//! or `'...'`) protect commas; they are kept in the text for `exec:` (its command line is
//! split later) and removed by [`Part::unquoted`].
//!
//! ```ignore
//! let raw = grammar::split("npipe:docker_engine,mode=message")?;
//! assert_eq!(raw.kind.text, "npipe");
//! ```

use std::fmt;

/// A piece of the address and the column (1-based, in characters) where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The text as written.
    pub text: String,
    /// 1-based column of its first character.
    pub column: usize,
}

impl Part {
    /// The text with quotes removed.
    pub fn unquoted(&self) -> String {
        let mut out = String::new();
        let mut quote = None;
        for c in self.text.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                _ => out.push(c),
            }
        }
        out
    }
}

/// One `KEY[=VALUE]` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    /// The key, lower-cased.
    pub key: Part,
    /// The value, if `=` was given.
    pub value: Option<Part>,
}

/// An address split into its type, value and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAddress {
    /// The type, lower-cased.
    pub kind: Part,
    /// Everything after the first `:` up to the first unquoted comma.
    pub value: Option<Part>,
    /// The options after the value.
    pub options: Vec<RawOption>,
}

/// A bad address: where, what, and the syntax that was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    /// The whole address as given.
    pub input: String,
    /// 1-based column of the problem.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The syntax expected there.
    pub expected: String,
}

impl AddressError {
    /// An error at `column` of `input`.
    pub fn new(
        input: &str,
        column: usize,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        AddressError {
            input: input.to_string(),
            column,
            message: message.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "bad address at column {}: {}", self.column, self.message)?;
        writeln!(f, "  {}", self.input)?;
        writeln!(f, "  {}^", " ".repeat(self.column.saturating_sub(1)))?;
        write!(f, "expected: {}", self.expected)
    }
}

impl std::error::Error for AddressError {}

/// The general form, for errors before the type is known.
pub const GENERAL_SYNTAX: &str = "TYPE[:VALUE][,OPTION[=VALUE]]... where TYPE is stdio, npipe, npipe-listen, tcp, tcp-listen, unix, unix-listen, exec or assuan";

/// Splits an address at unquoted commas, then the first piece at its first `:`.
pub fn split(input: &str) -> Result<RawAddress, AddressError> {
    let mut pieces: Vec<Part> = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut quote: Option<(char, usize)> = None;
    for (i, c) in input.chars().enumerate() {
        let column = i + 1;
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some((c, column));
                current.push(c);
            }
            (Some((q, _)), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ',') => {
                pieces.push(Part {
                    text: std::mem::take(&mut current),
                    column: start,
                });
                start = column + 1;
            }
            _ => current.push(c),
        }
    }
    if let Some((q, column)) = quote {
        return Err(AddressError::new(
            input,
            column,
            format!("the quote {q} is never closed"),
            format!("a closing {q}"),
        ));
    }
    pieces.push(Part {
        text: current,
        column: start,
    });
    let mut pieces = pieces.into_iter();
    let head = pieces.next().expect("at least one piece");
    let (kind, value) = match head.text.split_once(':') {
        Some((k, v)) => (
            Part {
                text: k.to_ascii_lowercase(),
                column: head.column,
            },
            Some(Part {
                text: v.to_string(),
                column: head.column + k.chars().count() + 1,
            }),
        ),
        None => (
            Part {
                text: head.text.to_ascii_lowercase(),
                column: head.column,
            },
            None,
        ),
    };
    if kind.text.is_empty() {
        return Err(AddressError::new(
            input,
            kind.column,
            "the address has no type",
            GENERAL_SYNTAX,
        ));
    }
    let mut options = Vec::new();
    for piece in pieces {
        if piece.text.is_empty() {
            return Err(AddressError::new(
                input,
                piece.column,
                "empty option (two commas in a row, or a comma at the end)",
                "OPTION or OPTION=VALUE after each comma",
            ));
        }
        let (key, value) = match piece.text.split_once('=') {
            Some((k, v)) => (
                k,
                Some(Part {
                    text: v.to_string(),
                    column: piece.column + k.chars().count() + 1,
                }),
            ),
            None => (piece.text.as_str(), None),
        };
        if key.is_empty() {
            return Err(AddressError::new(
                input,
                piece.column,
                "an option has no name",
                "OPTION=VALUE",
            ));
        }
        options.push(RawOption {
            key: Part {
                text: key.to_ascii_lowercase(),
                column: piece.column,
            },
            value,
        });
    }
    Ok(RawAddress {
        kind,
        value,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_value_and_options_with_columns() {
        let raw = split("NPIPE-Listen:svc,backlog=8,mode=message,reuse").unwrap();
        assert_eq!(raw.kind.text, "npipe-listen");
        let value = raw.value.unwrap();
        assert_eq!((value.text.as_str(), value.column), ("svc", 14));
        assert_eq!(raw.options.len(), 3);
        assert_eq!(raw.options[0].key.text, "backlog");
        assert_eq!(raw.options[0].key.column, 18);
        assert_eq!(raw.options[0].value.as_ref().unwrap().text, "8");
        assert_eq!(raw.options[0].value.as_ref().unwrap().column, 26);
        assert_eq!(raw.options[2].value, None);
    }

    #[test]
    fn only_the_first_colon_splits() {
        let raw = split("tcp:127.0.0.1:80").unwrap();
        assert_eq!(raw.value.unwrap().text, "127.0.0.1:80");
        let bare = split("stdio").unwrap();
        assert_eq!(bare.value, None);
    }

    #[test]
    fn quotes_protect_commas_and_are_removed_on_request() {
        let raw = split(r#"exec:"sh -c 'echo a,b'",wsl"#).unwrap();
        let value = raw.value.unwrap();
        assert_eq!(value.text, r#""sh -c 'echo a,b'""#);
        assert_eq!(value.unquoted(), "sh -c 'echo a,b'");
        assert_eq!(raw.options[0].key.text, "wsl");
        let sddl = split("npipe-listen:x,sddl='D:P(A;;GA;;;AU)'").unwrap();
        assert_eq!(
            sddl.options[0].value.as_ref().unwrap().unquoted(),
            "D:P(A;;GA;;;AU)"
        );
    }

    #[test]
    fn malformed_addresses_point_at_the_problem() {
        let e = split("npipe:x,,mode=message").unwrap_err();
        assert_eq!(e.column, 9);
        assert!(e.message.contains("empty option"));
        let e = split("npipe:x,").unwrap_err();
        assert_eq!(e.column, 9);
        let e = split("exec:\"unterminated").unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.message.contains("never closed"));
        let e = split(":x").unwrap_err();
        assert!(e.message.contains("no type"));
        assert!(e.expected.contains("npipe-listen"));
        let e = split("").unwrap_err();
        assert_eq!(e.column, 1);
        let e = split("npipe:x,=3").unwrap_err();
        assert!(e.message.contains("no name"));
    }

    #[test]
    fn display_shows_a_caret_under_the_column() {
        let e = AddressError::new("tcp:host", 5, "no port", "tcp:HOST:PORT");
        let text = e.to_string();
        assert!(text.contains("column 5"));
        assert!(text.contains("\n      ^\n"), "{text:?}");
        assert!(text.ends_with("expected: tcp:HOST:PORT"));
    }
}
