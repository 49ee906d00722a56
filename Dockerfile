# Builds a small image with the sluice binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml openapi.yaml ./
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --bin sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --create-home sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
USER sluice
WORKDIR /home/sluice
ENV SLUICE_LISTEN=0.0.0.0:8000 SLUICE_DATA_DIR=/home/sluice/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8000/v1/health/readiness || exit 1
ENTRYPOINT ["sluice"]
CMD ["serve"]
