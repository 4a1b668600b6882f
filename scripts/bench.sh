#!/usr/bin/env bash
# Benchmarks (release build) against the local Postgres and Redis: prints the table that
# BENCHMARKS.md records. `scripts/bench.sh --quick` is CI's small version; names after
# the flags pick benchmarks (noop, fetch, queue, scheduler, api, memory, hostile, history, import, latency; git
# is both noop and fetch).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
profile=release
flag=--release
if [ "${1:-}" = "--quick" ]; then profile=debug; flag=; fi
cargo build $flag --workspace --bins --locked --quiet
exec "${CARGO_TARGET_DIR:-target}/$profile/stasis-bench" "$@"
