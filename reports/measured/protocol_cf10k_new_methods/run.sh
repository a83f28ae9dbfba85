#!/usr/bin/env bash
# Protocol rows of the methods added for issue 16 on Colored Fashion-MNIST (the default
# profile's 10,000 training images, data seed 0): each method with IRM's published
# hyperparameters (the irm_paper preset: hidden 390, lr 4.9e-4, l2 1.1e-3, anneal 190,
# lambda 91257, 501 steps; Fishr's protocol, alexrame/fishr@7b8fdf1), seeds 0..2, fp32.
# ERM and IRM are run the same way last, as the reference on the same data and seeds.
# Run from the repository root: bash reports/measured/protocol_cf10k_new_methods/run.sh [row ...]
# (no row: all of them). Each row's commit and CPU are in its JSON (runtime.git, runtime.cpu);
# commit.txt lists the commit each finished row was started at.
set -euo pipefail
out=reports/measured/protocol_cf10k_new_methods
envs=data/cli10k
test -f $envs/colored_fashion_mnist/manifest.json || .venv/bin/python -m pipeline make-envs \
    --dataset colored_fashion_mnist --set n_train=10000 --out $envs/colored_fashion_mnist
row() {  # name, then train's options
  local name=$1; shift
  local commit; commit=$(git rev-parse HEAD)
  /usr/bin/time -v .venv/bin/python -m pipeline train --dataset colored_fashion_mnist \
      --envs-dir $envs --preset irm_paper --seeds 0:3 --set dtype=fp32 "$@" \
      --out "$out/$name.json" > "$out/$name.log" 2>&1
  # after success only, one line per row (a rerun replaces its line)
  { grep -v "^$name " "$out/commit.txt" 2>/dev/null || true; echo "$name $commit"; } \
      > "$out/commit.txt.new" && mv "$out/commit.txt.new" "$out/commit.txt"
}
ROWS=(rvp invrat irmgame moments perturbation mine perturbation_fgsm erm irm)
run_row() {
  case $1 in
    rvp|invrat|irmgame|mine|moments|perturbation|erm|irm) row "$1" --method "$1" ;;
    perturbation_fgsm) row "$1" --method perturbation --set perturb_kind=fgsm ;;
    *) echo "unknown row '$1' (rows: ${ROWS[*]})" >&2; exit 2 ;;
  esac
}
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=("${ROWS[@]}")
for r in "${rows[@]}"; do run_row "$r"; done
