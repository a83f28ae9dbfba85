#!/usr/bin/env bash
# Rows of the protocol table on full MNIST: a method with IRM's published hyperparameters
# (the irm_paper preset; Fishr's protocol, alexrame/fishr@7b8fdf1), per-seed draws, fp32.
# The environments are those of ../mnist_full_per_seed (make-envs from the original idx files).
# Run from the repository root: bash reports/measured/mnist_full_protocol/run.sh
set -euo pipefail
out=reports/measured/mnist_full_protocol
git rev-parse HEAD > "$out/commit.txt"
row() {  # name, then train's options
  local name=$1; shift
  /usr/bin/time -v .venv/bin/python -m pipeline train --dataset colored_mnist --envs-dir data/cli \
      --preset irm_paper --seeds 0:3 --set dtype=fp32 "$@" --out "$out/$name.json" \
      > "$out/$name.log" 2>&1
}
row vrex --method vrex --set vrex_penalty=squared_difference  # Fishr's script: (L1 - L2)^2
row fishr --method fishr
