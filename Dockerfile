# Hermes: a static-ish release binary on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# adapters/build.rs builds the provider plugins for this target.
RUN rustup target add wasm32-unknown-unknown
RUN cargo build --release --locked --bin hermes

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hermes /usr/local/bin/hermes
ENV HERMES_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["hermes"]
CMD ["serve"]
