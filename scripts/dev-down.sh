#!/usr/bin/env bash
# Stops what scripts/dev-up.sh started (workers get SIGTERM and finish in-flight syncs).
set -uo pipefail
cd "$(dirname "$0")/.."
for pidfile in data/dev/*.pid; do
  [ -e "$pidfile" ] || continue
  kill -TERM "$(cat "$pidfile")" 2>/dev/null && echo "stopped $(basename "$pidfile" .pid)"
  rm -f "$pidfile"
done
