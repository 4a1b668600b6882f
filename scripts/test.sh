#!/usr/bin/env bash
# The test command: local services up, then every test of the workspace against them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo test --workspace --locked "$@"
