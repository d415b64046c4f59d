#!/usr/bin/env bash
# Starts a private Qdrant server (v1.17.1, from ../shared/tools/qdrant beside the repository) for
# tests and benchmarks on 127.0.0.1 (gRPC port ENGRAM_QDRANT_PORT, default 56334; REST on the
# port below it), unless one is already answering there, and prints its gRPC URL on stdout
# (what index.qdrant_url and ENGRAM_TEST_QDRANT_URL name). Its storage, log and PID live in
# ENGRAM_QDRANT_DIR (default ~/.cache/engram-qdrant-server). `scripts/qdrant.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

grpc=${ENGRAM_QDRANT_PORT:-56334}
http=$((grpc - 1))
dir=${ENGRAM_QDRANT_DIR:-$HOME/.cache/engram-qdrant-server}
tools=${ENGRAM_QDRANT_TOOLS:-../shared/tools/qdrant}
url="http://127.0.0.1:${grpc}"

ready() {
  # The gRPC port accepts (Qdrant opens it after REST), and REST's /readyz answers 200 once
  # every shard is loaded. (bash's /dev/tcp: no curl needed.)
  { exec 3<>"/dev/tcp/127.0.0.1/$grpc"; } 2>/dev/null || return 1
  exec 3<&- 3>&-
  { exec 3<>"/dev/tcp/127.0.0.1/$http"; } 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  local status
  IFS= read -r -t 2 status <&3 || status=""
  exec 3<&- 3>&-
  [[ $status == *" 200 "* ]]
}

if [ "${1:-start}" = "stop" ]; then
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    kill -TERM "$(cat "$dir/pid")"
    for _ in $(seq 1 100); do
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$dir/pid"
  exit 0
fi

if ready; then
  echo "$url"
  exit 0
fi

[ -x "$tools/run.sh" ] || {
  echo "qdrant.sh: no Qdrant server at $tools/run.sh (the shared tools folder beside the repository)" >&2
  exit 1
}
mkdir -p "$dir"
# Its own session, so the server outlives this script and the shell that ran it.
setsid "$tools/run.sh" "$http" "$grpc" "$dir" >"$dir/server.log" 2>&1 </dev/null &
echo $! >"$dir/pid"
# Unpacking the binary the first time takes a few seconds; starting, well under one.
for _ in $(seq 1 600); do
  if ready; then
    echo "$url"
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "qdrant.sh: Qdrant exited at start; its log ($dir/server.log) ends:" >&2
    tail -n 20 "$dir/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "qdrant.sh: Qdrant did not answer on 127.0.0.1:$http within 60 s; see $dir/server.log" >&2
exit 1
