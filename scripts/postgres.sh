#!/usr/bin/env bash
# Starts a private PostgreSQL for tests and benchmarks on 127.0.0.1 (port ENGRAM_PG_PORT,
# default 55432), unless one is already answering there, and prints its URL on stdout.
# The cluster lives in ENGRAM_PG_DIR (default: ~/.cache/engram-pg, or
# /var/lib/postgresql/engram-test when run as root, since PostgreSQL refuses to run as root).
# `scripts/postgres.sh stop` stops it.
set -euo pipefail

port=${ENGRAM_PG_PORT:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "postgres.sh: PostgreSQL is not installed (scripts/install-deps.sh)" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  dir=${ENGRAM_PG_DIR:-/var/lib/postgresql/engram-test}
  as_owner=(runuser -u postgres --)
else
  dir=${ENGRAM_PG_DIR:-$HOME/.cache/engram-pg}
  as_owner=()
fi
url="postgres://postgres@127.0.0.1:${port}/postgres"

if [ "${1:-start}" = "stop" ]; then
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir" -m fast stop >&2 || true
  exit 0
fi

if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  echo "$url"
  exit 0
fi

if [ ! -f "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  "${as_owner[@]}" "$bindir/initdb" -D "$dir" -U postgres --auth=trust --no-locale -E UTF8 >&2
fi
"${as_owner[@]}" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c max_connections=200" \
  start >&2
echo "$url"
