#!/usr/bin/env bash
# Builds the release binaries and writes one OCI image archive per binary, without a container
# engine: target/images/volley-gateway-<version>.oci.tar and volley-operator-<version>.oci.tar.
#
#   scripts/images.sh                 build + pack
#   scripts/images.sh --skip-build    pack the binaries already in target/release
#
# Load them with `ctr -n k8s.io images import`, `kind load image-archive`, `k3d image import`
# (or `cargo xtask load ctr|kind|k3d`), push with `skopeo copy oci-archive:… docker://…`.
# Needs: ldd (libc-bin) and Debian's ca-certificates bundle on the build machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --locked -q -p xtask -- images "$@"
