#!/usr/bin/env bash
# Issue 25: configs/cnn.yaml for seeds 1..N on both sides, in alternating rounds (regtrain seed k,
# then the independent PyTorch run of test/bench/torch_cnn_seeds.py for seed k), so the machine's
# load falls on both alike. Results: OUT/regtrain-<k>/ (run directories) and OUT/torch-<k>.jsonl.
# Usage: test/bench/cnn-seeds.sh OUT [SEEDS=8]; then: node dist/test/bench/cnn-seeds.js OUT
set -euo pipefail
out=${1:?usage: cnn-seeds.sh OUT [SEEDS]}
seeds=${2:-8}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
for k in $(seq 1 "$seeds"); do
  if [ ! -f "$out/regtrain-$k/metrics.json" ]; then
    rm -rf "$out/regtrain-$k"
    node "$root/bin/regtrain" run "$root/configs/cnn.yaml" --set "seed=$k" --out "$out/regtrain-$k" -q
  fi
  if ! grep -q test_accuracy "$out/torch-$k.jsonl" 2>/dev/null; then
    /usr/bin/python3 "$root/test/bench/torch_cnn_seeds.py" --seed "$k" >"$out/torch-$k.jsonl.tmp"
    mv "$out/torch-$k.jsonl.tmp" "$out/torch-$k.jsonl"
  fi
done
