# syntax=docker/dockerfile:1
#
# The lattice-operator image: one static (musl) binary on distroless `static`, running as the
# non-root user 65532. Build from the repository root:
#
#   docker build -t ghcr.io/lattice-operator/lattice-operator:0.1.0 .
#
# The build stage compiles for the architecture it runs on, so `docker buildx build --platform
# linux/amd64,linux/arm64 …` yields a multi-arch image (arm64 under emulation is slow but needs
# no cross toolchain). The binary is built without the `dev` feature: no embedded API server
# simulator or AgentLattice emulator in the production image.

ARG RUST_VERSION=1.89

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# ring (TLS) compiles C for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_LTO=thin \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$target" \
 && cargo build --release --locked --no-default-features \
      --package lattice-operator --bin lattice-operator --target "$target" \
 && cp "target/$target/release/lattice-operator" /lattice-operator \
 && /lattice-operator --version

# distroless/static: no shell, no package manager; CA certificates and /etc/passwd with `nonroot`.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="lattice-operator" \
      org.opencontainers.image.description="Kubernetes operator that gives every workload a governed AgentLattice identity" \
      org.opencontainers.image.source="https://github.com/lattice-operator/lattice-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /lattice-operator /usr/local/bin/lattice-operator
# The CRD, for `docker run --rm <image> crd | kubectl apply -f -` (also `lattice-operator crd`).
COPY crds/ /crds/
USER 65532:65532
# The admin server: /metrics, /healthz, /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lattice-operator"]
CMD ["run"]
