#!/usr/bin/env bash
# The IRM paper's presets on Colored Fashion-MNIST (Debian's dataset-fashion-mnist, the full
# 60,000 + 10,000 images), fp32, data_draw = per_seed (each seed its own draw of the
# environments, so the ± includes the data draw, as a restart of IRM's main.py).
# Run from the repository root: bash reports/measured/cfmnist_per_seed/run.sh [preset:seeds ...]
# (default: irm_paper:3 erm_paper:3, what ran here). Each result's commit and CPU are in its JSON
# (runtime.git, runtime.cpu).
set -euo pipefail
out=reports/measured/cfmnist_per_seed
mkdir -p "$out"
lscpu > "$out/lscpu.log"
test -f data/cli/colored_fashion_mnist/manifest.json || .venv/bin/python -m pipeline make-envs \
    --dataset colored_fashion_mnist --out data/cli/colored_fashion_mnist > "$out/make_envs.log" 2>&1
run() {  # preset, seeds
  /usr/bin/time -v .venv/bin/python -m pipeline train --dataset colored_fashion_mnist \
      --envs-dir data/cli --preset "$1" --seeds "$2" --set dtype=fp32 \
      --out "$out/$1.json" > "$out/$1.log" 2>&1
}
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(irm_paper:3 erm_paper:3)
for j in "${jobs[@]}"; do run "${j%%:*}" "${j#*:}"; done
