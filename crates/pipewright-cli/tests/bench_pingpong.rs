//! `pipewright bench pingpong`: runs briefly and reports every case at every size, each with
//! its round trips checked by both sides. No timing is asserted: only the output's shape and
//! the counts.

mod cli_support;

use cli_support::{pipewright, run, stderr, stdout};

/// The cases this platform runs, in the order they are printed.
fn cases() -> &'static [&'static str] {
    if cfg!(windows) {
        &[
            "raw-byte",
            "raw-message",
            "byte",
            "message",
            "tokio",
            "blocking-byte",
            "blocking-message",
        ]
    } else {
        &[
            "raw-byte",
            "byte",
            "message",
            "blocking-byte",
            "blocking-message",
        ]
    }
}

#[test]
fn pingpong_reports_every_case_with_counted_round_trips() {
    let out = run(pipewright().args([
        "bench", "pingpong", "--rounds", "2", "--time", "150ms", "--size", "16,1KiB", "--json",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(v["rounds"], 2);
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2 * cases().len(), "{v}");
    for (i, row) in rows.iter().enumerate() {
        let size = [16, 1024][i / cases().len()];
        let case = cases()[i % cases().len()];
        assert_eq!(row["size"], size, "{row}");
        assert_eq!(row["case"], case, "{row}");
        assert_eq!(row["verified"], true, "{row}");
        let trips = row["round_trips"]
            .as_array()
            .expect("round trips per round");
        assert_eq!(trips.len(), 2, "{row}");
        assert!(
            trips.iter().all(|n| n.as_u64().is_some_and(|n| n > 0)),
            "{row}"
        );
        for key in ["round_trips_per_s", "p50_us", "p99_us", "ratio_to_raw"] {
            assert!(row[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {row}");
        }
        assert!(row["p50_us"].as_f64() <= row["p99_us"].as_f64(), "{row}");
        let raw = row["raw_case"].as_str().expect("raw case");
        assert!(raw.starts_with("raw-"), "{row}");
        if case.starts_with("raw-") {
            assert_eq!(raw, case, "a raw row is its own floor: {row}");
            assert_eq!(row["ratio_to_raw"], 1.0, "{row}");
        }
        if case == "blocking-message" && cfg!(windows) {
            assert_eq!(raw, "raw-message", "{row}");
        }
    }
}

#[test]
fn pingpong_prints_a_table_with_the_ratio_to_the_raw_row() {
    let out = run(pipewright().args([
        "bench", "pingpong", "--rounds", "1", "--time", "100ms", "--size", "64",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("bench pingpong:"), "{text}");
    assert!(lines[1].contains("round trips/s") && lines[1].contains("vs raw"));
    assert_eq!(lines.len(), 3 + cases().len(), "{text}");
    assert!(lines[2].contains("raw blocking") && lines[2].trim_end().ends_with("1.00"));
    assert!(lines.iter().any(|l| l.contains("pipewright byte mode")));
    assert!(lines.iter().any(|l| l.contains("pipewright message mode")));
    assert!(lines
        .iter()
        .any(|l| l.contains("pipewright blocking, message mode")));
    assert!(text.contains("every round trip checked"), "{text}");
}

#[test]
fn pingpong_runs_one_case_alone_and_refuses_a_case_this_platform_lacks() {
    let out = run(pipewright().args([
        "bench",
        "pingpong",
        "--rounds",
        "1",
        "--time",
        "100ms",
        "--size",
        "40",
        "--case",
        "raw-message",
        "--json",
    ]));
    if cfg!(windows) {
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["rows"][0]["case"], "raw-message");
    } else {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("raw-message needs a Windows message pipe"),
            "{err}"
        );
    }
    let out = run(pipewright().args([
        "bench", "pingpong", "--rounds", "1", "--time", "100ms", "--size", "40", "--case", "tokio",
        "--json",
    ]));
    if cfg!(windows) {
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(v["rows"][0]["case"], "tokio", "{v}");
        assert_eq!(v["rows"][0]["verified"], true, "{v}");
    } else {
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--case tokio"), "{}", stderr(&out));
    }
    let out = run(pipewright().args([
        "bench", "pingpong", "--rounds", "1", "--time", "100ms", "--size", "0",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--size"), "{}", stderr(&out));
}
