# syntax=docker/dockerfile:1.7
# azureml-attach operator image.
#
#   docker build -t ghcr.io/azureml-attach/azureml-attach:0.1.0 .
#
# Stage 1 builds a release binary with cargo's registry and target directories in BuildKit cache
# mounts (fast rebuilds, nothing of them in the image). Stage 2 is distroless: glibc, CA
# certificates, no shell, no package manager, user 65532. The binary writes nothing to disk, so the
# container runs with a read-only root filesystem.

ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS builder
WORKDIR /src
# The whole workspace is needed: Cargo.lock covers all members and `--locked` refuses to change it.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin azureml-attach \
 && install -D -m 0755 target/release/azureml-attach /out/azureml-attach \
 && /out/azureml-attach version

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="azureml-attach" \
      org.opencontainers.image.description="Kubernetes operator that attaches existing Azure compute to Azure Machine Learning workspaces" \
      org.opencontainers.image.source="https://github.com/azureml-attach/azureml-attach" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /out/azureml-attach /usr/local/bin/azureml-attach
# Numeric user so that `runAsNonRoot: true` can be verified by the kubelet without /etc/passwd.
USER 65532:65532
EXPOSE 8080
# `run` is part of the entrypoint: the pod's `args` are only flags (see the Helm chart).
# `docker run --entrypoint /usr/local/bin/azureml-attach IMAGE crds` reaches the other subcommands.
ENTRYPOINT ["/usr/local/bin/azureml-attach", "run"]
