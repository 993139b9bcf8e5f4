# syntax=docker/dockerfile:1
# Volley images: one build stage, one final stage per binary. From the repository root:
#
#   docker build --target gateway  -t ghcr.io/volley-dev/volley-gateway:0.1.0 .
#   docker build --target operator -t ghcr.io/volley-dev/volley-operator:0.1.0 .
#
# Pass --build-arg REVISION=$(git rev-parse HEAD) (the .git directory is not in the context).
# Without a container engine, `scripts/images.sh` writes the same images (same binary path,
# user and labels) as OCI archives; see docs/operator.md.
#
# VERSION is the workspace version (Cargo.toml); operator/tests/versions.rs fails when it drifts.
ARG VERSION=0.1.0
ARG REVISION=unknown

FROM docker.io/library/rust:1-bookworm AS build
ARG REVISION
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    VOLLEY_REVISION="${REVISION}" cargo build --release --locked \
        -p volley-gateway --bin volley-gateway \
        -p volley-operator --bin volley-operator \
 && mkdir -p /out \
 && cp target/release/volley-gateway target/release/volley-operator /out/

# distroless cc: glibc, libgcc, CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS gateway
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.source="https://github.com/volley-dev/volley" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="volley-gateway" \
      org.opencontainers.image.description="Volley gateway: clustered WebSocket push" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/volley-gateway /usr/local/bin/volley-gateway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/volley-gateway"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.source="https://github.com/volley-dev/volley" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="volley-operator" \
      org.opencontainers.image.description="Volley operator: runs PushCluster gateways" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/volley-operator /usr/local/bin/volley-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/volley-operator"]
