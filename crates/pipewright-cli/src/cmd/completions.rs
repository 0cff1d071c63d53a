//! `pipewright completions SHELL`: the shell's completion script on stdout (clap_complete),
//! and the hidden `pipewright man [DIR]`: the man pages (clap_mangen), which
//! `cargo xtask man [DIR]` writes.
//!
//! ```text
//! pipewright completions bash > ~/.local/share/bash-completion/completions/pipewright
//! pipewright man target/man        # pipewright.1, pipewright-probe.1, ...
//! ```

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::exit;

/// Print a completion script for a shell.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Write the man pages (hidden: `cargo xtask man [DIR]` runs it).
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `pipewright.1` and one page per subcommand into this directory (created if
    /// missing); without it, print `pipewright.1` on stdout.
    pub dir: Option<PathBuf>,
}

/// The command line as clap sees it, for the generators.
fn command() -> clap::Command {
    crate::Cli::command()
}

/// Runs `completions` and returns the exit code.
pub async fn run(a: CompletionsArgs) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut command(), "pipewright", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    exit::OK
}

/// Runs `man` and returns the exit code.
pub async fn run_man(a: ManArgs) -> u8 {
    let result = match &a.dir {
        Some(dir) => write_pages(dir),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command())
                .render(&mut page)
                .map(|()| out!("{}", String::from_utf8_lossy(&page)))
        }
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            let place = a.dir.as_deref().unwrap_or(Path::new("stdout"));
            eprintln!(
                "pipewright man: cannot write the man pages to {}: {e}; give a directory you can write to",
                place.display()
            );
            exit::FAILURE
        }
    }
}

/// `pipewright.1` and `pipewright-SUBCOMMAND[-SUBCOMMAND].1` for every visible subcommand,
/// in `dir`.
fn write_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command(), dir)
}
