#!/usr/bin/env bash
# Installs what building the Windows target and running it under Wine needs, on Debian 12:
# Debian's rustc/cargo with the standard library's source (for -Zbuild-std), the mingw-w64
# linker, Debian's clippy (for linting the Windows target), Wine, and socat (the WSL-topology test).
# Idempotent: a second run only checks.
set -euo pipefail
need=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine64 socat)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
test -f /usr/lib/rustlib/src/rust/library/Cargo.lock || { echo "setup: rust-web-src is missing its library source" >&2; exit 1; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "setup: the mingw-w64 linker is missing" >&2; exit 1; }
test -x /usr/lib/wine/wine64 || { echo "setup: wine64 is missing" >&2; exit 1; }
