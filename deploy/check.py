#!/usr/bin/env python3
"""Offline checks of deploy/: run by tests/deploy.rs, usable by hand.

  python3 deploy/check.py yaml            every YAML file under deploy/ parses
                                          (Helm templates aside: not YAML)
  python3 deploy/check.py kubernetes      deploy/kubernetes/*.yaml against the
                                          Kubernetes JSON schemas (strict)
  python3 deploy/check.py helm-lint       `helm lint --strict` of the chart
  python3 deploy/check.py helm-template   the chart rendered with several value
                                          sets, each object against the schemas
  python3 deploy/check.py configs DIR     writes the gatehouse.toml each of
                                          them ships to DIR (kubernetes.toml,
                                          helm.toml) for the Rust test to load

Tools (installed by .ci/run into target/ci-tools/python, found through
PYTHONPATH): PyYAML, kubernetes-validate (bundles the schemas) and
helm-python-sdk (Helm's own Go code as a library: lint and render, no
cluster, no `helm` binary). Exit 0 = all good; 3 = a tool is missing.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
KUBE = os.path.join(DEPLOY, "kubernetes")
CHART = os.path.join(DEPLOY, "helm", "gatehouse")
# the oldest Kubernetes still supported by its project's cloud offerings
# we target, and the newest schemas bundled
KUBE_VERSIONS = ["1.29.0", "1.37.0"]
# value sets the chart is rendered with: defaults, and every switch on
HELM_VALUES = {
    "defaults": {},
    "everything-on": {
        "redis": {"enabled": True},
        "metrics": {"enabled": True},
        "secrets": {"redisPasswordKey": "redis-password"},
        "extraEnv": [{"name": "GATEHOUSE_LOG_LEVEL", "value": "debug"}],
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "podAnnotations": {"example.com/team": "platform"},
    },
    "no-pdb": {"podDisruptionBudget": {"enabled": False}, "replicaCount": 1},
}


def need(module):
    try:
        return __import__(module)
    except ImportError as e:
        print(f"deploy-check: MISSING TOOL: python module `{module}` ({e}); "
              f"install with .ci/run, or: pip install --target target/ci-tools/python "
              f"kubernetes-validate==1.37.0 helm-python-sdk==0.2.2", file=sys.stderr)
        sys.exit(3)


def yaml_files():
    for dirpath, _dirs, files in os.walk(DEPLOY):
        if os.path.join(CHART, "templates") in dirpath:
            continue
        for f in sorted(files):
            if f.endswith((".yaml", ".yml")):
                yield os.path.join(dirpath, f)


def cmd_yaml():
    yaml = need("yaml")
    n = 0
    for path in yaml_files():
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        if not docs:
            fail(f"{rel(path)}: no YAML document")
        n += 1
    print(f"deploy-check: {n} YAML files parse")


def validate_objects(objects, origin):
    kv = need("kubernetes_validate")
    problems = []
    for obj in objects:
        name = f"{origin}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                problems.append(f"{name} (Kubernetes {version}): {e.message} "
                                f"at {'.'.join(str(p) for p in e.absolute_path)}")
            except kv.SchemaNotFoundError:
                problems.append(f"{name}: no schema for {obj.get('apiVersion')} "
                                f"{obj.get('kind')} in Kubernetes {version}")
    return problems


def kube_objects():
    yaml = need("yaml")
    objects = []
    for f in sorted(os.listdir(KUBE)):
        if not f.endswith(".yaml"):
            continue
        with open(os.path.join(KUBE, f)) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is not None:
                    objects.append((f, doc))
    return objects


def cmd_kubernetes():
    problems = []
    n = 0
    for f, obj in kube_objects():
        if obj.get("kind") == "Kustomization":
            # not a cluster object: its resources must exist
            for r in obj.get("resources", []):
                if not os.path.exists(os.path.join(KUBE, r)):
                    problems.append(f"{f}: resource {r} does not exist")
            continue
        problems += validate_objects([obj], f)
        n += 1
    report(problems, f"{n} Kubernetes objects valid against the schemas of "
                     f"{' and '.join(KUBE_VERSIONS)}")


def cmd_helm_lint():
    helm = need("helm_python")
    from helm_python import chart as helm_chart
    problems = []
    for label, values in HELM_VALUES.items():
        r = helm_chart.lint(CHART, values or None, strict=True)
        for m in r.get("messages", []):
            if m.get("severity", 0) >= 2:  # warning or error
                problems.append(f"helm lint ({label}): {m.get('path')}: {m.get('error')}")
        for e in r.get("errors", []) or []:
            problems.append(f"helm lint ({label}): {e}")
    del helm
    report(problems, f"helm lint --strict: clean with {len(HELM_VALUES)} value sets")


def render(values):
    need("helm_python")
    yaml = need("yaml")
    from helm_python.chart import Chart
    chart = Chart.load(CHART)
    out = chart.render(values or None, name="gatehouse", namespace="default", is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append((path, doc))
    return objects


def cmd_helm_template():
    problems = []
    n = 0
    for label, values in HELM_VALUES.items():
        objects = render(values)
        kinds = sorted(o.get("kind") for _p, o in objects)
        want = {"ConfigMap", "Deployment", "Service"}
        if not want <= set(kinds):
            problems.append(f"{label}: rendered {kinds}, missing {sorted(want - set(kinds))}")
        for path, obj in objects:
            problems += validate_objects([obj], f"{label} {os.path.basename(path)}")
            n += 1
        check_switches(label, values, objects, problems)
    report(problems, f"helm template: {n} objects from {len(HELM_VALUES)} value sets valid "
                     f"against the schemas of {' and '.join(KUBE_VERSIONS)}")


def check_switches(label, values, objects, problems):
    """The values do what they say in the rendered objects."""
    deployments = {o["metadata"]["name"]: o for _p, o in objects if o["kind"] == "Deployment"}
    main = deployments.get("gatehouse")
    if main is None:
        problems.append(f"{label}: no Deployment `gatehouse`")
        return
    spec = main["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    redis_on = values.get("redis", {}).get("enabled", False)
    if redis_on != ("gatehouse-redis" in deployments):
        problems.append(f"{label}: redis.enabled={redis_on} but Redis Deployment "
                        f"{'absent' if redis_on else 'present'}")
    if redis_on != ("GATEHOUSE_REDIS_CONNECTION_URL" in env):
        problems.append(f"{label}: redis.enabled={redis_on} but the Redis URL is "
                        f"{'not ' if redis_on else ''}given to gatehouse")
    metrics_on = values.get("metrics", {}).get("enabled", False)
    ports = [p["name"] for p in c["ports"]]
    if metrics_on != ("metrics" in ports):
        problems.append(f"{label}: metrics.enabled={metrics_on} but container ports {ports}")
    for name in ("GATEHOUSE_CLIENT_SECRET", "GATEHOUSE_COOKIE_SECRET"):
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            problems.append(f"{label}: {name} is not a Secret reference")
    for e in c.get("env", []):
        if "SECRET" in e["name"] and "value" in e:
            problems.append(f"{label}: {e['name']} carries a value, not a Secret reference")
    sc = c.get("securityContext", {})
    if not (sc.get("readOnlyRootFilesystem") and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and sc.get("allowPrivilegeEscalation") is False):
        problems.append(f"{label}: container securityContext weakened: {sc}")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{label}: pod not runAsNonRoot")
    probes = (c.get("livenessProbe", {}).get("httpGet", {}).get("path"),
              c.get("readinessProbe", {}).get("httpGet", {}).get("path"))
    if probes != ("/ping", "/ready"):
        problems.append(f"{label}: probes {probes}, want /ping and /ready")
    pdb_on = values.get("podDisruptionBudget", {}).get("enabled", True)
    has_pdb = any(o["kind"] == "PodDisruptionBudget" for _p, o in objects)
    if pdb_on != has_pdb:
        problems.append(f"{label}: podDisruptionBudget.enabled={pdb_on}, PDB rendered: {has_pdb}")


def cmd_configs(outdir):
    os.makedirs(outdir, exist_ok=True)
    cms = [o for _f, o in kube_objects() if o.get("kind") == "ConfigMap"]
    with open(os.path.join(outdir, "kubernetes.toml"), "w") as f:
        f.write(cms[0]["data"]["gatehouse.toml"])
    helm_cms = [o for _p, o in render({}) if o["kind"] == "ConfigMap"]
    with open(os.path.join(outdir, "helm.toml"), "w") as f:
        f.write(helm_cms[0]["data"]["gatehouse.toml"])
    print(f"deploy-check: wrote kubernetes.toml and helm.toml to {outdir}")


def rel(path):
    return os.path.relpath(path, ROOT)


def fail(msg):
    print(f"deploy-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def report(problems, ok):
    if problems:
        for p in problems:
            print(f"deploy-check: FAILED: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy-check: {ok}")


def main(argv):
    cmds = {"yaml": cmd_yaml, "kubernetes": cmd_kubernetes, "helm-lint": cmd_helm_lint,
            "helm-template": cmd_helm_template}
    if len(argv) == 3 and argv[1] == "configs":
        return cmd_configs(argv[2])
    if len(argv) != 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[argv[1]]()


if __name__ == "__main__":
    main(sys.argv)
