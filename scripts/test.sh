#!/usr/bin/env bash
# The test command: local services up, every test of the workspace against them, the
# deploy/ files validated, schema fuzzing of the API (schemathesis), the web UI end to
# end in Chromium, then each benchmark at a small size.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
cargo test --workspace --locked "$@"
scripts/check-deploy.sh
# the fuzzing and benchmarks below run the real binaries
cargo build --workspace --bins --locked --quiet
scripts/fuzz-api.sh
# the web UI in headless Chromium against a real stack
scripts/e2e.sh
# every benchmark at a small size, so that they keep working
scripts/bench.sh --quick
