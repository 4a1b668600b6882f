#!/usr/bin/env python3
"""Validates deploy/kubernetes without a cluster (run by scripts/check-deploy.sh).

Each kustomization is rendered twice: by this file's own renderer (the subset of
kustomize the manifests use: resources, namespace, images, strategic-merge patches) and,
when `kubectl` or `kustomize` is on the machine, by kustomize itself; the two renderings
must be the same, so the plain-Python one can stand in where kustomize is missing. Every
rendered document is then validated against the Kubernetes JSON schemas (kubernetes-validate,
strict: unknown fields are errors) of the oldest Kubernetes version the manifests support,
the ServiceMonitor (a CRD without a core schema) is checked field by field, and what the
binaries need of their pods is checked across documents: config keys the loader knows,
probes on the ports they really serve, secrets only as files, every storage served by
workers that mount its volume at its root (a ReadWriteOnce one by a single replaced,
never surged, pod), the grace period above worker.shutdown_grace, the restricted
security context, no Service links.

Usage: check.py [KUBERNETES_VERSION]   (default 1.30.0)
"""

import copy
import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent
VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.30.0"
# what `kubectl apply -k` takes: the base, the example overlay, each optional piece
KUSTOMIZATIONS = ["base", "overlays/example", "optional/network-policy", "optional/service-monitor"]
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole",
                  "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
# kinds without a core schema, checked by check_service_monitor instead
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# the secrets, which reach the processes only as files (their *_FILE variables)
SECRET_VARS = ["STASIS_DATABASE_URL", "STASIS_REDIS_URL", "STASIS_SECRETS_KEY"]
# worker/src/runner.rs: what stopped syncs get after worker.shutdown_grace to record
STOPPED_SYNCS_SETTLE = 4
# what docs/kubernetes.md applies first, alone: the migration Job and what it reads
BEFORE_ROLLOUT = "stasis-mirror-sync/before-rollout"
problems = []


def load_all(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        raise SystemExit(f"{path.relative_to(ROOT)}: not YAML: {e}")


# --- rendering -------------------------------------------------------------------------

MERGE_KEYS = ("name", "mountPath", "containerPort", "port")


def merge(base, patch):
    """Strategic merge as kustomize does it for the fields these manifests patch: maps
    recursively, lists of named items (containers, env, volumes, mounts, ports) by key,
    any other list replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if "$patch" in patch:
            raise SystemExit("check.py: $patch directives are not supported by the fallback renderer")
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and base and patch \
            and all(isinstance(i, dict) for i in base + patch):
        key = next((k for k in MERGE_KEYS if all(k in i for i in base + patch)), None)
        if key:
            # kustomize puts the items the patch adds before the base's
            out, added = [copy.deepcopy(i) for i in base], []
            for item in patch:
                at = next((n for n, i in enumerate(out) if i[key] == item[key]), None)
                if at is None:
                    added.append(copy.deepcopy(item))
                else:
                    out[at] = merge(out[at], item)
            return added + out
    return copy.deepcopy(patch)


def pod_spec(doc):
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return ((doc.get("spec") or {}).get("template") or {}).get("spec")


def set_image(container, images):
    ref = container.get("image", "")
    name, tag = re.match(r"^(.*?)((?::[^:/@]+)?(?:@sha256:[0-9a-f]+)?)$", ref).groups()
    for img in images:
        if img["name"] == name:
            tag = f":{img['newTag']}" if "newTag" in img else tag
            tag = f"@{img['digest']}" if "digest" in img else tag
            container["image"] = img.get("newName", name) + tag


def render_python(directory):
    kust = yaml.safe_load(open(directory / "kustomization.yaml"))
    unsupported = set(kust) - {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    if unsupported:
        raise SystemExit(f"check.py: {directory}: {sorted(unsupported)} not supported by the fallback renderer")
    docs = []
    for res in kust.get("resources", []):
        path = directory / res
        docs += render_python(path) if path.is_dir() else load_all(path)
    for patch in kust.get("patches", []):
        if set(patch) != {"path"}:
            raise SystemExit(f"check.py: {directory}: only file patches (path:) are supported")
        for p in load_all(directory / patch["path"]):
            at = [n for n, d in enumerate(docs)
                  if (d["kind"], d["metadata"]["name"]) == (p["kind"], p["metadata"]["name"])]
            if len(at) != 1:
                raise SystemExit(f"check.py: {directory}: patch {patch['path']} matches {len(at)} resources")
            docs[at[0]] = merge(docs[at[0]], p)
    for doc in docs:
        spec = pod_spec(doc)
        for c in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
            set_image(c, kust.get("images", []))
        if "namespace" in kust and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kust["namespace"]
    return docs


def render_kustomize(directory):
    """kustomize's own rendering, or None when neither kubectl nor kustomize is here."""
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(directory)]
    else:
        return None
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        problems.append(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def ident(doc):
    meta = doc.get("metadata") or {}
    return (doc.get("kind", "?"), meta.get("namespace", ""), meta.get("name", "?"))


def render(rel):
    directory = ROOT / rel
    mine = render_python(directory)
    theirs = render_kustomize(directory)
    if theirs is not None:
        a, b = sorted(mine, key=ident), sorted(theirs, key=ident)
        if [ident(d) for d in a] != [ident(d) for d in b]:
            problems.append(f"{rel}: kustomize renders {[ident(d) for d in b]}, check.py {[ident(d) for d in a]}")
        else:
            for x, y in zip(a, b):
                if x != y:
                    diff = difflib.unified_diff(yaml.safe_dump(y).splitlines(), yaml.safe_dump(x).splitlines(),
                                                "kustomize", "check.py", lineterm="", n=2)
                    problems.append(f"{rel}: {ident(x)} rendered differently:\n" + "\n".join(diff))
    return mine


# --- schemas ---------------------------------------------------------------------------

def validate_schemas(rel, docs):
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{rel}: {ident(doc)}: no Kubernetes {VERSION} schema for "
                            f"{doc.get('apiVersion')} {doc.get('kind')}")
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            problems.append(f"{rel}: {ident(doc)}: {where}: {e.message}")


SM_SPEC = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
           "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata"}
SM_ENDPOINT = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
               "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
               "params", "tlsConfig", "bearerTokenSecret", "authorization", "basicAuth",
               "followRedirects", "enableHttp2", "filterRunning", "proxyUrl", "oauth2"}
RELABEL = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def check_service_monitor(rel, docs, pods):
    """The ServiceMonitor against the Prometheus Operator's CRD, field by field, and
    against what it must find: a Service of its set, a port of it, pods behind it."""
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = [d for d in docs if (d["apiVersion"], d["kind"]) in CRD_KINDS]
    for sm in monitors:
        name = sm["metadata"].get("name", "?")
        spec = sm.get("spec") or {}
        if set(sm) - {"apiVersion", "kind", "metadata", "spec"} or set(spec) - SM_SPEC:
            problems.append(f"{rel}: ServiceMonitor {name}: unknown fields "
                            f"{sorted((set(sm) - {'apiVersion', 'kind', 'metadata', 'spec'}) | (set(spec) - SM_SPEC))}")
        want = (spec.get("selector") or {}).get("matchLabels") or {}
        svc = [s for s in services if want and want.items() <= (s["metadata"].get("labels") or {}).items()]
        if len(svc) != 1:
            problems.append(f"{rel}: ServiceMonitor {name} selects {len(svc)} Services of its set, not one")
            continue
        svc = svc[0]
        sel = svc["spec"].get("selector") or {}
        if not any(sel.items() <= labels.items() for labels, _ in pods.values()):
            problems.append(f"{rel}: Service {svc['metadata']['name']} selects no Stasis pod")
        ports = {p.get("name") for p in svc["spec"].get("ports", [])}
        if not spec.get("endpoints"):
            problems.append(f"{rel}: ServiceMonitor {name} has no endpoints")
        for ep in spec.get("endpoints", []):
            if set(ep) - SM_ENDPOINT:
                problems.append(f"{rel}: ServiceMonitor {name}: unknown endpoint fields {sorted(set(ep) - SM_ENDPOINT)}")
            if ep.get("port") not in ports:
                problems.append(f"{rel}: ServiceMonitor {name}: port {ep.get('port')!r} is not a port of {svc['metadata']['name']}")
            for key in ("interval", "scrapeTimeout"):
                if key in ep and not DURATION.match(str(ep[key])):
                    problems.append(f"{rel}: ServiceMonitor {name}: {key} {ep[key]!r} is not a duration")
            relabels = ep.get("relabelings", [])
            for r in relabels + ep.get("metricRelabelings", []):
                if set(r) - RELABEL:
                    problems.append(f"{rel}: ServiceMonitor {name}: unknown relabeling fields {sorted(set(r) - RELABEL)}")
            # deploy/prometheus/alerts.yml's StasisTargetDown matches job=~"stasis-.*"
            if not any(r.get("targetLabel") == "job" and str(r.get("replacement", "")).startswith("stasis-")
                       for r in relabels):
                problems.append(f"{rel}: ServiceMonitor {name}: no job=stasis-<component> relabeling (the alerts match job=~\"stasis-.*\")")
    return len(monitors)


# --- what the binaries need of their pods ----------------------------------------------

def seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)\s*(ms|s|m|h|d)", str(text))
    if not parts or re.sub(r"(\d+)\s*(ms|s|m|h|d)|\s", "", str(text)):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def effective_config(rel, what, spec, container, configmaps):
    """The config file the container's STASIS_CONFIG names, with its STASIS_* variables
    over it (as the config loader does: the first _ splits section from key)."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    cfg = {}
    path = env.get("STASIS_CONFIG")
    if not path:
        problems.append(f"{rel}: {what}: no STASIS_CONFIG")
    else:
        mount = next((m for m in container.get("volumeMounts", [])
                      if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
        vol = mount and next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), None)
        cm = vol and configmaps.get((vol.get("configMap") or {}).get("name"))
        key = mount and path[len(mount["mountPath"].rstrip("/")) + 1:]
        if not cm or key not in (cm.get("data") or {}):
            problems.append(f"{rel}: {what}: STASIS_CONFIG {path} is no key of a mounted ConfigMap")
        else:
            cfg = yaml.safe_load(cm["data"][key]) or {}
    for name, value in env.items():
        if name.startswith("STASIS_") and not name.endswith("_FILE") and name != "STASIS_CONFIG":
            section, _, key = name[len("STASIS_"):].lower().partition("_")
            cfg.setdefault(section, {})[key] = value
    return cfg


def documented_keys():
    """The config keys docs/configuration.md documents (the loader refuses any other):
    `section.key` in its table's first column, `a.x` / `y` meaning a.x and a.y."""
    keys = set()
    for row in re.findall(r"^\| (.*?) \|", (ROOT.parent.parent / "docs/configuration.md").read_text(), re.M):
        section = None
        for token in re.findall(r"`([\w.]+)`", row):
            if "." in token:
                section, _, key = token.partition(".")
            if section:
                keys.add(f"{section}.{token.rpartition('.')[2]}")
    return keys


KNOWN_KEYS = documented_keys()


def check_keys(rel, what, cfg):
    for section, values in cfg.items():
        for key in (values if isinstance(values, dict) else {None: None}):
            if f"{section}.{key}" not in KNOWN_KEYS:
                problems.append(f"{rel}: {what}: config key {section}.{key} is not one of docs/configuration.md "
                                "(the loader refuses unknown keys)")


def get(cfg, dotted, default=None):
    section, key = dotted.split(".")
    return (cfg.get(section) or {}).get(key, default)


def storages_of(cfg):
    """{name: root} of the configured storages, as shared/src/config/storage.rs reads
    them: storage.storages as a map (YAML) or `name=root[;weight=N][;read_only],…` (an
    environment variable); without any, storage.root is the one storage `default`."""
    named = get(cfg, "storage.storages") or {}
    if isinstance(named, str):
        named = {e.split(";")[0].partition("=")[0].strip(): {"root": e.split(";")[0].partition("=")[2].strip()}
                 for e in named.split(",") if e.strip()}
    if not named:
        return {"default": get(cfg, "storage.root", "./data/mirrors")}
    return {name: (s or {}).get("root") for name, s in named.items()}


def served_storages(cfg):
    """worker.storages (a list, or `a,b` from the environment); none means every one."""
    served = get(cfg, "worker.storages") or []
    if isinstance(served, str):
        served = [s.strip() for s in served.split(",") if s.strip()]
    return list(served) or list(storages_of(cfg))


def probe_port(container, probe):
    port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
    if isinstance(port, str):
        return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)
    return port


def check_pods(rel, docs):
    """Returns {name: (pod template labels, component)} for the cross-checks."""
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pvcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    pods = {}
    served = []         # (storage, claim, worker Deployment)
    configured = {}     # every storage any pod's configuration names
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None or doc["kind"] not in ("Deployment", "Job"):
            continue
        name = doc["metadata"]["name"]
        labels = doc["spec"]["template"]["metadata"].get("labels") or {}
        component = labels.get("app.kubernetes.io/component")
        pods[name] = (labels, component)
        what = f"{doc['kind']} {name}"
        if spec.get("enableServiceLinks") is not False:
            problems.append(f"{rel}: {what}: enableServiceLinks is not false (Service links add variables "
                            "for every Service of the namespace, unused by the processes)")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{rel}: {what}: mounts a service account token it never uses")
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{rel}: {what}: pod securityContext lacks runAsNonRoot or seccompProfile RuntimeDefault")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"] + spec.get("initContainers", []):
            cw = f"{what} container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True \
                    or "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{rel}: {cw}: securityContext must set allowPrivilegeEscalation false, "
                                "readOnlyRootFilesystem true and drop ALL capabilities")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(kind) or {}):
                    problems.append(f"{rel}: {cw}: no cpu and memory {kind}")
            if not re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", c.get("image", "")) or c["image"].endswith(":latest"):
                problems.append(f"{rel}: {cw}: image {c.get('image')!r} is not pinned to a tag")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            for m in mounts.values():
                if m["name"] not in volumes:
                    problems.append(f"{rel}: {cw}: mounts volume {m['name']}, which the pod does not have")
            if "emptyDir" not in volumes.get((mounts.get("/tmp") or {}).get("name"), {}):
                problems.append(f"{rel}: {cw}: no emptyDir on /tmp (the root filesystem is read-only)")
            if c.get("envFrom"):
                problems.append(f"{rel}: {cw}: envFrom (variables are listed one by one)")
            env = {e["name"]: e for e in c.get("env", [])}
            for var in SECRET_VARS:
                if var in env:
                    problems.append(f"{rel}: {cw}: {var} in the environment: secrets come as files ({var}_FILE)")
                if var + "_FILE" not in env:
                    continue
                path = env[var + "_FILE"].get("value", "")
                mount = mounts.get(os.path.dirname(path))
                secret = (volumes.get((mount or {}).get("name")) or {}).get("secret")
                items = [i["path"] for i in (secret or {}).get("items", [])]
                if not secret or (items and os.path.basename(path) not in items):
                    problems.append(f"{rel}: {cw}: {var}_FILE={path} is no file of a mounted Secret")
            cfg = effective_config(rel, cw, spec, c, configmaps)
            check_keys(rel, cw, cfg)
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if component in ("api", "worker") and "STASIS_SECRETS_KEY_FILE" not in env:
                problems.append(f"{rel}: {cw}: no STASIS_SECRETS_KEY_FILE (the {component} opens credentials)")
            # where the pod mounts which claim
            claims_at = {}
            for path, m in mounts.items():
                claim = ((volumes.get(m["name"]) or {}).get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    claims_at[path] = claim
                    if claim not in pvcs:
                        problems.append(f"{rel}: {cw}: mounts claim {claim}, which is not a PersistentVolumeClaim of the set")
            storages = storages_of(cfg)
            if component == "worker":
                # a worker syncs its storages' mirrors in place: each root is its volume
                for name in served_storages(cfg):
                    root = storages.get(name)
                    if root is None:
                        problems.append(f"{rel}: {cw}: serves storage {name!r}, which storage.storages does not name")
                    elif root not in claims_at:
                        problems.append(f"{rel}: {cw}: serves storage {name} but mounts no PersistentVolumeClaim at its root {root}")
                    else:
                        served.append((name, claims_at[root], doc))
                if not get(cfg, "worker.storages"):
                    problems.append(f"{rel}: {cw}: no worker.storages (STASIS_WORKER_STORAGES): it would take "
                                    "every storage's jobs")
            for name, root in storages.items():
                claim = claims_at.get(root)
                if claim in pvcs and component != "worker" \
                        and "ReadWriteMany" not in pvcs[claim]["spec"].get("accessModes", []):
                    problems.append(f"{rel}: {cw}: mounts storage {name}'s ReadWriteOnce claim {claim}, "
                                    "which belongs to its workers (on their node)")
            configured.update(storages)
            if doc["kind"] != "Deployment":
                continue
            # long-running: /metrics on metrics.listen, probes on what the binary serves
            metrics = get(cfg, "metrics.listen")
            if not metrics or port_of(metrics) != ports.get("metrics"):
                problems.append(f"{rel}: {cw}: metrics.listen {metrics!r} is not its 'metrics' port {ports.get('metrics')}")
            ann = doc["spec"]["template"]["metadata"].get("annotations") or {}
            if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(ports.get("metrics")):
                problems.append(f"{rel}: {what}: prometheus.io/scrape and /port annotations do not name the metrics port")
            if component == "api":
                # api/src/routes/health.rs, on api.listen
                listen = get(cfg, "api.listen", "127.0.0.1:8080")
                if not str(listen).startswith(("0.0.0.0:", "[::]:")):
                    problems.append(f"{rel}: {cw}: api.listen {listen} is not reachable from outside the pod")
                expect = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
                want_port = port_of(listen)
                if ports.get("http") != want_port:
                    problems.append(f"{rel}: {cw}: its 'http' port {ports.get('http')} is not api.listen's {want_port}")
            else:
                # the scheduler and workers serve no /healthz: only the metrics exporter,
                # whose /health answers while the process's runtime does
                expect = {"livenessProbe": "/health", "readinessProbe": "/health"}
                want_port = ports.get("metrics")
            for probe, path in expect.items():
                got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path or probe_port(c, probe) != want_port:
                    problems.append(f"{rel}: {cw}: {probe} is not GET {path} on port {want_port}")
            if component == "worker":
                grace = seconds(get(cfg, "worker.shutdown_grace", "60s"))
                term = spec.get("terminationGracePeriodSeconds", 30)
                if term <= grace + STOPPED_SYNCS_SETTLE:
                    problems.append(f"{rel}: {what}: terminationGracePeriodSeconds {term} is not above "
                                    f"worker.shutdown_grace ({grace:g}s) + {STOPPED_SYNCS_SETTLE}s to record stopped syncs")
            if component == "api":
                timeout = seconds(get(cfg, "api.request_timeout", "30s"))
                if spec.get("terminationGracePeriodSeconds", 30) <= timeout:
                    problems.append(f"{rel}: {what}: terminationGracePeriodSeconds is not above api.request_timeout")
        before = (doc["metadata"].get("labels") or {}).get(BEFORE_ROLLOUT) == "true"
        if doc["kind"] == "Job" and component == "migrate":
            c = spec["containers"][0]
            if c.get("args") != ["stasisctl", "migrate"] or spec.get("restartPolicy") not in ("Never", "OnFailure"):
                problems.append(f"{rel}: {what}: is not a one-shot `stasisctl migrate`")
            # applied alone before the services (-l BEFORE_ROLLOUT=true): what it mounts
            # from the set must come along, or it waits for a ConfigMap that is not there
            if not before:
                problems.append(f"{rel}: {what}: no {BEFORE_ROLLOUT} label")
            for v in spec.get("volumes", []):
                cm = configmaps.get((v.get("configMap") or {}).get("name"))
                if cm and (cm["metadata"].get("labels") or {}).get(BEFORE_ROLLOUT) != "true":
                    problems.append(f"{rel}: ConfigMap {cm['metadata']['name']}, which the migration Job mounts, "
                                    f"has no {BEFORE_ROLLOUT} label")
        elif before:
            problems.append(f"{rel}: {what} is labelled {BEFORE_ROLLOUT}: it would start before the migrations ran")
    check_storages(rel, pvcs, configured, served)
    return pods


def check_storages(rel, pvcs, configured, served):
    """Every storage has workers, and its own volume: a claim is one storage's, and a
    ReadWriteOnce claim, which attaches to one node, is one Deployment's single pod,
    replaced (Recreate) rather than surged: a second pod elsewhere would wait for the
    volume forever, and a surge would wait for the pod it replaces."""
    for name, root in configured.items():
        # shared/src/config/storage.rs: valid_name
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", name) or not str(root or "").startswith("/"):
            problems.append(f"{rel}: storage {name!r} (root {root!r}) is not a valid name with an absolute root")
    if not served:
        return
    for name in configured:
        if not any(s == name for s, _, _ in served):
            problems.append(f"{rel}: storage {name}: no worker Deployment serves it (its mirrors would never sync)")
    by_claim = {}
    for storage, claim, doc in served:
        by_claim.setdefault(claim, {}).setdefault(storage, set()).add(doc["metadata"]["name"])
    for claim, users in by_claim.items():
        if len(users) > 1:
            problems.append(f"{rel}: claim {claim} holds storages {sorted(users)}: each storage is a volume of its own")
        if claim not in pvcs or "ReadWriteOnce" not in pvcs[claim]["spec"].get("accessModes", []):
            continue
        deployments = {d for names in users.values() for d in names}
        if len(deployments) > 1:
            problems.append(f"{rel}: ReadWriteOnce claim {claim} is mounted by {sorted(deployments)}: one node, one Deployment")
    for storage, claim, doc in served:
        if claim in pvcs and "ReadWriteOnce" in pvcs[claim]["spec"].get("accessModes", []):
            spec = doc["spec"]
            if spec.get("replicas", 1) != 1 or (spec.get("strategy") or {}).get("type") != "Recreate":
                problems.append(f"{rel}: {doc['kind']} {doc['metadata']['name']}: mounts ReadWriteOnce claim {claim} "
                                "with replicas other than 1 or a strategy other than Recreate")


def check_set(rel, docs, pods):
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    for svc in kinds.get("Service", []):
        # Service links are off, but a name like this would become STASIS_* variables
        # the moment a pod forgot enableServiceLinks: false
        if svc["metadata"]["name"].upper().replace("-", "_").startswith("STASIS_"):
            problems.append(f"{rel}: Service {svc['metadata']['name']}: its link variables would start with STASIS_")
        sel = svc["spec"].get("selector") or {}
        if not any(sel.items() <= labels.items() for labels, _ in pods.values()) and pods:
            problems.append(f"{rel}: Service {svc['metadata']['name']} selects no pod of the set")
    for pdb in kinds.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"].get("matchLabels") or {}
        if not any(sel.items() <= labels.items() for labels, _ in pods.values()):
            problems.append(f"{rel}: PodDisruptionBudget {pdb['metadata']['name']} selects no pod")
    if "Deployment" in kinds:
        comps = {c for _, c in pods.values()}
        want = {"api", "scheduler", "worker", "migrate"}
        if comps != want:
            problems.append(f"{rel}: components {sorted(c or '?' for c in comps)}, not {sorted(want)}")
        covered = {c for pdb in kinds.get("PodDisruptionBudget", [])
                   for labels, c in pods.values()
                   if (pdb["spec"]["selector"].get("matchLabels") or {}).items() <= labels.items()}
        for comp in ("api", "worker"):
            if comp not in covered:
                problems.append(f"{rel}: no PodDisruptionBudget for the {comp}")
        for d in kinds["Deployment"]:
            if pods[d["metadata"]["name"]][1] == "scheduler" and d["spec"].get("replicas", 1) < 2:
                problems.append(f"{rel}: the scheduler has no stand-by (replicas < 2)")


def main():
    rendered = {rel: render(rel) for rel in KUSTOMIZATIONS}
    base_pods = check_pods("base", rendered["base"])
    counts = []
    for rel, docs in rendered.items():
        validate_schemas(rel, docs)
        pods = check_pods(rel, docs) if rel != "base" else base_pods
        check_set(rel, docs, pods or base_pods)
        monitors = check_service_monitor(rel, docs, pods or base_pods)
        counts.append(f"{rel}: {len(docs)} documents" + (f" ({monitors} ServiceMonitor checked structurally)" if monitors else ""))
    if problems:
        sys.exit("\n".join(dict.fromkeys(problems)))
    how = "kustomize and check.py render alike" if (shutil.which("kubectl") or shutil.which("kustomize")) \
        else "rendered by check.py (no kubectl or kustomize here)"
    print(f"kubernetes: {how}; valid against Kubernetes {VERSION} (strict); " + "; ".join(counts))


main()
