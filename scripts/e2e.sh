#!/usr/bin/env bash
# End-to-end tests of the web UI: headless Chromium (Debian's, installed if missing)
# driven by playwright-core (npm) against a real stack: stasis-api and a stasis-worker
# on a database and Redis namespace of their own, with git upstreams in a temp dir.
# Screenshots of every page (admin and owner, 1280 and 390 px, light and dark) land in
# ${SCREENSHOTS:-data/e2e/screenshots}. Expects the binaries built (scripts/test.sh builds
# them) and services up.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STASIS_PG_ADMIN_URL:-}" ] || eval "$(scripts/services.sh)"
bin="${CARGO_TARGET_DIR:-target}/debug"

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } >/dev/null
fi
npm ci --prefix web/e2e --no-audit --no-fund --silent
npm run --prefix web/e2e -s typecheck

work=$(mktemp -d)
db="stasis_e2e_$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
defer_port=$(free_port)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  psql "$STASIS_PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$STASIS_TEST_REDIS_URL" --scan --pattern "$db:*" | xargs -r redis-cli -u "$STASIS_TEST_REDIS_URL" del >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

export STASIS_DATABASE_URL="${STASIS_PG_ADMIN_URL%/*}/$db"
export STASIS_REDIS_URL="$STASIS_TEST_REDIS_URL"
export STASIS_QUEUE_NAMESPACE="$db"
export STASIS_STORAGE_ROOT="$work/mirrors"
export STASIS_API_LISTEN="127.0.0.1:$port"
export STASIS_MIRROR_ALLOW_LOCAL_NETWORK=true
# a throwaway key, so webhook secrets and credentials can be sealed
STASIS_SECRETS_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export STASIS_SECRETS_KEY
export STASIS_QUEUE_POLL_INTERVAL=50ms
export STASIS_QUEUE_HEARTBEAT_INTERVAL=1s
export STASIS_LOG_LEVEL=warn
# the journey presses "Sync now" right after the import's sync
export STASIS_MIRROR_MIN_MANUAL_INTERVAL=0s
psql "$STASIS_PG_ADMIN_URL" -qc "CREATE DATABASE $db"
"$bin/stasisctl" migrate >/dev/null
token=$("$bin/stasisctl" user create ada --admin | tail -n1)
owner_token=$("$bin/stasisctl" user create olga | tail -n1)
other_token=$("$bin/stasisctl" user create bo | tail -n1)
"$bin/stasis-api" >"$work/api.log" 2>&1 &
pids+=($!)
# a second API on the same stack that keeps the minimum interval between manual syncs,
# so a "Sync now" right after a sync is deferred and the page has to say until when
STASIS_API_LISTEN="127.0.0.1:$defer_port" STASIS_MIRROR_MIN_MANUAL_INTERVAL=1h \
  "$bin/stasis-api" >"$work/api-defer.log" 2>&1 &
pids+=($!)
"$bin/stasis-worker" >"$work/worker.log" 2>&1 &
pids+=($!)
for p in "$port" "$defer_port"; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

good="$work/upstreams/good"
mkdir -p "$good"
git -C "$good" init -q -b main
git -C "$good" -c user.name=E2E -c user.email=e2e@example.com commit -q --allow-empty -m first
git -C "$good" config user.name E2E
git -C "$good" config user.email e2e@example.com

BASE_URL="http://127.0.0.1:$port" TOKEN="$token" OWNER_TOKEN="$owner_token" GOOD_UPSTREAM="$good" \
  MISSING_UPSTREAM="$work/upstreams/later" DEFER_URL="http://127.0.0.1:$defer_port" \
  OTHER_TOKEN="$other_token" UPSTREAMS="$work/upstreams" \
  SCREENSHOTS="${SCREENSHOTS:-$PWD/data/e2e/screenshots}" \
  npm test --prefix web/e2e -s \
  || { echo "--- api log"; tail -n 30 "$work/api.log"; echo "--- deferring api log"; tail -n 10 "$work/api-defer.log"; echo "--- worker log"; tail -n 30 "$work/worker.log"; exit 1; }
