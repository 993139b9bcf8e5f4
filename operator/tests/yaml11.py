"""Reads YAML files the way a YAML 1.1 reader does (PyYAML, as kubectl and the API server's
sigs.k8s.io/yaml do) and prints them as JSON: {"path": [documents...]}.

Helm template lines ({{ ... }} alone on a line, as in the chart's crd.yaml) are dropped first.
Values JSON cannot hold (dates) are printed as strings, so they show up as differences.
Needs: pip install PyYAML.
"""
import json
import sys

import yaml


def strip_template(text):
    return "\n".join(
        line for line in text.splitlines() if not line.strip().startswith("{{")
    )


out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        out[path] = [d for d in yaml.safe_load_all(strip_template(f.read())) if d is not None]
print(json.dumps(out, default=str))
