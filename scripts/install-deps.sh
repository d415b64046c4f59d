#!/usr/bin/env bash
# Installs the Debian packages engram needs to build, test and run, if any are missing.
# Uses sudo when not root. Safe to run again: it does nothing when all are present.
set -euo pipefail

packages=(
  build-essential pkg-config clang libclang-dev     # C parts of crates (bundled SQLite, bindings)
  tesseract-ocr tesseract-ocr-eng libtesseract-dev libleptonica-dev   # OCR
  tesseract-ocr-osd                                 # orientation detection (sideways scans)
  poppler-utils                                     # pdftotext, pdftoppm
  postgresql                                        # the scale-out store, and its tests
  xz-utils                                          # unpacks the test Qdrant server (scripts/qdrant.sh)
  ca-certificates
  time                                              # GNU time, for benches/ingest.rs
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
