# engram container images. Targets:
#   gateway  chat adapters + HTTP API        (no OCR libraries)
#   chat     the answer pool                 (no OCR libraries)
#   ingest   extraction and OCR              (the only image with engram-extract, tesseract, poppler)
#   all      every role in one process       (the default target; embedded SQLite)
# Build one with: docker build --target gateway -t engram:gateway .
# Migrations and the built-in defaults are embedded in the binary; config/ is copied so the
# deployed defaults can be read and edited.
#
# Build arguments (the defaults are the standard build):
#   RUST_IMAGE    the image the `build` stage compiles in
#   DEBIAN_IMAGE  the base of every runtime image
#   BINARIES      where engram and engram-extract come from: `build` compiles them in the
#                 `build` stage; `prebuilt` takes them from the build context's prebuilt/
#                 folder instead (a release build made on Debian 12 for the same architecture,
#                 e.g. `cargo build --release --locked --workspace`). scripts/images.sh uses
#                 `prebuilt` on machines where no Rust image can be pulled.
ARG RUST_IMAGE=rust:1-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
# tesseract and leptonica headers and libclang are for engram-extract only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev pkg-config \
      libtesseract-dev libleptonica-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY crates crates
COPY migrations migrations
COPY config config
COPY demo demo
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --workspace \
 && mkdir /out && cp target/release/engram target/release/engram-extract /out/

FROM scratch AS prebuilt
COPY prebuilt/engram prebuilt/engram-extract /out/

# Only the stage BINARIES names is built (BuildKit, Docker's default builder, and Buildah skip
# the stages a target does not need).
FROM ${BINARIES} AS binaries

FROM ${DEBIAN_IMAGE} AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/engram --create-home engram \
 && install -d -o engram -g engram /var/lib/engram/data
WORKDIR /var/lib/engram
COPY --from=binaries /out/engram /usr/local/bin/engram
COPY config config
ENV ENGRAM__HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
# Created above and owned by engram: a named volume mounted here starts with that owner, so
# the `all` image can write its SQLite store there.
VOLUME /var/lib/engram/data
USER engram
ENTRYPOINT ["engram"]

FROM base AS gateway
CMD ["serve", "--roles", "gateway,api"]

FROM base AS chat
CMD ["serve", "--roles", "chat"]

FROM base AS ingest-base
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd \
      poppler-utils \
 && rm -rf /var/lib/apt/lists/*
# The sandboxed extractor, found beside engram.
COPY --from=binaries /out/engram-extract /usr/local/bin/engram-extract
USER engram

FROM ingest-base AS ingest
CMD ["serve", "--roles", "ingest"]

FROM ingest-base AS all
CMD ["serve"]
