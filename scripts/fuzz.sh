#!/usr/bin/env bash
# The fuzz runner of every fuzz crate (crates/*/fuzz): `cargo xtask test` calls it for each, and
# each crate's fuzz/run.sh is a thin call to it. Needs cargo-fuzz; on a stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks the nightly-only flags cargo-fuzz passes.
#
#   scripts/fuzz.sh run FUZZ_DIR [SECONDS]   every target for SECONDS (default 10) each, from the
#                                            committed corpus FUZZ_DIR/seeds/<target>/ plus the
#                                            local, ignored FUZZ_DIR/corpus/<target>/ (where new
#                                            inputs go); fails on a crash, on a target without
#                                            committed seeds, and when no target ran
#   scripts/fuzz.sh minimize FUZZ_DIR        replaces each seeds/<target>/ by the smallest set of
#                                            inputs of seeds/ and corpus/ with the same coverage
#                                            (libFuzzer -merge=1); commit the result
#   SANITIZER=none|address (default address)
#
# Layout of a fuzz crate (see crates/pipewright-netipc/fuzz/README.md): Cargo.toml with one
# [[bin]] per target in fuzz_targets/, seeds/<target>/ committed, corpus/ and artifacts/ ignored.
set -euo pipefail
usage="usage: scripts/fuzz.sh run FUZZ_DIR [SECONDS] | scripts/fuzz.sh minimize FUZZ_DIR"
mode="${1:?$usage}"
dir="$(cd "${2:?$usage}" && pwd)"
secs="${3:-10}"
cd "$dir"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$dir/target}"
sanitizer="${SANITIZER:-address}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
if ! list="$(cargo fuzz list)"; then
    echo "fuzz: \`cargo fuzz list\` failed in $dir" >&2
    exit 1
fi
read -r -d '' -a targets <<<"$list" || true
if ((${#targets[@]} == 0)); then
    echo "fuzz: $dir has no fuzz target (cargo fuzz list printed nothing)" >&2
    exit 1
fi
case "$mode" in
run)
    failed=()
    ran=0
    for target in "${targets[@]}"; do
        mkdir -p "corpus/$target"
        dirs=("corpus/$target")
        if [[ -z "$(ls -A "seeds/$target" 2>/dev/null)" ]]; then
            echo "fuzz: $target has no committed corpus in $dir/seeds/$target: write its seeds (see README.md)" >&2
            failed+=("$target")
            continue
        fi
        dirs+=("seeds/$target")
        echo "=== $target (${secs}s, sanitizer=$sanitizer, corpus: ${dirs[*]})"
        if cargo fuzz run -s "$sanitizer" "$target" "${dirs[@]}" -- \
            -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0; then
            ran=$((ran + 1))
        else
            failed+=("$target")
        fi
    done
    if ((${#failed[@]})); then
        echo "fuzz: crashes or build failures in: ${failed[*]} (see $dir/artifacts/)" >&2
        exit 1
    fi
    if ((ran == 0)); then
        echo "fuzz: no target ran in $dir" >&2
        exit 1
    fi
    echo "fuzz: all $ran targets of $dir ran ${secs}s without a crash"
    ;;
minimize)
    for target in "${targets[@]}"; do
        mkdir -p "corpus/$target" "seeds/$target"
        fresh="$(mktemp -d)"
        echo "=== minimize $target"
        cargo fuzz run -s "$sanitizer" "$target" "$fresh" "seeds/$target" "corpus/$target" -- \
            -merge=1 -rss_limit_mb=2048 -print_final_stats=0
        if [[ -z "$(ls -A "$fresh")" ]]; then
            echo "fuzz: minimizing $target left nothing; seeds/$target kept" >&2
            rm -rf "$fresh"
            continue
        fi
        rm -rf "seeds/$target"
        mv "$fresh" "seeds/$target"
        chmod 755 "seeds/$target"
        echo "$target: $(ls "seeds/$target" | wc -l) inputs, $(du -sk "seeds/$target" | cut -f1) KiB"
    done
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
