//! `pipewright completions SHELL` prints a script that knows every subcommand, and
//! `pipewright man [DIR]` writes the man pages.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bounds a hang of a child process; never a measure of speed.
const HANG: Duration = Duration::from_secs(120);

/// Runs the command to its end (killed after [`HANG`]) and returns its output.
fn run(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => panic!("{what} (pid {id}) did not end within {HANG:?}"),
    }
}

fn pipewright(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    cmd.args(args);
    run(cmd)
}

fn stdout_of(args: &[&str]) -> String {
    let out = pipewright(args);
    assert!(
        out.status.success(),
        "pipewright {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the output is UTF-8")
}

/// The subcommands `pipewright --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for expected in ["probe", "relay", "bridge", "http", "rpc", "completions"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    names
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pipewright-{}-{name}", std::process::id()))
}

/// Whether `program` can be started here (a shell to check a script's syntax with).
fn available(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks a script's syntax with the shell when it is installed.
fn check_syntax(shell: &str, script: &str, check_flag: &str) {
    if !available(shell, &["-c", "exit 0"]) {
        eprintln!("{shell} is not installed here: the {shell} script's syntax is not checked");
        return;
    }
    let path = temp_path(&format!("completion.{shell}"));
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new(shell);
    cmd.arg(check_flag).arg(&path);
    let out = run(cmd);
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{shell} {check_flag}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_shell_gets_a_script_naming_every_subcommand() {
    let names = subcommands();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("pipewright"), "{shell}: {script}");
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "the {shell} script does not name `{name}`:\n{script}"
            );
        }
        match shell {
            "bash" => check_syntax("bash", &script, "-n"),
            "zsh" => check_syntax("zsh", &script, "-n"),
            "fish" => check_syntax("fish", &script, "--no-execute"),
            _ => {}
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let out = pipewright(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(err.contains(shell), "{err}");
    }
}

#[test]
fn man_prints_the_page_and_writes_one_per_subcommand() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH pipewright 1"), "{page}");
    let names = subcommands();
    for name in &names {
        // roff writes a hyphen as `\-` in running text (`pipewright\-wsl\-host(1)`).
        let roff = name.replace('-', "\\-");
        assert!(page.contains(&roff), "`{name}` missing:\n{page}");
    }

    let dir = temp_path("man");
    let _ = std::fs::remove_dir_all(&dir);
    stdout_of(&["man", dir.to_str().unwrap()]);
    let page = std::fs::read_to_string(dir.join("pipewright.1")).unwrap();
    assert!(page.contains(".TH pipewright 1"), "{page}");
    for name in &names {
        let file = dir.join(format!("pipewright-{name}.1"));
        let sub =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(sub.contains(&format!(".TH pipewright-{name} 1")), "{sub}");
    }
    assert!(
        !dir.join("pipewright-man.1").exists(),
        "the hidden `man` subcommand got a page"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn man_into_a_place_it_cannot_write_names_it_and_fails() {
    let file = temp_path("man-not-a-dir");
    std::fs::write(&file, b"a file, not a directory").unwrap();
    let below = file.join("pages");
    let out = pipewright(&["man", below.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write the man pages") && err.contains("man-not-a-dir"),
        "{err}"
    );
}
