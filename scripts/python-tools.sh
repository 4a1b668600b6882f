# Sourced by the scripts that need Python tools (check-jsonschema, kubernetes-validate,
# schemathesis): they live in a virtual environment under the cache directory, never in
# the system Python (which Debian and Ubuntu refuse to change: PEP 668).
# Usage: python_tools PKG...
venv="${XDG_CACHE_HOME:-$HOME/.cache}/stasis-mirror-sync/venv"
# Pinned: the Kubernetes JSON schemas deploy/kubernetes is validated against ship in it
kubernetes_validate_pin="kubernetes-validate==1.37.0"
python_tools() {
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
      echo "python3 -m venv failed: install python3-venv (Debian/Ubuntu)" >&2
      return 1
    }
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
export PATH="$venv/bin:$PATH"
