#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 10) each; exits non-zero on the
# first crash. Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks the nightly-only flags cargo-fuzz passes.
#   usage: fuzz/run.sh [SECONDS]   (SANITIZER=none|address, default address)
set -euo pipefail
secs="${1:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
sanitizer="${SANITIZER:-address}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "=== $target (${secs}s, sanitizer=$sanitizer)"
    if ! cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0; then
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "all $(cargo fuzz list | wc -l) targets ran ${secs}s without a crash"
