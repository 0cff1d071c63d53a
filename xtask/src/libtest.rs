//! Runs `cargo test`, echoing its output, and adds up libtest's result lines.

use std::io::{BufRead, BufReader};
use std::process::Command;

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
    /// Test binaries that failed (cargo's rerun arguments, e.g. `-p x --test y`).
    pub failed_binaries: Vec<String>,
    /// The failed binaries that Wine itself failed (a Wine fault, not a test failure).
    pub lost_to_wine: Vec<LostBinary>,
    /// Wine reported a fault of its own since the last `Running` line.
    wine_lost: bool,
    /// The counts when the current binary started (its `Running` line).
    mark: [u64; 5],
}

/// A test binary Wine failed, with what it had counted, so a rerun can replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostBinary {
    /// cargo's rerun arguments, e.g. `-p x --test y`.
    pub args: String,
    counted: [u64; 5],
}

/// What Wine prints when it fails a process itself: the process lost its wineserver
/// (server crash or reset), or process creation failed inside Wine with
/// `ERROR_INTERNAL_ERROR` (1359), seen when a test starts a child under heavy Wine load.
const WINE_LOST: [&str; 3] = [
    "wine client error:",
    "wineserver crashed",
    "Os { code: 1359, kind: Uncategorized",
];

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.failed_binaries
            .extend(other.failed_binaries.iter().cloned());
        self.lost_to_wine.extend(other.lost_to_wine.iter().cloned());
        self.set_numbers(std::array::from_fn(|i| {
            self.numbers()[i] + other.numbers()[i]
        }));
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

    pub fn describe(&self) -> String {
        format!(
            "{} passed, {} failed, {} ignored, {} of the passed skipped themselves at run time ({} test binaries)",
            self.passed, self.failed, self.ignored, self.skipped, self.binaries
        )
    }

    /// Reads one line of libtest output.
    pub fn observe(&mut self, line: &str) {
        if let Some(rest) = line.trim().strip_prefix("test result: ") {
            self.binaries += 1;
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        } else if line.trim_start().starts_with("Running ") {
            self.wine_lost = false;
            self.mark = self.numbers();
        } else if WINE_LOST.iter().any(|w| line.contains(w)) {
            self.wine_lost = true;
        } else if let Some(rest) = line.strip_prefix("error: test failed, to rerun pass `") {
            let args = rest.trim_end().trim_end_matches('`').to_string();
            if std::mem::take(&mut self.wine_lost) {
                let (now, mark) = (self.numbers(), self.mark);
                self.lost_to_wine.push(LostBinary {
                    args: args.clone(),
                    counted: std::array::from_fn(|i| now[i] - mark[i]),
                });
            }
            self.failed_binaries.push(args);
        } else if let Some(idx) = line.find("SKIPPED under Wine: ") {
            self.skipped += 1;
            let reason = line[idx + "SKIPPED under Wine: ".len()..]
                .trim()
                .to_string();
            if !self.skip_reasons.contains(&reason) {
                self.skip_reasons.push(reason);
            }
        }
    }
}

/// Runs `cmd`, printing its output as it comes, and returns the counts and whether it exited 0.
/// cargo's stderr and the test binaries' stdout share one pipe, so the lines are read in the
/// order they were written (a binary's `Running` line, its output, cargo's verdict on it).
pub fn run_counted(mut cmd: Command, what: &str) -> Result<(Counts, bool), String> {
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
    let mut counts = Counts::default();
    for line in BufReader::new(reader).lines().map_while(Result::ok) {
        println!("{line}");
        counts.observe(&line);
    }
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    Ok((counts, status.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_wine_could_not_start_a_child_for_is_replaced_by_its_rerun() {
        let mut c = Counts::default();
        c.observe("     Running tests/a.rs (target/debug/deps/a-1.exe)");
        c.observe("test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured");
        c.observe("     Running tests/http_cli.rs (target/debug/deps/http_cli-1.exe)");
        c.observe(
            "run pipewright: Os { code: 1359, kind: Uncategorized, message: \"Internal error.\" }",
        );
        c.observe("test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured");
        c.observe("error: test failed, to rerun pass `-p pw --test http_cli`");
        assert_eq!((c.passed, c.failed, c.binaries), (12, 1, 2));
        let lost = c.lost_to_wine[0].clone();
        assert_eq!(lost.args, "-p pw --test http_cli");
        c.forget(&lost);
        assert_eq!((c.passed, c.failed, c.ignored, c.binaries), (7, 0, 1, 1));
        let mut rerun = Counts::default();
        rerun.observe("test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured");
        c.add(&rerun);
        assert_eq!((c.passed, c.failed, c.binaries), (13, 0, 2));
    }

    #[test]
    fn adds_up_result_lines_and_wine_skips() {
        let mut c = Counts::default();
        c.observe("test result: ok. 16 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 13.71s");
        c.observe("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s");
        c.observe("SKIPPED under Wine: DACLs are not enforced");
        c.observe("SKIPPED under Wine: DACLs are not enforced");
        c.observe("test foo ... ok");
        assert_eq!(
            (c.passed, c.failed, c.ignored, c.skipped, c.binaries),
            (19, 1, 2, 2, 2)
        );
        assert_eq!(c.skip_reasons, vec!["DACLs are not enforced".to_string()]);
    }

    #[test]
    fn tells_binaries_wine_lost_from_failed_ones() {
        let mut c = Counts::default();
        c.observe("     Running tests/a.rs (target/debug/deps/a-1.exe)");
        c.observe("wine client error:0: recvmsg: Connection reset by peer");
        c.observe("error: test failed, to rerun pass `-p pw --test a`");
        c.observe("     Running tests/b.rs (target/debug/deps/b-1.exe)");
        c.observe("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured");
        c.observe("error: test failed, to rerun pass `-p pw --test b`");
        c.observe("     Running tests/c.rs (target/debug/deps/c-1.exe)");
        c.observe("wine client error:0: recvmsg: Connection reset by peer");
        c.observe("     Running tests/d.rs (target/debug/deps/d-1.exe)");
        c.observe("error: test failed, to rerun pass `-p pw --lib`");
        let lost: Vec<&str> = c.lost_to_wine.iter().map(|l| l.args.as_str()).collect();
        assert_eq!(lost, ["-p pw --test a"]);
        assert_eq!(
            c.failed_binaries,
            ["-p pw --test a", "-p pw --test b", "-p pw --lib"]
        );
    }
}
