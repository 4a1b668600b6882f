#!/usr/bin/env bash
# The test command: local services up, every test of the workspace against them, the
# deploy/ files validated, schema fuzzing of the API (schemathesis), the web UI end to
# end in Chromium, then each benchmark at a small size.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
# Debian packages the tests run: git-lfs (the Git LFS tests make pointer commits and
# clone mirrors with it) and pgbouncer (the pooler test puts one in front of Postgres)
missing=()
git lfs version >/dev/null 2>&1 || missing+=(git-lfs)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq "${missing[@]}" || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }; } >/dev/null
fi
# the ssh tests run Debian's OpenSSH sshd (with git-shell) on loopback
if [ ! -x /usr/sbin/sshd ]; then
  echo "installing openssh-server (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq openssh-server || { apt-get update -qq && apt-get install -y -qq openssh-server; }; } >/dev/null
fi
cargo test --workspace --locked "$@"
scripts/check-deploy.sh
# the fuzzing and benchmarks below run the real binaries
cargo build --workspace --bins --locked --quiet
scripts/fuzz-api.sh
# the web UI in headless Chromium against a real stack
scripts/e2e.sh
# every benchmark at a small size, so that they keep working
scripts/bench.sh --quick
