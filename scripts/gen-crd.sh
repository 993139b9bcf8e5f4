#!/usr/bin/env bash
# Regenerates the checked-in PushCluster CRD copies from the Rust types.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo run --quiet -p volley-operator --bin crdgen > crds/yaml/pushclusters.volley.dev.yaml
cp crds/yaml/pushclusters.volley.dev.yaml charts/volley/crds/pushclusters.volley.dev.yaml
echo "wrote crds/yaml and charts/volley/crds"
