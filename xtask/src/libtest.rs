//! Runs `cargo test`, echoing its output, adds up libtest's result lines and tells the
//! test binaries Wine itself failed from the ones whose tests failed.
//!
//! The output is read as a sequence of test binaries. A binary starts at cargo's
//! `     Running SRC (EXE)` or `   Doc-tests NAME` line and ends at its `test result:` line
//! (a passing binary), at cargo's `error: test failed, to rerun pass ...` or
//! `error: doctest failed, ...` line (a failed one), or at the end of the output. A line that
//! looks like cargo's `Running` line but comes while the binary has not printed its result yet
//! is the test's own output and changes nothing.
//!
//! A failed binary counts as a Wine fault (and may be rerun once) only when
//! - it printed no `test result:` line and its output shows that its process lost the
//!   wineserver ([`WINESERVER_LOST`]), or
//! - it printed its result, and every failed test's own output section (`---- NAME stdout
//!   ----` under `failures:`) holds the signature of Wine failing to create a process,
//!   `ERROR_INTERNAL_ERROR` ([`WINE_INTERNAL_ERROR`]).
//!
//! A marker anywhere else (in a passing test's `--show-output` section, in a child process's
//! stderr, next to a failed assertion in another failed test) leaves the failure a failure.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// What Wine prints when a process loses its wineserver (server crash or reset).
pub const WINESERVER_LOST: [&str; 2] = ["wine client error:", "wineserver crashed"];

/// How `ERROR_INTERNAL_ERROR` (1359) reads in a test's output: Wine fails process creation
/// with it under heavy load.
pub const WINE_INTERNAL_ERROR: [&str; 2] = ["Os { code: 1359,", "(os error 1359)"];

/// Test counts over every test binary of one run.
#[derive(Debug, Default)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Tests that passed by skipping themselves at run time (Wine differences).
    pub skipped: u64,
    pub binaries: u64,
    pub skip_reasons: Vec<String>,
    /// Test binaries that failed (cargo's rerun arguments, e.g. `-p x --test y`, or the
    /// executable when cargo gave none).
    pub failed_binaries: Vec<String>,
    /// The failed binaries that Wine itself failed (a Wine fault, not a test failure).
    pub lost_to_wine: Vec<LostBinary>,
    /// The binary being read.
    current: Option<Binary>,
}

/// A test binary Wine failed, with what it had counted, so a rerun can replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostBinary {
    /// cargo's rerun arguments, e.g. `-p x --test y`.
    pub args: String,
    /// The executable cargo ran, as cargo printed it (relative to the workspace root).
    pub exe: String,
    /// Which Wine fault it showed.
    pub why: &'static str,
    counted: [u64; 5],
}

impl LostBinary {
    /// The package (`-p NAME` of cargo's rerun arguments), if cargo named one.
    pub fn package(&self) -> Option<&str> {
        let mut words = self.args.split_whitespace();
        while let Some(w) = words.next() {
            if w == "-p" || w == "--package" {
                return words.next();
            }
        }
        None
    }
}

/// Where in its output a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Running its tests (`test NAME ... ok` lines, child output).
    Tests,
    /// The `successes:` output blocks (`--show-output`).
    SuccessOutput,
    /// The list of passed tests.
    SuccessList,
    /// The `failures:` output blocks.
    FailureOutput,
    /// The list of failed tests.
    FailureList,
}

/// One test binary's output as far as it has been read.
#[derive(Debug)]
struct Binary {
    /// The executable (`None` for doctests).
    exe: Option<String>,
    /// Its last `test result:` line: passed, failed, ignored.
    result: Option<[u64; 3]>,
    skipped: u64,
    section: Section,
    /// The failed test whose output block is being read.
    block: Option<String>,
    /// Failed tests whose output block holds the 1359 signature.
    internal_error: Vec<String>,
    /// Failed tests, from the list under the second `failures:` line.
    failed_tests: Vec<String>,
    /// The wineserver-lost signature appeared anywhere in its output.
    wineserver_lost: bool,
}

impl Binary {
    fn new(exe: Option<String>) -> Binary {
        Binary {
            exe,
            result: None,
            skipped: 0,
            section: Section::Tests,
            block: None,
            internal_error: Vec::new(),
            failed_tests: Vec::new(),
            wineserver_lost: false,
        }
    }

    /// passed, failed, ignored, skipped, binaries.
    fn counted(&self) -> [u64; 5] {
        let [p, f, i] = self.result.unwrap_or_default();
        [p, f, i, self.skipped, u64::from(self.result.is_some())]
    }

    /// Why this failed binary is a Wine fault, or `None` when it is a real failure.
    fn wine_fault(&self) -> Option<&'static str> {
        let Some([_, failed, _]) = self.result else {
            return self
                .wineserver_lost
                .then_some("its process lost the wineserver before printing a result");
        };
        let all_internal = failed > 0
            && self.failed_tests.len() as u64 == failed
            && self
                .failed_tests
                .iter()
                .all(|t| self.internal_error.contains(t));
        all_internal.then_some("Wine failed to create a process (ERROR_INTERNAL_ERROR, 1359)")
    }

    fn observe(&mut self, line: &str) {
        if WINESERVER_LOST.iter().any(|w| line.contains(w)) {
            self.wineserver_lost = true;
        }
        match (self.section, line.trim_end()) {
            (Section::Tests, "successes:") => self.section = Section::SuccessOutput,
            (Section::SuccessOutput, "successes:") => self.section = Section::SuccessList,
            (Section::Tests | Section::SuccessOutput | Section::SuccessList, "failures:") => {
                self.section = Section::FailureOutput
            }
            (Section::FailureOutput, "failures:") => {
                self.block = None;
                self.section = Section::FailureList;
            }
            (Section::FailureOutput, l) => {
                if let Some(name) = block_name(l) {
                    self.block = Some(name.to_string());
                } else if let Some(name) = &self.block {
                    if WINE_INTERNAL_ERROR.iter().any(|w| l.contains(w))
                        && !self.internal_error.contains(name)
                    {
                        self.internal_error.push(name.clone());
                    }
                }
            }
            (Section::FailureList, l) => {
                if let Some(name) = l.strip_prefix("    ") {
                    self.failed_tests.push(name.to_string());
                }
            }
            _ => {}
        }
    }
}

/// `NAME` of a `---- NAME stdout ----` line.
fn block_name(line: &str) -> Option<&str> {
    line.strip_prefix("---- ")?.strip_suffix(" stdout ----")
}

/// cargo's `     Running SRC (EXE)` line: the executable.
fn running_line(line: &str) -> Option<&str> {
    if !line.starts_with(' ') {
        return None;
    }
    let rest = line.trim_start().strip_prefix("Running ")?;
    let (_, exe) = rest.strip_suffix(')')?.rsplit_once(" (")?;
    Some(exe)
}

/// cargo's `   Doc-tests NAME` line.
fn doctests_line(line: &str) -> bool {
    line.starts_with(' ') && line.trim_start().starts_with("Doc-tests ")
}

/// cargo's verdict on a failed binary: its rerun arguments.
fn failed_line(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("error: test failed, to rerun pass `")
        .or_else(|| line.strip_prefix("error: doctest failed, to rerun pass `"))?;
    Some(rest.trim_end().trim_end_matches('`'))
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.failed_binaries
            .extend(other.failed_binaries.iter().cloned());
        self.lost_to_wine.extend(other.lost_to_wine.iter().cloned());
        self.add_numbers(other.numbers());
    }

    /// Takes back what a binary Wine failed had counted (before its rerun is added).
    pub fn forget(&mut self, lost: &LostBinary) {
        let now = self.numbers();
        self.set_numbers(std::array::from_fn(|i| {
            now[i].saturating_sub(lost.counted[i])
        }));
    }

    fn numbers(&self) -> [u64; 5] {
        [
            self.passed,
            self.failed,
            self.ignored,
            self.skipped,
            self.binaries,
        ]
    }

    fn set_numbers(&mut self, n: [u64; 5]) {
        [
            self.passed,
            self.failed,
            self.ignored,
            self.skipped,
            self.binaries,
        ] = n;
    }

    fn add_numbers(&mut self, n: [u64; 5]) {
        let now = self.numbers();
        self.set_numbers(std::array::from_fn(|i| now[i] + n[i]));
    }

    pub fn describe(&self) -> String {
        format!(
            "{} passed, {} failed, {} ignored, {} of the passed skipped themselves at run time ({} test binaries)",
            self.passed, self.failed, self.ignored, self.skipped, self.binaries
        )
    }

    /// Starts reading the output of one binary run directly (not through cargo).
    pub fn start_binary(&mut self, exe: &str) {
        self.end_binary(None);
        self.current = Some(Binary::new(Some(exe.to_string())));
    }

    /// Ends the binary being read: counts it and, when `failed_args` is given (cargo's
    /// rerun arguments), records it as failed and tells whether Wine failed it.
    fn end_binary(&mut self, failed_args: Option<&str>) {
        let Some(b) = self.current.take() else {
            if let Some(args) = failed_args {
                self.failed_binaries.push(args.to_string());
            }
            return;
        };
        let counted = b.counted();
        self.add_numbers(counted);
        let Some(args) = failed_args else { return };
        self.failed_binaries.push(args.to_string());
        if let (Some(why), Some(exe)) = (b.wine_fault(), &b.exe) {
            self.lost_to_wine.push(LostBinary {
                args: args.to_string(),
                exe: exe.clone(),
                why,
                counted,
            });
        }
    }

    /// Ends cargo's output: the binary being read (if any) got no verdict from cargo.
    pub fn finish(&mut self) {
        self.end_binary(None);
    }

    /// Ends the output of a binary run directly (see [`start_binary`](Self::start_binary)),
    /// which exited with `success`: a failure is recorded under its executable.
    pub fn finish_binary(&mut self, success: bool) {
        match self.current.as_ref().and_then(|b| b.exe.clone()) {
            Some(exe) if !success => self.end_binary(Some(&exe)),
            _ => self.end_binary(None),
        }
    }

    /// Reads one line of cargo's and libtest's output.
    pub fn observe(&mut self, line: &str) {
        let between = self.current.as_ref().is_none_or(|b| b.result.is_some());
        if between {
            if let Some(exe) = running_line(line) {
                self.end_binary(None);
                self.current = Some(Binary::new(Some(exe.to_string())));
                return;
            }
            if doctests_line(line) {
                self.end_binary(None);
                self.current = Some(Binary::new(None));
                return;
            }
        }
        if let Some(args) = failed_line(line) {
            self.end_binary(Some(args));
            return;
        }
        if let Some(rest) = line.trim().strip_prefix("test result: ") {
            let b = self.current.get_or_insert_with(|| Binary::new(None));
            let mut n = [0; 3];
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(count) = count.parse::<u64>() else {
                    continue;
                };
                match what {
                    "passed" => n[0] = count,
                    "failed" => n[1] = count,
                    "ignored" => n[2] = count,
                    _ => {}
                }
            }
            b.result = Some(n);
            return;
        }
        if let Some(idx) = line.find("SKIPPED under Wine: ") {
            let reason = line[idx + "SKIPPED under Wine: ".len()..]
                .trim()
                .to_string();
            if !self.skip_reasons.contains(&reason) {
                self.skip_reasons.push(reason);
            }
            match self.current.as_mut() {
                Some(b) => b.skipped += 1,
                None => self.skipped += 1,
            }
        }
        if let Some(b) = self.current.as_mut() {
            b.observe(line);
        }
    }
}

/// How long output is still read after the command has exited (see [`run`]).
const AFTER_EXIT: Duration = Duration::from_secs(20);

/// Runs `cmd`, printing its output as it comes, and returns the counts and whether it exited 0.
/// cargo's stderr and the test binaries' stdout share one pipe, so the lines are read in the
/// order they were written (a binary's `Running` line, its output, cargo's verdict on it).
pub fn run_counted(cmd: Command, what: &str) -> Result<(Counts, bool), String> {
    run(cmd, what, Counts::default(), false)
}

/// Runs one test binary directly (`cmd` starts `exe`, e.g. under Wine) and counts it as
/// [`run_counted`] does; a non-zero exit makes it a failed binary named by `exe`.
pub fn run_binary(cmd: Command, what: &str, exe: &str) -> Result<(Counts, bool), String> {
    let mut counts = Counts::default();
    counts.start_binary(exe);
    run(cmd, what, counts, true)
}

fn run(
    mut cmd: Command,
    what: &str,
    mut counts: Counts,
    direct: bool,
) -> Result<(Counts, bool), String> {
    eprintln!("xtask: {what}");
    let (reader, writer) = std::io::pipe().map_err(|e| format!("{what}: pipe: {e}"))?;
    let for_stderr = writer
        .try_clone()
        .map_err(|e| format!("{what}: pipe: {e}"))?;
    cmd.stdout(writer).stderr(for_stderr);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    // Our copies of the write end must close, or the reader never sees the end.
    drop(cmd);
    let (lines, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The output ends when every process holding the pipe has closed it. A test process that
    // died (under Wine: lost its wineserver) can leave children holding it for ever, so once
    // the command itself has exited, what follows is bounded.
    let mut exited_at = None;
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                println!("{line}");
                counts.observe(&line);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if exited_at.is_none()
                    && child
                        .try_wait()
                        .map_err(|e| format!("{what}: {e}"))?
                        .is_some()
                {
                    exited_at = Some(Instant::now());
                }
                if exited_at.is_some_and(|t| t.elapsed() > AFTER_EXIT) {
                    eprintln!(
                        "xtask: {what}: the command exited {} s ago but processes it left behind still hold its output; going on without them",
                        AFTER_EXIT.as_secs()
                    );
                    break;
                }
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    if direct {
        counts.finish_binary(status.success());
    } else {
        counts.finish();
    }
    Ok((counts, status.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &str) -> Counts {
        let mut c = Counts::default();
        for line in lines.lines() {
            c.observe(line);
        }
        c.finish();
        c
    }

    fn lost(c: &Counts) -> Vec<&str> {
        c.lost_to_wine.iter().map(|l| l.args.as_str()).collect()
    }

    const PASSING: &str = "     Running tests/a.rs (target/debug/deps/a-1.exe)

running 8 tests
test a1 ... ok
test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1s
";

    #[test]
    fn a_binary_whose_only_failure_holds_1359_is_replaced_by_its_rerun() {
        let c = read(&format!(
            "{PASSING}     Running tests/http_cli.rs (target/windows/x/debug/deps/http_cli-1.exe)

running 6 tests
test serves ... ok
test forwards ... FAILED

failures:

---- forwards stdout ----
run pipewright: Os {{ code: 1359, kind: Uncategorized, message: \"Internal error.\" }}
thread 'forwards' panicked at tests/http_cli.rs:40:5:

failures:
    forwards

test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test http_cli`
"
        ));
        assert_eq!((c.passed, c.failed, c.binaries), (12, 1, 2));
        let mut c = c;
        let l = c.lost_to_wine[0].clone();
        assert_eq!(l.args, "-p pw --test http_cli");
        assert_eq!(l.exe, "target/windows/x/debug/deps/http_cli-1.exe");
        assert_eq!(l.package(), Some("pw"));
        c.forget(&l);
        assert_eq!((c.passed, c.failed, c.ignored, c.binaries), (7, 0, 1, 1));
        let mut rerun = Counts::default();
        rerun.start_binary(&l.exe);
        rerun.observe("test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured");
        rerun.finish_binary(true);
        c.add(&rerun);
        assert_eq!((c.passed, c.failed, c.binaries), (13, 0, 2));
        assert!(rerun.failed_binaries.is_empty());
    }

    #[test]
    fn a_binary_that_lost_the_wineserver_before_its_result_is_a_wine_fault() {
        let c = read(
            "     Running tests/a.rs (target/debug/deps/a-1.exe)

running 3 tests
test one ... ok
wine client error:0: recvmsg: Connection reset by peer
error: test failed, to rerun pass `-p pw --test a`

Caused by:
  process didn't exit successfully: `wine64 target/debug/deps/a-1.exe` (exit status: 5)
",
        );
        assert_eq!(lost(&c), ["-p pw --test a"]);
        assert_eq!(c.failed_binaries, ["-p pw --test a"]);
        assert_eq!((c.passed, c.failed, c.binaries), (0, 0, 0));
    }

    #[test]
    fn a_real_assertion_failure_next_to_a_marker_stays_a_failure() {
        // The lost-wineserver marker is in a child's stderr, but the binary printed its
        // result: its failure is real.
        let c = read(
            "     Running tests/b.rs (target/debug/deps/b-1.exe)

running 2 tests
wine client error:0: recvmsg: Connection reset by peer
test one ... ok
test two ... FAILED

failures:

---- two stdout ----
thread 'two' panicked at tests/b.rs:9:5:
assertion `left == right` failed
  left: 1
 right: 2

failures:
    two

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test b`
",
        );
        assert!(c.lost_to_wine.is_empty(), "{:?}", c.lost_to_wine);
        assert_eq!(c.failed_binaries, ["-p pw --test b"]);
        assert_eq!((c.passed, c.failed), (1, 1));
    }

    #[test]
    fn a_1359_marker_in_a_passing_tests_output_does_not_excuse_a_failure() {
        let c = read(
            "     Running tests/c.rs (target/debug/deps/c-1.exe)

running 2 tests
test flaky_child ... ok
test real ... FAILED

successes:

---- flaky_child stdout ----
first spawn: Os { code: 1359, kind: Uncategorized, message: \"Internal error.\" }
retried: ok

successes:
    flaky_child

failures:

---- real stdout ----
thread 'real' panicked at tests/c.rs:3:5:
the server answered 500

failures:
    real

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test c`
",
        );
        assert!(c.lost_to_wine.is_empty(), "{:?}", c.lost_to_wine);
        assert_eq!(c.failed_binaries, ["-p pw --test c"]);
    }

    #[test]
    fn one_failed_test_without_the_1359_signature_makes_the_binary_a_failure() {
        let c = read(
            "     Running tests/d.rs (target/debug/deps/d-1.exe)

running 2 tests
test spawns ... FAILED
test asserts ... FAILED

failures:

---- asserts stdout ----
thread 'asserts' panicked at tests/d.rs:3:5:
assertion failed: reply.is_ok()

---- spawns stdout ----
spawn: Os { code: 1359, kind: Uncategorized, message: \"Internal error.\" }

failures:
    asserts
    spawns

test result: FAILED. 0 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test d`
",
        );
        assert!(c.lost_to_wine.is_empty(), "{:?}", c.lost_to_wine);
        // The same binary with only the 1359 test failing is a Wine fault.
        let c = read(
            "     Running tests/d.rs (target/debug/deps/d-1.exe)
test spawns ... FAILED

failures:

---- spawns stdout ----
spawn: Internal error. (os error 1359)

failures:
    spawns

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test d`
",
        );
        assert_eq!(lost(&c), ["-p pw --test d"]);
    }

    #[test]
    fn a_binary_that_printed_its_result_is_never_a_lost_wineserver_fault() {
        let c = read(
            "     Running tests/e.rs (target/debug/deps/e-1.exe)
test t ... FAILED
wine client error:0: recvmsg: Connection reset by peer

failures:

---- t stdout ----
wineserver crashed

failures:
    t

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test e`
",
        );
        assert!(c.lost_to_wine.is_empty(), "{:?}", c.lost_to_wine);
    }

    #[test]
    fn a_running_line_inside_test_output_resets_nothing() {
        // Without a result line the binary is still running: the test's `Running ...` line
        // neither ends it nor hides the fault of the binary that printed the marker.
        let c = read(
            "     Running tests/f.rs (target/debug/deps/f-1.exe)
test t ... ok
wine client error:0: recvmsg: Connection reset by peer
     Running 8 clients (pid 42)
     Running tests/fake.rs (target/debug/deps/fake-1.exe)
error: test failed, to rerun pass `-p pw --test f`
     Running tests/g.rs (target/debug/deps/g-1.exe)
test t ... FAILED

failures:

---- t stdout ----
     Running tests/h.rs (target/debug/deps/h-1.exe)
spawn: Os { code: 1359, kind: Uncategorized }
     Running the second half

failures:
    t

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: test failed, to rerun pass `-p pw --test g`
",
        );
        let exes: Vec<&str> = c.lost_to_wine.iter().map(|l| l.exe.as_str()).collect();
        assert_eq!(
            exes,
            ["target/debug/deps/f-1.exe", "target/debug/deps/g-1.exe"]
        );
        assert_eq!(c.failed_binaries, ["-p pw --test f", "-p pw --test g"]);
    }

    #[test]
    fn a_failed_doctest_counts_as_a_failed_binary_and_is_never_rerun() {
        let c = read(
            "   Doc-tests pipewright

running 1 test
test src/lib.rs - f (line 1) ... FAILED

failures:

---- src/lib.rs - f (line 1) stdout ----
Os { code: 1359, kind: Uncategorized }

failures:
    src/lib.rs - f (line 1)

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out

error: doctest failed, to rerun pass `-p pipewright --doc`
error: 1 target failed:
    `-p pipewright --doc`
",
        );
        assert_eq!(c.failed_binaries, ["-p pipewright --doc"]);
        assert!(c.lost_to_wine.is_empty());
        assert_eq!((c.failed, c.binaries), (1, 1));
    }

    #[test]
    fn adds_up_result_lines_and_wine_skips() {
        let c = read(
            "     Running tests/a.rs (target/debug/deps/a-1.exe)
SKIPPED under Wine: DACLs are not enforced
test result: ok. 16 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 13.71s
     Running tests/b.rs (target/debug/deps/b-1.exe)
SKIPPED under Wine: DACLs are not enforced
test foo ... ok
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s
",
        );
        assert_eq!(
            (c.passed, c.failed, c.ignored, c.skipped, c.binaries),
            (19, 1, 2, 2, 2)
        );
        assert_eq!(c.skip_reasons, vec!["DACLs are not enforced".to_string()]);
    }

    #[test]
    fn runs_a_binary_directly_and_reads_its_exit_status() {
        let script = "echo 'test result: FAILED. 2 passed; 1 failed; 0 ignored'; exit 101";
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let (c, ok) = run_binary(cmd, "a failing binary", "deps/t-1.exe").unwrap();
        assert!(!ok);
        assert_eq!((c.passed, c.failed, c.binaries), (2, 1, 1));
        assert_eq!(c.failed_binaries, ["deps/t-1.exe"]);
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'test result: ok. 3 passed; 0 failed; 0 ignored'",
        ]);
        let (c, ok) = run_binary(cmd, "a passing binary", "deps/t-1.exe").unwrap();
        assert!(ok && c.failed_binaries.is_empty());
        assert_eq!((c.passed, c.binaries), (3, 1));
    }

    #[test]
    fn a_directly_run_binary_that_exits_non_zero_is_a_failed_binary() {
        let mut c = Counts::default();
        c.start_binary("target/debug/deps/a-1.exe");
        c.observe("test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured");
        c.finish_binary(false);
        assert_eq!(c.failed_binaries, ["target/debug/deps/a-1.exe"]);
        assert_eq!((c.passed, c.failed, c.binaries), (1, 1, 1));
    }
}
