#!/usr/bin/env bash
# Regenerates manifests/install.yaml (a namespace + the chart rendered with default values)
# from charts/volley. Needs: pip install helm-python-sdk.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p manifests
python3 scripts/helm-chart.py install > manifests/install.yaml.tmp
mv manifests/install.yaml.tmp manifests/install.yaml
echo "wrote manifests/install.yaml"
