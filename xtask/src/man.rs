//! `cargo xtask man [DIR]`: the man pages of `pipewright` (clap_mangen), written by the
//! command's hidden `pipewright man DIR` so they always match its arguments: `pipewright.1`
//! and `pipewright-SUBCOMMAND.1` for each subcommand, in `target/man` unless told otherwise.

use std::path::PathBuf;

/// Where the pages go without an argument.
fn default_dir() -> PathBuf {
    crate::root().join("target/man")
}

/// Builds `pipewright` and writes its man pages into `DIR` (default `target/man`).
pub fn run(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [] => default_dir(),
        [dir] => std::env::current_dir()
            .map_err(|e| format!("man: cannot read the current directory: {e}"))?
            .join(dir),
        _ => return Err("man: give at most one argument, the output directory".into()),
    };
    let mut c = crate::cargo();
    c.args([
        "run",
        "--quiet",
        "-p",
        "pipewright-cli",
        "--bin",
        "pipewright",
        "--",
    ]);
    c.arg("man").arg(&dir);
    crate::status(c, &format!("man pages into {}", dir.display()))?;
    println!(
        "man pages in {} (read one with: man {}/pipewright.1)",
        dir.display(),
        dir.display()
    );
    Ok(())
}
