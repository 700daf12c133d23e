# The Federator image: the `federator` binary and nothing else, run as a non-root user.
#
#   docker build -t federator:0.1.0 .          # or: podman build -t federator:0.1.0 .
#
# Stage 1 builds the release binary; stage 2 is distroless "cc" (glibc and libgcc, CA
# certificates, no shell, no package manager), user 65532. The lab builds the same layout from
# Debian packages without a registry: hack/build-federator-image.sh (docs/install.md).

# The toolchain the project is tested with (rustc 1.95); rust-version in Cargo.toml is the floor.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image is built from exactly the dependency versions in Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p federator --bin federator \
 && install -D -m 0755 target/release/federator /out/federator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="federator" \
      org.opencontainers.image.description="Hub controller and CLI that run CloudNativePG as one distributed database across Kubernetes clusters" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/federator-dev/federator"
COPY --from=build /out/federator /usr/local/bin/federator
USER 65532:65532
# Probes and metrics (docs/install.md): /healthz, /readyz, /metrics.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/federator"]
CMD ["controller"]
