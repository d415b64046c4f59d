#!/usr/bin/env bash
# Builds engram's container images from the project's Dockerfile with Podman, reports their
# sizes, and runs the scaled-out deployment in containers through one journey
# (benches/containers.rs). For machines with no Docker engine and no image registry:
#
#   scripts/images.sh          # build everything, then run the journey and measure
#   scripts/images.sh build    # only build the images (and report their sizes)
#   scripts/images.sh run      # only the journey (cargo bench --bench containers)
#
# What it does, in order:
# 1. Installs what is missing: engram's build dependencies (scripts/install-deps.sh), and
#    podman, runc, catatonit (podman's --init) and debootstrap from Debian.
# 2. Podman settings for these machines in $cache/containers.conf (CONTAINERS_CONF): the runc
#    runtime, and no default ulimits (the kernel refuses to set RLIMIT_NPROC here).
# 3. A stand-in for debian:bookworm-slim, made once and cached: `debootstrap --variant=minbase
#    bookworm`, trimmed the way the official slim image is (dpkg excludes docs, man pages and
#    translations; apt keeps no caches or lists), imported with `podman import`.
# 4. engram's release build on this host (`cargo build --release --locked --workspace`).
# 5. The Dockerfile's `gateway`, `chat`, `ingest` and `all` targets, with the stand-in as
#    DEBIAN_IMAGE and BINARIES=prebuilt: the binaries of step 4 instead of the `build` stage,
#    whose rust:1-bookworm image cannot be pulled here. Every other step of the Dockerfile
#    runs as written (apt-get installs from Debian over the host's network).
# 6. Stand-ins for the two images docker-compose.yml pulls: PostgreSQL 15 from Debian's
#    packages and the Qdrant server from ../shared/tools/qdrant, each on the same base.
# 7. Sizes (`podman image inspect`); then, unless `build`, the journey: cargo bench --bench containers.
#
# Runs as root. Everything runs with host networking on 127.0.0.1. Images are kept (rebuilding
# is cheap: the layers are cached); `podman rmi` removes them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${ENGRAM_IMAGES_CACHE:-$HOME/.cache/engram-images}
target_dir=${CARGO_TARGET_DIR:-$root/target}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_image=localhost/engram-standin/debian:bookworm-slim
postgres_image=localhost/engram-standin/postgres:15
qdrant_image=localhost/engram-standin/qdrant:v1.17.1
qdrant_dir=${ENGRAM_QDRANT_DIR:-$root/../shared/tools/qdrant}
mode=${1:-all}
case "$mode" in all | build | run) ;; *) echo "usage: $0 [all|build|run]" >&2; exit 2 ;; esac

say() { echo "images: $*" >&2; }

# debootstrap and rootful Podman (host networking, overlay storage) need root.
[ "$(id -u)" -eq 0 ] || { say "run as root: debootstrap and Podman's rootful mode need it"; exit 1; }

install_packages() {
  "$root/scripts/install-deps.sh" >&2
  local missing=() package
  for package in podman runc catatonit debootstrap xz-utils; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

podman_settings() {
  mkdir -p "$cache"
  cat >"$cache/containers.conf" <<'EOF'
# engram's scripts/images.sh: Podman settings for machines that refuse RLIMIT_NPROC.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF=$cache/containers.conf
}

pm() { podman --runtime runc "$@"; }

image_exists() { pm image exists "$1"; }

# The stand-in for debian:bookworm-slim: minbase (Priority: required, plus apt), then what the
# official image's build (debuerreotype) does to make the slim variant.
make_base() {
  if image_exists "$base_image"; then
    say "base: $base_image (cached)"
    return
  fi
  local rootfs=$cache/rootfs
  rm -rf "$rootfs"
  say "base: debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }

  # The slim variant: documentation, man pages, info pages and translations are deleted and
  # dpkg is told to leave them out of every later install (copyright files stay).
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# The "slim" variant of the Debian base image: files normally unnecessary in containers are
# excluded, and this configuration keeps them that way.
path-exclude /usr/share/doc/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-include /usr/share/doc/*/copyright
path-include /usr/share/locale/locale.alias
EOF
  local dir
  for dir in doc groff info linda lintian/overrides locale man; do
    [ -d "$rootfs/usr/share/$dir" ] || continue
    find "$rootfs/usr/share/$dir" -depth -mindepth 1 \
      -not \( -path '*/usr/share/doc/*/copyright' -o -path '*/usr/share/locale/locale.alias' \) \
      -not \( -type d -o -type l \) -delete
    find "$rootfs/usr/share/$dir" -depth -mindepth 1 \( -empty -o -xtype l \) -delete
  done
  # apt as in the official image: no package caches, compressed lists, no translations; no
  # services started by package installs.
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  echo 'force-unsafe-io' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$mirror" "$mirror" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.cache
  : >"$rootfs/etc/machine-id"

  say "base: importing as $base_image"
  tar -C "$rootfs" --numeric-owner -c . \
    | pm import --quiet --change 'CMD ["bash"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
}

# engram's release binaries, for the build context's prebuilt/ folder. A benchmark build
# (`cargo bench`) leaves its own engram in target/release/ (compiled with the dev-dependencies'
# features), and cargo does not put the release one back while it is up to date, unless the
# file is missing: so remove it first.
release_build() {
  say "cargo build --release --locked --workspace (target: $target_dir)"
  rm -f "$target_dir/release/engram" "$target_dir/release/engram-extract"
  (cd "$root" && CARGO_TARGET_DIR=$target_dir cargo build --release --locked --workspace)
}

engram_images() {
  local context=$cache/context
  rm -rf "$context"
  mkdir -p "$context/prebuilt"
  cp "$root/Dockerfile" "$root/.dockerignore" "$context/"
  cp -r "$root/config" "$context/config"
  cp "$target_dir/release/engram" "$target_dir/release/engram-extract" "$context/prebuilt/"
  local target
  for target in gateway chat ingest all; do
    say "building engram:$target from the Dockerfile"
    pm build --pull=never --network host --layers \
      --build-arg DEBIAN_IMAGE="$base_image" --build-arg BINARIES=prebuilt \
      --target "$target" -t "localhost/engram:$target" -f "$context/Dockerfile" "$context" \
      >"$cache/build-$target.log" 2>&1 || { tail -n 30 "$cache/build-$target.log" >&2; exit 1; }
  done
}

# PostgreSQL 15 from Debian, taking the official postgres image's POSTGRES_USER, POSTGRES_DB
# and POSTGRES_PASSWORD (and PGPORT) so docker-compose.yml's settings work unchanged.
postgres_image() {
  local context=$cache/postgres
  rm -rf "$context" && mkdir -p "$context"
  cat >"$context/entrypoint.sh" <<'EOF'
#!/bin/bash
# Initialises the cluster on first start (password auth over TCP), then runs PostgreSQL.
set -euo pipefail
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
bin=/usr/lib/postgresql/15/bin
install -d -o postgres -g postgres -m 0700 "$PGDATA"
install -d -o postgres -g postgres /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "$POSTGRES_PASSWORD" >/run/postgresql/pw && chown postgres /run/postgresql/pw
  runuser -u postgres -- "$bin/initdb" -D "$PGDATA" -U "$user" --pwfile=/run/postgresql/pw \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale >/dev/null
  rm /run/postgresql/pw
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$database" != postgres ]; then
    echo "CREATE DATABASE \"$database\" OWNER \"$user\"" \
      | runuser -u postgres -- "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
  fi
fi
# setpriv executes PostgreSQL in place (runuser would stay as its parent and keep the stop
# signal from it).
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$PGDATA" \
  -c listen_addresses="${POSTGRES_LISTEN:-*}" -c port="${PGPORT:-5432}" "$@"
EOF
  cat >"$context/Containerfile" <<'EOF'
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
EOF
  chmod 0755 "$context/entrypoint.sh"
  say "building $postgres_image (PostgreSQL 15 from Debian)"
  pm build --pull=never --network host --layers --build-arg DEBIAN_IMAGE="$base_image" \
    -t "$postgres_image" "$context" >"$cache/build-postgres.log" 2>&1 \
    || { tail -n 30 "$cache/build-postgres.log" >&2; exit 1; }
}

# The Qdrant server binary of ../shared/tools/qdrant (v1.17.1, built from Qdrant's sources),
# laid out like the official image: /qdrant/storage, REST 6333 and gRPC 6334 unless set.
qdrant_image() {
  [ -f "$qdrant_dir/qdrant.xz" ] || { say "no Qdrant server at $qdrant_dir (set ENGRAM_QDRANT_DIR)"; exit 1; }
  local context=$cache/qdrant
  rm -rf "$context" && mkdir -p "$context"
  xz -dc "$qdrant_dir/qdrant.xz" >"$context/qdrant"
  echo "$(cat "$qdrant_dir/qdrant.sha256")  $context/qdrant" | sha256sum -c --quiet
  chmod 0755 "$context/qdrant"
  cat >"$context/Containerfile" <<'EOF'
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# Qdrant's HTTP client will not start without the system's CA certificates.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY qdrant /qdrant/qdrant
WORKDIR /qdrant
ENV QDRANT__STORAGE__STORAGE_PATH=/qdrant/storage QDRANT__STORAGE__SNAPSHOTS_PATH=/qdrant/snapshots \
    QDRANT__TELEMETRY_DISABLED=true
ENTRYPOINT ["/qdrant/qdrant"]
EOF
  say "building $qdrant_image (Qdrant v1.17.1)"
  pm build --pull=never --network host --layers --build-arg DEBIAN_IMAGE="$base_image" \
    -t "$qdrant_image" "$context" >"$cache/build-qdrant.log" 2>&1 \
    || { tail -n 30 "$cache/build-qdrant.log" >&2; exit 1; }
}

report_sizes() {
  local image base
  base=$(pm image inspect --format '{{.Size}}' "$base_image")
  printf '%-50s %10s %14s\n' image "size (MB)" "over base (MB)"
  for image in "$base_image" localhost/engram:gateway localhost/engram:chat \
    localhost/engram:ingest localhost/engram:all "$postgres_image" "$qdrant_image"; do
    local size
    size=$(pm image inspect --format '{{.Size}}' "$image")
    awk -v i="$image" -v s="$size" -v b="$base" \
      'BEGIN { printf "%-50s %10.1f %14.1f\n", i, s / 1e6, (s - b) / 1e6 }'
  done
}

install_packages
podman_settings
if [ "$mode" != run ]; then
  make_base
  release_build
  engram_images
  postgres_image
  qdrant_image
  report_sizes
fi
if [ "$mode" != build ]; then
  say "the journey: cargo bench --bench containers"
  cd "$root"
  CARGO_TARGET_DIR=$target_dir ENGRAM_IMAGES_CACHE=$cache cargo bench --bench containers
fi
