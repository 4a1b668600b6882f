#!/bin/sh
# The binaries read secrets from the environment only (no *_FILE variables yet), so
# compose mounts them as files under /run/secrets and this exports them: a file named
# like the variable (STASIS_SECRETS_KEY) wins over nothing, never over a value set
# explicitly in the environment.
set -eu
if [ -z "${STASIS_SECRETS_KEY:-}" ] && [ -r /run/secrets/STASIS_SECRETS_KEY ]; then
  STASIS_SECRETS_KEY=$(tr -d ' \r\n' </run/secrets/STASIS_SECRETS_KEY)
  export STASIS_SECRETS_KEY
fi
exec "$@"
