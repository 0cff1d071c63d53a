//! Runs `cargo test`, echoing its output, and adds up libtest's result lines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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
    /// The failed binaries whose Wine process lost its wineserver connection before
    /// reporting any result (a Wine fault, not a test failure).
    pub lost_to_wine: Vec<String>,
    /// Wine reported a lost wineserver connection since the last `Running` line.
    wine_lost: bool,
}

/// What Wine prints when a process loses its wineserver (server crash or reset).
const WINE_LOST: [&str; 2] = ["wine client error:", "wineserver crashed"];

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.failed_binaries
            .extend(other.failed_binaries.iter().cloned());
        self.lost_to_wine.extend(other.lost_to_wine.iter().cloned());
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.skipped += other.skipped;
        self.binaries += other.binaries;
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
        } else if WINE_LOST.iter().any(|w| line.contains(w)) {
            self.wine_lost = true;
        } else if let Some(rest) = line.strip_prefix("error: test failed, to rerun pass `") {
            let args = rest.trim_end().trim_end_matches('`').to_string();
            if std::mem::take(&mut self.wine_lost) {
                self.lost_to_wine.push(args.clone());
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
pub fn run_counted(mut cmd: Command, what: &str) -> Result<(Counts, bool), String> {
    eprintln!("xtask: {what}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut counts = Counts::default();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            counts.observe(&line);
        }
        counts
    });
    let mut counts = Counts::default();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        counts.observe(&line);
    }
    let from_stderr = err_thread.join().unwrap_or_default();
    counts.add(&from_stderr);
    counts.skip_reasons.extend(from_stderr.skip_reasons);
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    Ok((counts, status.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.lost_to_wine, ["-p pw --test a"]);
        assert_eq!(
            c.failed_binaries,
            ["-p pw --test a", "-p pw --test b", "-p pw --lib"]
        );
    }
}
