#!/usr/bin/env bash
# Finds a PostgreSQL and a Redis the scripts and tests can use, and prints the
# variables that point everything at them (`eval "$(scripts/services.sh)"`).
#
# The machine's own (127.0.0.1:5432 as `postgres` without a password, 127.0.0.1:6379),
# started when they are installed but down, are used when they work. Otherwise, or with
# STASIS_LOCAL_SERVICES=1, throwaway project-local instances are started under data/:
# initdb + pg_ctl on port 55432 with its own socket and trust authentication, and
# redis-server on port 56379, nothing kept on disk. Messages go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "$*" >&2; }

pg_url="${STASIS_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${STASIS_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
local_pg_port=55432
local_redis_port=56379

pg_works() { psql "$1" -XqAtc 'SELECT 1' >/dev/null 2>&1; }
redis_works() { redis-cli -u "$1" ping 2>/dev/null | grep -q PONG; }
wait_for() { for _ in $(seq 1 100); do "$@" && return 0; sleep 0.1; done; "$@"; }

machine_pg() {
  pg_works "$pg_url" && return 0
  # a Debian cluster that is installed but stopped
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      for cluster in $(ls "/etc/postgresql/$version"); do
        pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >/dev/null 2>&1 || true
      done
    done
    wait_for pg_works "$pg_url" 2>/dev/null && return 0
  fi
  return 1
}

machine_redis() {
  redis_works "$redis_url" && return 0
  if [ "$redis_url" = "redis://127.0.0.1:6379" ] && command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for redis_works "$redis_url" && return 0
  fi
  return 1
}

local_pg() {
  local dir="$PWD/data/services/postgres" bin owner=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$bin" ] || bin=$(dirname "$(command -v initdb || command -v pg_ctl || echo /nonexistent/x)")
  [ -x "$bin/initdb" ] || { say "PostgreSQL server binaries (initdb, pg_ctl) are not installed"; return 1; }
  # PostgreSQL refuses to run as root: the instance belongs to the postgres user then
  if [ "$(id -u)" = 0 ]; then owner=(runuser -u postgres --); fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    # a checkout under a directory the postgres user cannot enter (root's home)
    if ! runuser -u postgres -- test -w "$dir"; then
      dir="${TMPDIR:-/tmp}/stasis-mirror-sync-postgres"
      mkdir -p "$dir" && chown postgres "$dir"
    fi
  fi
  local url="postgres://postgres@127.0.0.1:$local_pg_port/postgres"
  if ! pg_works "$url"; then
    say "starting a project-local PostgreSQL on 127.0.0.1:$local_pg_port ($dir)"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      "${owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    "${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $local_pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=500" \
      start >/dev/null
    wait_for pg_works "$url"
  fi
  pg_url="$url"
}

local_redis() {
  local dir="$PWD/data/services/redis"
  local url="redis://127.0.0.1:$local_redis_port"
  mkdir -p "$dir"
  if ! redis_works "$url"; then
    say "starting a project-local Redis on 127.0.0.1:$local_redis_port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$local_redis_port" --save "" \
      --appendonly no --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/log" >/dev/null
    wait_for redis_works "$url"
  fi
  redis_url="$url"
}

if [ "${STASIS_LOCAL_SERVICES:-0}" = 1 ] || ! machine_pg; then
  local_pg || { say "no usable PostgreSQL"; exit 1; }
fi
if [ "${STASIS_LOCAL_SERVICES:-0}" = 1 ] || ! machine_redis; then
  local_redis || { say "no usable Redis"; exit 1; }
fi

# everything below connects with these: the tests (testkit), psql, the scripts
echo "export STASIS_PG_ADMIN_URL='$pg_url'"
echo "export STASIS_TEST_DATABASE_URL='$pg_url'"
echo "export STASIS_TEST_REDIS_URL='$redis_url'"
