#!/usr/bin/env python3
"""Offline Helm operations on charts/volley through helm-python-sdk (no helm binary, no cluster).

Used by operator/tests/chart.rs and scripts/render-install.sh. Subcommands print JSON (or YAML
for `install`) on stdout and exit non-zero with a message on stderr on failure.

  lint                       strict lint, JSON report
  render [VALUES_JSON]       rendered templates as {path: manifest}
  schema-check VALUES_JSON   exit 0 if the values pass values.schema.json, 1 otherwise
  install                    the plain-YAML install bundle (namespace + the chart rendered with
                             defaults, without the `helm test` hooks)
"""

import json
import os
import sys

import helm_python as helm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CHART = os.path.join(ROOT, "charts", "volley")
RELEASE = "volley"
# The release namespace; tests render into others (VOLLEY_CHART_NAMESPACE) to check quoting.
NAMESPACE = os.environ.get("VOLLEY_CHART_NAMESPACE", "volley-system")


def load_values(arg):
    if arg is None:
        return None
    with open(arg, encoding="utf-8") as f:
        return json.load(f)


def render(values):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(text):
    """Splits multi-document YAML, dropping documents that hold only comments."""
    docs, cur = [], []
    for line in text.splitlines():
        if line.strip() == "---":
            docs.append(cur)
            cur = []
        else:
            cur.append(line)
    docs.append(cur)
    out = []
    for lines in docs:
        if any(l.strip() and not l.lstrip().startswith("#") for l in lines):
            out.append("\n".join(lines).strip("\n"))
    return out


def install():
    """The install bundle: the Namespace, then every rendered template (the CRD first)."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}"]
    # `helm test` hooks (templates/tests/) are not part of an install.
    paths = sorted(
        p for p in rendered if not p.endswith("NOTES.txt") and "/templates/tests/" not in p
    )
    paths.sort(key=lambda p: not p.endswith("/crd.yaml"))
    for path in paths:
        docs.extend(documents(rendered[path]))
    header = (
        "# Volley operator install bundle: charts/volley rendered with default values by\n"
        "# scripts/render-install.sh (release \"volley\", namespace volley-system).\n"
        "# Do not edit; change the chart and re-render.\n"
    )
    return header + "---\n".join(d + "\n" for d in docs)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    try:
        if cmd == "lint":
            report = helm.lint(CHART, strict=True, namespace=NAMESPACE, kube_version="v1.34.0")
            print(json.dumps(report))
        elif cmd == "render":
            print(json.dumps(render(load_values(argv[2] if len(argv) > 2 else None))))
        elif cmd == "schema-check":
            with helm.Chart.load(CHART) as chart:
                try:
                    chart.validate_schema(load_values(argv[2]))
                except helm.HelmValuesError as e:
                    print(str(e), file=sys.stderr)
                    return 1
        elif cmd == "install":
            sys.stdout.write(install())
        else:
            print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
            return 2
    except helm.HelmError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
