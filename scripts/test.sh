#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with only the Rust toolchain: installs what
# is missing, starts a private PostgreSQL and a private Qdrant on 127.0.0.1 (unless
# ENGRAM_TEST_POSTGRES_URL / ENGRAM_TEST_QDRANT_URL name them), fetches the local embedding
# model (scripts/model.sh, unless ENGRAM_TEST_MODEL_DIR names one), then runs formatting, lints
# and every test against SQLite, PostgreSQL and Qdrant.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ -z "${ENGRAM_TEST_POSTGRES_URL:-}" ]; then
  ENGRAM_TEST_POSTGRES_URL=$(scripts/postgres.sh)
  export ENGRAM_TEST_POSTGRES_URL
fi
echo "test.sh: PostgreSQL at ${ENGRAM_TEST_POSTGRES_URL%%@*}@…"
if [ -z "${ENGRAM_TEST_QDRANT_URL:-}" ]; then
  ENGRAM_TEST_QDRANT_URL=$(scripts/qdrant.sh)
  export ENGRAM_TEST_QDRANT_URL
fi
echo "test.sh: Qdrant at $ENGRAM_TEST_QDRANT_URL"
if [ -z "${ENGRAM_TEST_MODEL_DIR:-}" ]; then
  ENGRAM_TEST_MODEL_DIR=$(scripts/model.sh)
  export ENGRAM_TEST_MODEL_DIR
fi
echo "test.sh: local embedding model at $ENGRAM_TEST_MODEL_DIR"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked -- --color never 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
