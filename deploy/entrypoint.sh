#!/bin/sh
# The binaries read secrets from the environment only (no *_FILE variables yet), so
# compose mounts them as files under /run/secrets and this exports them. A value set
# explicitly in the environment wins; a secret file this user cannot read stops here
# instead of starting without the key.
set -eu
f=/run/secrets/STASIS_SECRETS_KEY
if [ -z "${STASIS_SECRETS_KEY:-}" ] && [ -e "$f" ]; then
  if [ ! -r "$f" ]; then
    echo "entrypoint: $f is not readable by uid $(id -u): make the secret file readable (docs/operations.md)" >&2
    exit 1
  fi
  STASIS_SECRETS_KEY=$(tr -d ' \r\n' <"$f")
  export STASIS_SECRETS_KEY
fi
exec "$@"
