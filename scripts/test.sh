#!/usr/bin/env bash
# The test command: local services up, every test of the workspace against them, the
# deploy/ files validated, then schema fuzzing of the API (schemathesis).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo test --workspace --locked "$@"
scripts/check-deploy.sh
# the fuzzing below runs the real binaries
cargo build --workspace --bins --locked --quiet
scripts/fuzz-api.sh
