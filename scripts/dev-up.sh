#!/usr/bin/env bash
# Brings the whole stack up locally and runs the main job end to end:
# Postgres and Redis (started if down), migrations, api + scheduler + 2 workers,
# an admin token, a demo upstream served by `git daemon`, an imported mirror, synced.
# Everything runs in the background; scripts/dev-down.sh stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/data/dev"
mkdir -p "$root/logs" "$root/upstreams"
eval "$(scripts/services.sh)"

export STASIS_DATABASE_URL="${STASIS_DATABASE_URL:-${STASIS_PG_ADMIN_URL%/*}/stasis_dev}"
export STASIS_REDIS_URL="${STASIS_REDIS_URL:-$STASIS_TEST_REDIS_URL}"
export STASIS_QUEUE_NAMESPACE="${STASIS_QUEUE_NAMESPACE:-stasis_dev}"
export STASIS_STORAGE_ROOT="$root/mirrors"
export STASIS_API_LISTEN="${STASIS_API_LISTEN:-127.0.0.1:8080}"
# the demo upstream is on loopback, which production refuses
export STASIS_MIRROR_ALLOW_LOCAL_NETWORK=true
api="http://$STASIS_API_LISTEN"
# seals upstream credentials; kept so that a restart can still open them
[ -f "$root/secrets.key" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' >"$root/secrets.key"
export STASIS_SECRETS_KEY="${STASIS_SECRETS_KEY:-$(cat "$root/secrets.key")}"

scripts/dev-down.sh >/dev/null 2>&1 || true
echo "building"
cargo build --quiet --bins
bin="${CARGO_TARGET_DIR:-target}/debug"

db="${STASIS_DATABASE_URL##*/}"
psql "$STASIS_PG_ADMIN_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql "$STASIS_PG_ADMIN_URL" -qc "CREATE DATABASE $db"
"$bin/stasisctl" migrate

start() { # name, command...
  local name=$1; shift
  "$@" >"$root/logs/$name.log" 2>&1 &
  echo $! >"$root/$name.pid"
}
STASIS_METRICS_LISTEN=127.0.0.1:9101 start api "$bin/stasis-api"
STASIS_METRICS_LISTEN=127.0.0.1:9102 start scheduler "$bin/stasis-scheduler"
STASIS_METRICS_LISTEN=127.0.0.1:9103 start worker-1 "$bin/stasis-worker"
STASIS_METRICS_LISTEN=127.0.0.1:9104 start worker-2 "$bin/stasis-worker"

demo="$root/upstreams/demo"
if [ ! -d "$demo" ]; then
  git init -q -b main "$demo"
  git -C "$demo" -c user.name=Demo -c user.email=demo@example.com commit -q --allow-empty -m "first commit"
  git -C "$demo" tag v1.0
  git -C "$demo" branch develop
fi
git_port=9418
start git-daemon git daemon --reuseaddr --export-all --listen=127.0.0.1 --port=$git_port \
  --base-path="$root/upstreams" "$root/upstreams"

for _ in $(seq 1 100); do curl -fs "$api/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$api/readyz" >/dev/null || { echo "api did not become ready; see $root/logs/api.log" >&2; exit 1; }

user="admin-$(date +%s)"
token=$("$bin/stasisctl" user create "$user" --admin | tail -n1)
echo "$token" >"$root/admin.token"
echo "admin user $user, token saved in $root/admin.token"

echo "importing git://127.0.0.1:$git_port/demo as $user/demo"
curl -fsS -X POST "$api/api/v1/repos/import" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' \
  -d "{\"name\":\"demo\",\"clone_url\":\"git://127.0.0.1:$git_port/demo\",\"mirror\":true}"
echo
for _ in $(seq 1 100); do
  status=$(curl -fs "$api/api/v1/repos/$user/demo/mirror/status" -H "Authorization: Bearer $token")
  case "$status" in *'"sync_status":"success"'*|*'"sync_status":"failed"'*) break;; esac
  sleep 0.2
done
echo "mirror status: $status"
case "$status" in *'"sync_status":"success"'*) ;; *) echo "sync did not succeed; see $root/logs" >&2; exit 1;; esac
echo "mirror refs ($STASIS_STORAGE_ROOT/$user/demo.git):"
git -C "$STASIS_STORAGE_ROOT/$user/demo.git" for-each-ref --format='  %(refname)'
echo
echo "stack is running: api $api, metrics on 127.0.0.1:9101-9104, logs in $root/logs"
echo "web UI:      $api/ (sign in with the token in $root/admin.token)"
echo "sync again:  curl -X POST $api/api/v1/repos/$user/demo/sync -H \"Authorization: Bearer \$(cat $root/admin.token)\""
echo "stop:        scripts/dev-down.sh"
