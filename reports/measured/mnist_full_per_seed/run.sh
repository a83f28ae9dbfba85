#!/usr/bin/env bash
# The IRM paper's presets on full MNIST (the original idx files), fp32, data_draw = per_seed
# (each seed its own draw, as every restart of IRM's main.py draws one).
# Run from the repository root: bash reports/measured/mnist_full_per_seed/run.sh
set -euo pipefail
out=reports/measured/mnist_full_per_seed
mkdir -p "$out"
lscpu > "$out/lscpu.log"
git rev-parse HEAD > "$out/commit.txt"
.venv/bin/python -m pipeline make-envs --dataset colored_mnist --source ../shared/data/mnist \
    --out data/cli/colored_mnist > "$out/make_envs.log" 2>&1
run() {  # preset, seeds
  /usr/bin/time -v .venv/bin/python -m pipeline train --dataset colored_mnist \
      --envs-dir data/cli --preset "$1" --seeds "$2" --set dtype=fp32 \
      --out "$out/$1.json" > "$out/$1.log" 2>&1
}
run gray_paper 10
run erm_paper 5
run irm_paper 5
