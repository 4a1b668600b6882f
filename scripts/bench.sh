#!/usr/bin/env bash
# Benchmarks (release build) against the local Postgres and Redis: prints the table that
# BENCHMARKS.md records. `scripts/bench.sh --quick` is CI's small version; names after
# the flags pick benchmarks (noop, fetch, queue, scheduler, api, memory, hostile, history,
# import, latency, manifest, reclaim, storages, reuse, fleet; git is both noop and fetch).
# manifest runs grok-manifest and grok-pull, installed with grokmirror in the Python
# tools' virtual environment when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
source scripts/python-tools.sh
command -v grok-pull >/dev/null 2>&1 || python_tools grokmirror==2.0.12
profile=release
flag=--release
if [ "${1:-}" = "--quick" ]; then profile=debug; flag=; fi
cargo build $flag --workspace --bins --locked --quiet
exec "${CARGO_TARGET_DIR:-target}/$profile/stasis-bench" "$@"
