#!/usr/bin/env bash
# Validates deploy/ without a Docker engine: docker-compose.yml against the Compose
# specification and what production needs of it (storages each on a volume of its own,
# mounted by its own scalable workers, the api and migrate; restart policies,
# rotated logs, secrets from files, Prometheus and Grafana on loopback, no capabilities,
# resource limits, read-only root file systems, readiness healthchecks), the image
# (.dockerignore, pinned bases, cached dependencies, no bench binary), prometheus.yml,
# the alert rules (promtool check and unit tests, a runbook section for each) and the
# Grafana dashboard's conventions (datasource variable, rows, descriptions, every exported
# metric on a panel and in docs/metrics.md), and the Kubernetes manifests
# (deploy/kubernetes/check.py). Tools come from PyPI and from
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
import json, re, sys, yaml
problems = []

# --- compose: scalable workers, healthchecks, production settings
compose = yaml.safe_load(open("docker-compose.yml"))
services = compose["services"]
# the workers: one service per storage, each scaled on its own
WORKERS = tuple(n for n, svc in services.items() if svc.get("command") == ["stasis-worker"])
if not WORKERS:
    problems.append("no service runs stasis-worker")
for name in WORKERS:
    problems += [f"{name} has {k}: it could not scale" for k in ("container_name", "ports") if k in services[name]]

# --- compose: storages. Each is one named volume, mounted by its own workers (and no
# other storage's), by the api and by migrate (stasisctl), whose processes change
# mirrors' directories themselves on the storages whose root they find. A new volume
# takes the owner of the image's directory where it is mounted, so the image must make
# the mount point; the root is a directory inside the volume, which the image does not
# have, so it exists only where the volume is mounted (`default`, the volume of an
# install from before named storages, keeps its mirrors at the volume's top).
def with_variables_set(text):
    """A compose value as it reads with every optional variable set: ${V:+x} is x,
    ${V:-d} its default."""
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\+([^}]*)\}", r"\1", str(text))
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", text)
def env_of(svc):
    env = svc.get("environment") or {}
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)
def mounts(svc):
    """{container path: volume name} of the service's named volumes."""
    out = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            src, _, dst = v.partition(":")
            dst = dst.split(":")[0]
        else:
            src, dst = v.get("source"), v.get("target")
        if src and not src.startswith((".", "/")):
            out[dst] = src
    return out
def volume_at(svc, root):
    """(mount point, volume) of the service's volume holding `root`, if any."""
    holding = [p for p in mounts(svc) if root == p or root.startswith(p.rstrip("/") + "/")]
    return (max(holding, key=len), mounts(svc)[max(holding, key=len)]) if holding else (None, None)
storages = {}
spec = with_variables_set((compose.get("x-stasis-env") or {}).get("STASIS_STORAGE_STORAGES", ""))
for entry in filter(None, (e.strip() for e in spec.split(","))):
    name, _, root = entry.split(";")[0].partition("=")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", name) or not root.startswith("/"):
        problems.append(f"STASIS_STORAGE_STORAGES: {entry!r} is not name=/root[;options] with a valid name")
    storages[name] = root
if len(storages) < 2:
    problems.append(f"compose names {len(storages)} storage(s) in x-stasis-env's STASIS_STORAGE_STORAGES, not several")
runtime_stage = re.search(r"^FROM\s+\S+\s+AS\s+runtime\n(.*?)(?=^FROM|\Z)",
                          open("deploy/Dockerfile").read(), re.M | re.S | re.I)
def image_makes(path):
    return bool(runtime_stage) and bool(re.search(rf"mkdir\b[^\n]*\s{re.escape(path)}(\s|$)", runtime_stage.group(1)))
served = {}
for name in WORKERS:
    env = {k: with_variables_set(v) for k, v in env_of(services[name]).items()}
    mine = [s.strip() for s in env.get("STASIS_WORKER_STORAGES", "").split(",") if s.strip()]
    if not mine:
        problems.append(f"{name}: no STASIS_WORKER_STORAGES (it would take every storage's jobs, "
                        "and mount one volume)")
    for storage in mine:
        served.setdefault(storage, []).append(name)
        if storage not in storages:
            problems.append(f"{name} serves storage {storage!r}, which STASIS_STORAGE_STORAGES does not name")
for storage, root in storages.items():
    workers = served.get(storage, [])
    if not workers:
        problems.append(f"storage {storage}: no worker service serves it (its mirrors would never sync)")
    held = {volume_at(services[w], root) for w in workers}
    if (None, None) in held:
        problems.append(f"storage {storage}: a worker serving it mounts no volume holding its root {root}")
    held.discard((None, None))
    if len(held) > 1:
        problems.append(f"storage {storage}: its workers mount different volumes {sorted(held)} for {root}")
    if not held:
        continue
    point, volume = held.pop()
    if volume not in (compose.get("volumes") or {}):
        problems.append(f"storage {storage}: its volume {volume!r} is not a named volume")
    for name in WORKERS:
        if name not in workers and volume in mounts(services[name]).values():
            problems.append(f"{name} mounts storage {storage}'s volume, which only its own workers mount")
    for name in ("api", "migrate"):
        if volume_at(services[name], root) != (point, volume):
            problems.append(f"{name} does not mount storage {storage}'s volume {volume} at {point}")
    if not image_makes(point):
        problems.append(f"storage {storage}: the image does not make {point} (a new volume there would "
                        "belong to root, not to the stasis user)")
    if storage != "default" and (root == point or image_makes(root)):
        problems.append(f"storage {storage}: its root {root} is not a directory inside its volume, which "
                        "only the processes mounting the volume find")
vols = [volume_at(services[w], r)[1] for s, r in storages.items() for w in served.get(s, [])[:1]]
if len(vols) != len(set(vols)):
    problems.append(f"storages share volumes {sorted(vols)}: each is a filesystem of its own")
ONE_SHOT = {"migrate"}  # runs once and exits 0: a restart policy would loop it
for name, svc in services.items():
    for dep, cond in (svc.get("depends_on") or {}).items():
        if isinstance(cond, dict) and cond.get("condition") == "service_healthy" \
                and "healthcheck" not in services[dep]:
            problems.append(f"{name} waits for {dep} to be healthy, which has no healthcheck")
    want = "no" if name in ONE_SHOT else "unless-stopped"
    if svc.get("restart") != want:
        problems.append(f"{name}: restart is {svc.get('restart')!r}, not {want!r}")
    log = svc.get("logging") or {}
    opts = log.get("options") or {}
    if log.get("driver") != "json-file" or "max-size" not in opts or "max-file" not in opts:
        problems.append(f"{name}: no rotated json-file logging (max-size, max-file)")
    image = svc.get("image", "")
    if "build" not in svc and not re.search(r":v?\d+(\.\d+)+(-[\w.]+)?(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$", image):
        problems.append(f"{name}: image {image!r} is not pinned to a version (x.y at least)")

def default_host(port):
    """The host address a published port binds to, with ${VAR:-default} resolved to its default."""
    spec = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", str(port))
    if re.search(r"\$\{?[A-Za-z_]", spec):
        return None  # a variable with no default: nobody knows
    parts = spec.split(":")
    return parts[0] if len(parts) == 3 else "0.0.0.0"
for name in ("prometheus", "grafana"):
    for port in services[name].get("ports", []):
        if isinstance(port, dict):
            host = port.get("host_ip", "0.0.0.0")
        else:
            host = default_host(port)
        if host != "127.0.0.1":
            problems.append(f"{name} publishes {port!r} beyond 127.0.0.1 by default")
for name, svc in list(services.items()) + [("x-stasis-env", {"environment": compose.get("x-stasis-env")})]:
    env = svc.get("environment") or {}
    env = env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)
    if "STASIS_SECRETS_KEY" in env:
        problems.append(f"{name}: STASIS_SECRETS_KEY is set in compose (an empty default leaves credentials "
                        "unsealable); it comes from the stasis_secrets_key secret")
for name in ("api",) + WORKERS:  # the processes that open credentials
    if not any((s if isinstance(s, str) else s.get("source")) == "stasis_secrets_key"
               for s in services[name].get("secrets", [])):
        problems.append(f"{name} does not get the stasis_secrets_key secret")
# --- compose hardening: confined, bounded, read-only, ready before dependants start
STASIS = ("migrate", "api", "scheduler") + WORKERS  # the services built from deploy/Dockerfile
def secret_names(svc):
    return {s if isinstance(s, str) else s.get("source") for s in svc.get("secrets", [])}
for name, svc in services.items():
    if svc.get("cap_drop") != ["ALL"]:
        problems.append(f"{name}: cap_drop is not [ALL]")
    if "no-new-privileges:true" not in (svc.get("security_opt") or []):
        problems.append(f"{name}: no security_opt no-new-privileges:true")
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    for limit in ("cpus", "memory", "pids"):
        if limit not in limits:
            problems.append(f"{name}: no {limit} limit (deploy.resources.limits)")
    check = svc.get("healthcheck") or {}
    if not check.get("disable") and "start_period" not in check:
        problems.append(f"{name}: healthcheck without start_period")
    # a secret read from a file must be mounted where the variable points
    for var, value in env_of(svc).items():
        if var.endswith("_FILE") and str(value).startswith("/run/secrets/"):
            if str(value).removeprefix("/run/secrets/") not in secret_names(svc):
                problems.append(f"{name}: {var} points at {value}, a secret it does not get")
for name in STASIS + ("postgres", "redis"):
    svc = services[name]
    if svc.get("read_only") is not True:
        problems.append(f"{name}: the root file system is not read_only")
for name in STASIS:
    env = env_of(services[name])
    # no entrypoint exports secrets: the binary reads them, under exec and run as well
    for key in ("STASIS_DATABASE_URL", "STASIS_REDIS_URL"):
        if re.search(r"://[^/@\s]*:[^/@\s]*@", str(env.get(key, ""))):
            problems.append(f"{name}: {key} carries a password in compose; use {key}_FILE")
    if "STASIS_DATABASE_URL_FILE" not in env:
        problems.append(f"{name}: the database URL (with its password) does not come from a secret file")
for name in ("api", "migrate") + WORKERS:  # open or check upstream credentials, run stasisctl
    if env_of(services[name]).get("STASIS_SECRETS_KEY_FILE") != "/run/secrets/stasis_secrets_key":
        problems.append(f"{name}: STASIS_SECRETS_KEY_FILE is not /run/secrets/stasis_secrets_key")
for name in WORKERS:
    if services[name].get("init") is not True:
        problems.append(f"{name}: no init (a PID 1 reaping the git process groups a sync kills)")
if "/readyz" not in " ".join(map(str, services["api"]["healthcheck"]["test"])):
    problems.append("api: the healthcheck does not ask /readyz")
for name, metric in [(w, "stasis_worker_concurrency") for w in WORKERS] + [("scheduler", "stasis_scheduler_leader")]:
    if metric not in " ".join(map(str, services[name]["healthcheck"]["test"])):
        problems.append(f"{name}: the healthcheck proves a port only, not {metric} (set once connected)")
pg = services["postgres"]
pg_env = env_of(pg)
if "POSTGRES_PASSWORD" in pg_env or pg_env.get("POSTGRES_PASSWORD_FILE") != "/run/secrets/postgres_password" \
        or "postgres_password" not in secret_names(pg):
    problems.append("postgres: the password does not come from the postgres_password secret file")
# the commit for stasis_build_info{revision}: passed to every image build, declared in
# the Dockerfile's build stage before it compiles
for name in STASIS:
    args = (services[name].get("build") or {}).get("args") or {}
    if "STASIS_REVISION" not in args:
        problems.append(f"{name}'s image build does not pass STASIS_REVISION")
if not re.search(r"^ARG STASIS_REVISION\b.*\n(?:.*\n)*?^ENV STASIS_REVISION=\$\{STASIS_REVISION\}",
                 open("deploy/Dockerfile").read(), re.M):
    problems.append("the Dockerfile does not take STASIS_REVISION as an argument into the build")
if "ENTRYPOINT" in re.sub(r"#.*", "", open("deploy/Dockerfile").read()):
    problems.append("the image has an entrypoint: secrets come from STASIS_*_FILE, "
                    "so exec and run see what the service sees")

graf = services["grafana"].get("environment", {})
if "GF_SECURITY_ADMIN_PASSWORD__FILE" not in graf or "GF_SECURITY_ADMIN_PASSWORD" in graf:
    problems.append("grafana's admin password does not come from a secret file")
for vol in ("postgres", "redis", "grafana", "prometheus"):
    if vol not in (compose.get("volumes") or {}):
        problems.append(f"no named volume {vol}")

# --- .dockerignore and Dockerfile
try:
    ignored = {l.strip().strip("/") for l in open(".dockerignore") if l.strip() and not l.startswith("#")}
except FileNotFoundError:
    ignored = set()
for entry in ("target", "data", "deploy/secrets"):
    if entry not in ignored:
        problems.append(f".dockerignore does not list {entry}")
dockerfile = open("deploy/Dockerfile").read()
if "stasis-bench" in re.sub(r"#.*", "", dockerfile):
    problems.append("the Dockerfile builds stasis-bench")
if re.search(r"cargo build[^\n]*--(bins|workspace)", dockerfile):
    problems.append("the Dockerfile builds every binary (the bench included): name the packages")
for pkg in ("stasis-api", "stasis-worker", "stasis-scheduler", "stasis-cli"):
    if f"-p {pkg}" not in dockerfile:
        problems.append(f"the Dockerfile does not build {pkg}")
if "--mount=type=cache" not in dockerfile:
    problems.append("the Dockerfile caches no dependencies (BuildKit cache mounts)")
for base in re.findall(r"^FROM\s+(\S+)", dockerfile, re.M):
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.M | re.I)
    if base in stages:
        continue
    if not re.search(r":\d+(\.\d+)+[-\w.]*(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$", base):
        problems.append(f"base image {base} is not pinned to a version (x.y at least)")
stages = dict(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\n(.*?)(?=^FROM|\Z)", dockerfile, re.M | re.S | re.I))
if "git" in re.sub(r"#.*", "", stages.get("runtime", "")).split() or "install" in stages.get("app", ""):
    problems.append("git (or another package) is installed beyond the worker image")
if not re.search(r"install[^\n]*\bgit\b", stages.get("worker", "")):
    problems.append("the worker image has no git (ref transactions and housekeeping need it)")

# --- Grafana: every panel on the templated datasource, which is provisioned
dash = json.load(open("deploy/grafana/dashboards/stasis.json"))
sources = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))
types = {d["type"] for d in sources["datasources"]}
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") not in types:
    problems.append("the dashboard has no datasource variable of a provisioned type")
panels = [p for p in dash["panels"] if p.get("type") != "row"]
for panel in panels:
    title = panel["title"]
    if not panel.get("description"):
        problems.append(f"panel {title!r} has no description")
    for t in [panel] + panel.get("targets", []):
        if (t.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r} does not use the ${{datasource}} variable")
    for t in panel.get("targets", []):
        if "stasis_http_request" in t.get("expr", "") and 'route=~"/api/' not in t["expr"]:
            problems.append(f"panel {title!r}: API panels filter routes to the API (no UI, docs or probes)")
if not any(p.get("type") == "row" for p in dash["panels"]):
    problems.append("the dashboard has no rows")
if not any(p.get("type") == "stat" for p in dash["panels"]):
    problems.append("the dashboard has no stat panels for current values")
if not any("dead" in t.get("expr", "") for p in panels if "by state" in p["title"].lower() for t in p["targets"]):
    problems.append("'jobs by state' does not show dead jobs")

# --- every metric the code exports is on the dashboard and in docs/metrics.md, and
# every metric docs/metrics.md names is still exported: names are the string literals
# the code registers (`"stasis_..."` in api, worker, scheduler, shared); a histogram
# counts as shown through its _bucket, _count or _sum series
import glob
exported = set()
for path in glob.glob("*/src/**/*.rs", recursive=True):
    if path.split("/")[0] in ("api", "worker", "scheduler", "shared"):
        exported |= set(re.findall(r'"(stasis_[a-z_]+)"', open(path).read()))
if len(exported) < 40:
    problems.append(f"only {len(exported)} metric names found in the code: the check looks in the wrong place")
dash_text = json.dumps([t.get("expr", "") for p in panels for t in p.get("targets", [])])
on_dashboard = set(re.findall(r"stasis_[a-z0-9_]+", dash_text))
documented = set(re.findall(r"stasis_[a-z0-9_]+", open("docs/metrics.md").read()))
def shown(name, names):
    return any(name + suffix in names for suffix in ("", "_bucket", "_count", "_sum"))
for name in sorted(exported):
    if not shown(name, on_dashboard):
        problems.append(f"metric {name} is exported but on no dashboard panel")
    if name not in documented:
        problems.append(f"metric {name} is exported but not in docs/metrics.md")
for name in sorted(documented - exported):
    if not any(name == e + s for e in exported for s in ("_bucket", "_count", "_sum")):
        problems.append(f"docs/metrics.md names {name}, which the code no longer exports")
for p in panels:
    for t in p.get("targets", []):
        if re.search(r"\b(rate|irate|increase)\([^)]*\[5m\]", t.get("expr", "")):
            problems.append(f"panel {p['title']!r}: a fixed [5m] window, not [$__rate_interval]")

# --- alert rules: each actionable, with a runbook section that exists
rules = [r for g in yaml.safe_load(open("deploy/prometheus/alerts.yml"))["groups"] for r in g["rules"]]
runbook = open("docs/runbook.md").read()
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+\s+(.*)$", runbook, re.M)}
for r in rules:
    url = (r.get("annotations") or {}).get("runbook_url", "")
    m = re.fullmatch(r"\S*docs/runbook\.md#([\w-]+)", url)
    if not m:
        problems.append(f"alert {r['alert']}: no runbook_url into docs/runbook.md")
    elif m.group(1) not in anchors:
        problems.append(f"alert {r['alert']}: docs/runbook.md has no section #{m.group(1)}")
    if "severity" not in (r.get("labels") or {}) or "summary" not in (r.get("annotations") or {}):
        problems.append(f"alert {r['alert']}: severity label or summary missing")

if problems:
    sys.exit("\n".join(problems))
print(f"compose: {len(storages)} storages, each a volume of its own served by its workers ({', '.join(WORKERS)}), scalable; "
      f"restart/logging/ports/secrets set, confined, limited, read-only; image: pinned, cached, no bench; "
      f"dashboard: {len(panels)} panels on ${{datasource}} showing all {len(exported)} exported metrics; "
      f"alerts: {len(rules)} with runbook sections")
PY

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool="$tools/usr/bin/promtool"
  if [ ! -x "$promtool" ]; then
    (cd "$tools" && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; } \
      && dpkg -x prometheus_*.deb . && rm -f prometheus_*.deb)
  fi
fi
# every panel's query parses: each becomes a recording rule, Grafana's interval a window
panel_rules=$(mktemp --suffix=.yml)
trap 'rm -f "$panel_rules"' EXIT
python3 - "$panel_rules" <<'PY'
import json, sys, yaml
dash = json.load(open("deploy/grafana/dashboards/stasis.json"))
exprs = [t["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
         for p in dash["panels"] for t in p.get("targets", [])]
rules = [{"record": f"panel:query_{i}", "expr": e} for i, e in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
PY
"$promtool" check rules "$panel_rules" >/dev/null || { echo "a dashboard query does not parse" >&2; exit 1; }
"$promtool" check config deploy/prometheus/prometheus.yml
"$promtool" check rules deploy/prometheus/alerts.yml
"$promtool" test rules deploy/prometheus/alerts.test.yml

# Kubernetes manifests: rendered by kustomize (kubectl's, when the machine has it) and by
# check.py's own renderer, which must agree; every document validated against the
# Kubernetes 1.30 schemas (strict), the ServiceMonitor field by field, and what the
# binaries need of their pods (deploy/kubernetes/check.py)
if [ "$(python -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" \
    != "${kubernetes_validate_pin#*==}" ]; then
  python_tools "$kubernetes_validate_pin" pyyaml
fi
python deploy/kubernetes/check.py 1.30.0
