#!/usr/bin/env bash
# Rows of the protocol table on full MNIST: a method with IRM's published hyperparameters
# (the irm_paper preset; Fishr's protocol, alexrame/fishr@7b8fdf1), per-seed draws, fp32.
# The environments are those of ../mnist_full_per_seed (make-envs from the original idx files).
# The IRM row is the irm_paper run of ../mnist_full_per_seed (the same configuration).
# Run from the repository root: bash reports/measured/mnist_full_protocol/run.sh [row ...]
# (no row: all of them). Each row's commit and CPU are in its JSON (runtime.git, runtime.cpu);
# commit.txt lists the commit each finished row was started at.
set -euo pipefail
out=reports/measured/mnist_full_protocol
test -f data/cli/colored_mnist/manifest.json || .venv/bin/python -m pipeline make-envs \
    --dataset colored_mnist --source ../shared/data/mnist --out data/cli/colored_mnist
row() {  # name, then train's options
  local name=$1; shift
  local commit; commit=$(git rev-parse HEAD)
  /usr/bin/time -v .venv/bin/python -m pipeline train --dataset colored_mnist --envs-dir data/cli \
      --preset irm_paper --seeds 0:3 --set dtype=fp32 "$@" --out "$out/$name.json" \
      > "$out/$name.log" 2>&1
  # after success only, one line per row (a rerun replaces its line)
  { grep -v "^$name " "$out/commit.txt" 2>/dev/null || true; echo "$name $commit"; } \
      > "$out/commit.txt.new" && mv "$out/commit.txt.new" "$out/commit.txt"
}
run_row() {
  case $1 in
    vrex) row vrex --method vrex --set vrex_penalty=squared_difference ;;  # Fishr's (L1 - L2)^2
    fishr) row fishr --method fishr ;;
    erm) row erm --method erm ;;
    andmask) row andmask --method andmask ;;
    groupdro) row groupdro --method groupdro ;;
    ibirm) row ibirm --method ibirm --set ib_weight=100.0 ;;
    coral) row coral --method coral ;;
    *) echo "unknown row '$1' (rows: vrex fishr erm andmask groupdro ibirm coral)" >&2; exit 2 ;;
  esac
}
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(vrex fishr erm andmask groupdro ibirm coral)
for r in "${rows[@]}"; do run_row "$r"; done
