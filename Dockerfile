# Hermes: a static-ish release binary on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# adapters/build.rs builds the provider plugins for this target.
RUN rustup target add wasm32-unknown-unknown
RUN cargo build --release --locked --bin hermes

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 hermes \
 && useradd --system --uid 10001 --gid hermes --no-create-home --shell /usr/sbin/nologin hermes
COPY --from=build /src/target/release/hermes /usr/local/bin/hermes
# Not root; Hermes writes nothing to its filesystem, so it may be mounted read-only (infra/k8s).
USER 10001:10001
ENV HERMES_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["hermes"]
CMD ["serve"]
