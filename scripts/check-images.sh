#!/usr/bin/env bash
# CI image checks (run as root): builds the image archives, validates them with skopeo and with
# xtask's own reader (manifest, config, every digest and size, diff_ids, user, labels,
# entrypoint), then unpacks each root filesystem and runs the binary inside it as 65532:65532
# (`--version`; the gateway also starts standalone and must answer /healthz). A missing library,
# loader or wrong path fails here.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v skopeo >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null
fi
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
fi

start=$(date +%s)
cargo run --locked -q -p xtask -- images | tee target/images.list
echo "images built in $(( $(date +%s) - start ))s"

version=$(cargo run --locked -q -p xtask -- version)
# What skopeo (containers/image, as used by registries' clients) reads from each archive.
check='
import json, sys
archive, reference, digest, version, path = sys.argv[1:]
info = json.load(open(path))
labels = info.get("Labels") or {}
got_digest = info.get("Digest")
got_version = labels.get("org.opencontainers.image.version")
problems = []
if got_digest != digest:
    problems.append(f"skopeo digest {got_digest} != {digest}")
if got_version != version:
    problems.append(f"version label {got_version!r} != {version}")
for key in ("org.opencontainers.image.source", "org.opencontainers.image.revision"):
    if not labels.get(key):
        problems.append(f"label {key} missing")
if info.get("Os") != "linux":
    problems.append("os is not linux")
if problems:
    sys.exit(f"{archive}: " + "; ".join(problems))
print(f"{archive}: skopeo inspect ok ({reference} {digest})")
'
while read -r archive reference digest; do
  skopeo inspect "oci-archive:${archive}" > target/images.inspect.json
  python3 -c "$check" "$archive" "$reference" "$digest" "$version" target/images.inspect.json
done < target/images.list

cargo run --locked -q -p xtask -- check-images
