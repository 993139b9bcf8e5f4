#!/usr/bin/env bash
# Regenerates the checked-in PushCluster CRD copies from the Rust types:
#   crds/pushcluster.yaml                 plain CRD (kubectl apply -f)
#   charts/volley/templates/crd.yaml      the chart's copy (behind crds.install, resource-policy keep)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo run --quiet -p volley-operator --bin crdgen > crds/pushcluster.yaml
cargo run --quiet -p volley-operator --bin crdgen -- --chart > charts/volley/templates/crd.yaml
echo "wrote crds/pushcluster.yaml and charts/volley/templates/crd.yaml"
