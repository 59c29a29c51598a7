#!/usr/bin/env python3
"""Helpers of scripts/check-deploy (run with the deploy-tools virtualenv's python).

  check_deploy.py render CHART OUTDIR     render the Helm chart with Helm's own engine
                                          (helm-python-sdk: Helm's Go SDK through libhelm_c),
                                          lint it, one file per layout, plus the kmswatch.yml of
                                          each ConfigMap (for `kmswatch validate`)
  check_deploy.py manifests DIR           every rendered document: YAML parses, required fields
  check_deploy.py compose FILE            compose file: YAML, services, references
  check_deploy.py links FILE...           Markdown links: relative targets exist, anchors exist
"""

import os
import re
import sys

import yaml

LAYOUTS = {
    "single": {},
    "single-emptydir": {"persistence": {"enabled": False}},
    "single-tls": {"metrics": {"tls": {"existingSecret": "kmswatch-metrics-tls"},
                               "auth": {"existingSecret": "my-metrics-token"}}},
    "two-tier": {
        "layout": "two-tier",
        "config": {"scale_out": {"brokers": ["kafka-0.kafka:9092"], "topic": "kmswatch-events",
                                 "group_id": "kmswatch-detect"}},
        "secretEnv": ["kmswatch-secrets"],
    },
}


def fail(msg):
    print(f"check-deploy: {msg}", file=sys.stderr)
    sys.exit(1)


def render(chart_dir, out_dir):
    import helm_python

    helm_python.disable_logging()
    # Helm's lint severities: 1 info, 2 warning, 3 error; warnings fail (as `helm lint --strict`).
    result = helm_python.lint(chart_dir, strict=True)
    bad = [m for m in result.get("messages", []) if m.get("severity", 0) >= 2] + list(result.get("errors") or [])
    if bad:
        fail(f"helm lint {chart_dir}: {bad}")
    print(f"  helm lint {chart_dir}: no warnings or errors ({len(result.get('messages', []))} info)")
    chart = helm_python.Chart.load(chart_dir)
    os.makedirs(out_dir, exist_ok=True)
    for name, values in LAYOUTS.items():
        out = chart.render(values, name="kmswatch", namespace="kmswatch")
        docs = []
        for path, body in sorted(out.items()) if isinstance(out, dict) else out:
            if path.endswith("NOTES.txt") or not body.strip():
                continue
            docs.append(f"# Source: {path}\n{body.strip()}\n")
        manifest = os.path.join(out_dir, f"{name}.yaml")
        with open(manifest, "w") as f:
            f.write("---\n".join(docs))
        for doc in yaml.safe_load_all(open(manifest)):
            if doc and doc.get("kind") == "ConfigMap":
                cfg = os.path.join(out_dir, f"{name}.kmswatch.yml")
                with open(cfg, "w") as f:
                    f.write(doc["data"]["kmswatch.yml"])
        print(f"  rendered {name}: {len(docs)} templates → {manifest}")


REQUIRED = {
    "Deployment": ["spec.selector", "spec.template.spec.containers"],
    "Service": ["spec.ports"],
    "ConfigMap": ["data"],
    "ServiceAccount": [],
    "PersistentVolumeClaim": ["spec.resources.requests.storage"],
    "NetworkPolicy": ["spec.podSelector"],
    "Secret": ["data"],
}


def get(d, dotted):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def manifests(d):
    n = 0
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(open(os.path.join(d, fn))):
            if doc is None:
                continue
            n += 1
            where = f"{fn}: {doc.get('kind')}/{get(doc, 'metadata.name')}"
            for k in ("apiVersion", "kind", "metadata.name", "metadata.namespace"):
                if not get(doc, k):
                    fail(f"{where}: missing {k}")
            if doc["kind"] not in REQUIRED:
                fail(f"{where}: unexpected kind")
            for k in REQUIRED[doc["kind"]]:
                if get(doc, k) is None:
                    fail(f"{where}: missing {k}")
            if doc["kind"] == "Deployment":
                pod = doc["spec"]["template"]["spec"]
                psc = pod.get("securityContext", {})
                if not psc.get("runAsNonRoot") or get(psc, "seccompProfile.type") != "RuntimeDefault":
                    fail(f"{where}: pod must run as non-root with the RuntimeDefault seccomp profile")
                for c in pod["containers"]:
                    sc = c.get("securityContext", {})
                    if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                            or get(sc, "capabilities.drop") != ["ALL"]:
                        fail(f"{where}: container {c['name']} is not restricted")
                    for p in ("livenessProbe", "readinessProbe"):
                        if not get(c, p + ".httpGet.path"):
                            fail(f"{where}: container {c['name']} has no {p}")
                    if not get(c, "resources.requests.memory"):
                        fail(f"{where}: container {c['name']} has no memory request")
                mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
                if "/var/lib/kmswatch" not in mounts:
                    fail(f"{where}: state directory /var/lib/kmswatch is not a writable volume")
                ann = get(doc, "spec.template.metadata.annotations") or {}
                if ann.get("prometheus.io/scrape") != "true":
                    fail(f"{where}: no Prometheus scrape annotation")
    if n == 0:
        fail(f"{d}: no manifests")
    print(f"  {n} rendered documents have their required fields")


def compose(path):
    doc = yaml.safe_load(open(path))
    services = doc.get("services") or fail(f"{path}: no services")
    volumes = set((doc.get("volumes") or {}).keys())
    for name, s in services.items():
        if not (s.get("image") or s.get("build")):
            fail(f"{path}: service {name} has neither image nor build")
        deps = s.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                fail(f"{path}: service {name} depends on unknown service {dep}")
        for v in s.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith((".", "/")):
                full = os.path.normpath(os.path.join(os.path.dirname(path), src))
                if not os.path.exists(full):
                    fail(f"{path}: service {name} mounts missing path {src}")
            elif src and src not in volumes:
                fail(f"{path}: service {name} uses undeclared volume {src}")
        b = s.get("build")
        if isinstance(b, dict):
            ctx = os.path.normpath(os.path.join(os.path.dirname(path), b.get("context", ".")))
            if not os.path.exists(os.path.join(ctx, b.get("dockerfile", "Dockerfile"))):
                fail(f"{path}: service {name}: no Dockerfile {b.get('dockerfile')} in {ctx}")
    print(f"  {path}: {len(services)} services, references resolve")


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(text):
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_|\[|\]\([^)]*\)", "", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, out, fence = {}, set(), False
        for line in open(path, encoding="utf-8"):
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            m = None if fence else HEADING.match(line)
            if m:
                s = slug(m.group(2))
                k = seen.get(s, 0)
                seen[s] = k + 1
                out.add(s if k == 0 else f"{s}-{k}")
        cache[path] = out
    return cache[path]


def links(files):
    bad, n = [], 0
    for f in files:
        fence = False
        for i, line in enumerate(open(f, encoding="utf-8"), 1):
            if line.lstrip().startswith("```"):
                fence = not fence
            if fence:
                continue
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                n += 1
                file_part, _, frag = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(f), file_part)) if file_part else f
                if not os.path.exists(dest):
                    bad.append(f"{f}:{i}: {target}: {dest} does not exist")
                elif frag and dest.endswith(".md") and frag not in anchors(dest):
                    bad.append(f"{f}:{i}: {target}: no heading #{frag} in {dest}")
    if bad:
        fail("broken links:\n  " + "\n  ".join(bad))
    print(f"  {n} relative links in {len(files)} files resolve")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"render": lambda: render(*args), "manifests": lambda: manifests(*args),
     "compose": lambda: compose(*args), "links": lambda: links(args)}[cmd]()
