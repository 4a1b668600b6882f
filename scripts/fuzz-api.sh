#!/usr/bin/env bash
# Schema fuzzing: schemathesis (from PyPI) drives the real stasis-api, on a database of
# its own, from the OpenAPI document the API serves; any 5xx fails the run.
# Expects the binaries built (scripts/test.sh builds them) and services up.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STASIS_PG_ADMIN_URL:-}" ] || eval "$(scripts/services.sh)"
bin="${CARGO_TARGET_DIR:-target}/debug"
work=$(mktemp -d)
db="stasis_fuzz_$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api_pid=""
cleanup() {
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql "$STASIS_PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$STASIS_TEST_REDIS_URL" --scan --pattern "$db:*" | xargs -r redis-cli -u "$STASIS_TEST_REDIS_URL" del >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

source scripts/python-tools.sh
command -v st >/dev/null 2>&1 || python_tools 'schemathesis>=4,<5'

export STASIS_DATABASE_URL="${STASIS_PG_ADMIN_URL%/*}/$db"
export STASIS_REDIS_URL="$STASIS_TEST_REDIS_URL"
export STASIS_QUEUE_NAMESPACE="$db"
export STASIS_STORAGE_ROOT="$work/mirrors"
export STASIS_API_LISTEN="127.0.0.1:$port"
# no DNS lookups of generated host names on a machine without a network
export STASIS_MIRROR_ALLOW_LOCAL_NETWORK=true
export STASIS_SECRETS_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export STASIS_LOG_LEVEL=warn
# one token sends every generated request: budgets that let them reach the handlers
export STASIS_RATELIMIT_READ_BURST=100000 STASIS_RATELIMIT_WRITE_BURST=100000
export STASIS_RATELIMIT_IMPORT_BURST=100000
psql "$STASIS_PG_ADMIN_URL" -qc "CREATE DATABASE $db"
"$bin/stasisctl" migrate >/dev/null
token=$("$bin/stasisctl" user create fuzzer --admin | tail -n1)
"$bin/stasis-api" >"$work/api.log" 2>&1 &
api_pid=$!

st run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --wait-for-schema 30 \
  --checks not_a_server_error \
  --header "Authorization: Bearer $token" \
  --max-examples "${FUZZ_EXAMPLES:-50}" \
  --seed "${FUZZ_SEED:-1}" \
  --no-color \
  || { echo "--- api log"; tail -n 50 "$work/api.log"; exit 1; }
