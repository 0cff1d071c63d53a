//! Command output on stdout. `println!` panics when the reader has gone away
//! (`pipewright ls | head -1`); these macros end the program quietly with exit code 0
//! instead, and report any other write error on stderr with exit code 1.
//!
//! ```ignore
//! outln!("generation: {}", 7);
//! ```

use std::fmt;
use std::io::{self, Write};

/// Writes formatted text to stdout (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), false)
    };
}

/// Writes a formatted line to stdout (see the module docs).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), true)
    };
}

/// The body of [`out!`] and [`outln!`].
pub fn write(args: fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        exit_on(&e);
    }
}

/// Ends the program for a failed write to stdout.
fn exit_on(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(crate::exit::OK));
    }
    eprintln!("pipewright: cannot write to stdout: {e}");
    std::process::exit(i32::from(crate::exit::FAILURE));
}
