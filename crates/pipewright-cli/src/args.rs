//! Argument parsers shared by every subcommand: durations (`500ms`, `2s`, `1m`) and pipe names.

use std::time::Duration;

use pipewright::PipeName;

/// Parses a duration written like `500ms`, `2s`, `1m` or `1m30s`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write it like 500ms, 2s or 1m"))
}

/// Parses a byte size like `4096`, `64KiB`, `1MiB`, `2GiB` (also `K`, `M`, `G`, `KB`, `MB`).
pub fn size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write it like 4096, 64KiB or 1MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a pipe name in any form `PipeName` accepts.
pub fn pipe_name(s: &str) -> Result<PipeName, String> {
    PipeName::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_documented_forms() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        let err = duration("soon").unwrap_err();
        assert!(err.contains("500ms"), "{err}");
        assert!(duration("5").is_err(), "a bare number has no unit");
    }

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(size("4096").unwrap(), 4096);
        assert_eq!(size("64KiB").unwrap(), 65536);
        assert_eq!(size("1MiB").unwrap(), 1 << 20);
        assert_eq!(size("2g").unwrap(), 2 << 30);
        assert!(size("lots").unwrap_err().contains("1MiB"));
        assert!(size("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn pipe_names_in_every_form() {
        for s in [r"\\.\pipe\x", "//./pipe/x", "x"] {
            assert_eq!(pipe_name(s).unwrap().name(), "x");
        }
        assert!(pipe_name("").unwrap_err().contains("empty"));
    }
}
