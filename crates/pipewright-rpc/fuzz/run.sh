#!/usr/bin/env bash
# This crate's fuzz targets, through the runner every fuzz crate shares (scripts/fuzz.sh;
# layout and corpus: README.md here).   usage: fuzz/run.sh [SECONDS]
exec "$(dirname "$0")/../../../scripts/fuzz.sh" run "$(dirname "$0")" "$@"
