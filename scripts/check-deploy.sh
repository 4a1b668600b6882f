#!/usr/bin/env bash
# Validates deploy/ without a Docker engine: docker-compose.yml against the Compose
# specification (and the worker service scalable), prometheus.yml and its alert rules
# with promtool, and the Grafana dashboard's datasource. Tools come from PyPI and from
# Debian's prometheus package (promtool only, unpacked, nothing installed system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${XDG_CACHE_HOME:-$HOME/.cache}/stasis-mirror-sync/tools"
mkdir -p "$tools"

source scripts/python-tools.sh
if ! command -v check-jsonschema >/dev/null 2>&1 || ! python -c 'import yaml' 2>/dev/null; then
  python_tools check-jsonschema pyyaml
fi
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

python3 - <<'PY'
import json, sys, yaml
compose = yaml.safe_load(open("docker-compose.yml"))
worker = compose["services"]["worker"]
problems = [f"worker has {k}: it could not scale" for k in ("container_name", "ports") if k in worker]
if "mirrors:/var/lib/stasis/mirrors" not in worker.get("volumes", []):
    problems.append("workers do not share the mirrors volume")
for name, svc in compose["services"].items():
    for dep, cond in (svc.get("depends_on") or {}).items():
        if isinstance(cond, dict) and cond.get("condition") == "service_healthy" \
                and "healthcheck" not in compose["services"][dep]:
            problems.append(f"{name} waits for {dep} to be healthy, which has no healthcheck")
dash = json.load(open("deploy/grafana/dashboards/stasis.json"))
sources = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))
uids = {d["uid"] for d in sources["datasources"]}
for panel in dash["panels"]:
    for target in panel["targets"]:
        if target["datasource"]["uid"] not in uids:
            problems.append(f"panel {panel['title']!r} uses an unprovisioned datasource")
if problems:
    sys.exit("\n".join(problems))
print(f"compose: worker scalable; dashboard: {len(dash['panels'])} panels on provisioned datasources")
PY

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool="$tools/usr/bin/promtool"
  if [ ! -x "$promtool" ]; then
    (cd "$tools" && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; } \
      && dpkg -x prometheus_*.deb . && rm -f prometheus_*.deb)
  fi
fi
"$promtool" check config deploy/prometheus/prometheus.yml
"$promtool" check rules deploy/prometheus/alerts.yml
