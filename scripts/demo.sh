#!/usr/bin/env bash
# From a fresh Debian machine with only the Rust toolchain: installs what is missing, builds
# engram in release mode and runs `engram demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked --workspace
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
exec "$target_dir/release/engram" demo
