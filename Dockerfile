# syntax=docker/dockerfile:1
#
# The `entraflow` image: one binary (gate, authority, admin CLI) on Debian
# bookworm-slim, running as an unprivileged user. Build from the repository root:
#
#     docker build -t entraflow:dev .
#
# Not built in CI: CI machines reach crates.io, PyPI, npm and Debian only, not a
# container registry, so neither base image can be pulled there. The manifests
# under deploy/ are rendered and schema-checked instead (deploy/validate.sh).

# Builder: the toolchain the workspace declares (rust-version in Cargo.toml), on
# the same Debian release as the runtime so the binary's glibc matches.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys (rustls' crypto) builds its C sources with cc, and falls back to
# CMake where cc alone cannot; rusqlite builds its bundled SQLite with cc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore keeps the context to Cargo.toml, Cargo.lock and crates/.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# --locked: the committed Cargo.lock, or fail. Only the CLI package: the PyO3
# module and the TensorFlow plugin are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p entraflow-cli --bin entraflow \
 && install -D -m 0755 target/release/entraflow /out/entraflow

# Runtime: the binary and the public CA bundle (the gate fetches Entra ID's
# JWKS and reaches Azure Storage over HTTPS). The base image's /bin/sh and
# coreutils stay: the pods' init step uses them to lay out the data directory.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 entraflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/entraflow \
      --no-create-home --shell /usr/sbin/nologin entraflow \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/entraflow
COPY --from=build /out/entraflow /usr/local/bin/entraflow
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENV ENTRAFLOW_DATA_DIR=/var/lib/entraflow/data
WORKDIR /var/lib/entraflow
ENTRYPOINT ["/usr/local/bin/entraflow"]
CMD ["--help"]
