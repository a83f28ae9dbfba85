#!/usr/bin/env bash
# Seeds 5..9 of the ERM and IRM presets on full MNIST (per-seed draws, fp32), to pool with
# the seeds 0..4 of run.sh into the published 10 restarts. Per-seed draws make member s of a
# batch equal seed s run alone (tests/test_data_draw.py), so two runs over disjoint seeds are
# one 10-seed run up to rounding; `python -m pipeline summarize --pool` checks that the configs
# and data agree and pools them.
# Run from the repository root: bash reports/measured/mnist_full_per_seed/run_seeds_5_9.sh [preset ...]
# (default: erm_paper irm_paper)
set -euo pipefail
out=reports/measured/mnist_full_per_seed
test -f data/cli/colored_mnist/manifest.json || .venv/bin/python -m pipeline make-envs \
    --dataset colored_mnist --source ../shared/data/mnist --out data/cli/colored_mnist
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(erm_paper irm_paper)
for preset in "${presets[@]}"; do
  /usr/bin/time -v .venv/bin/python -m pipeline train --dataset colored_mnist \
      --envs-dir data/cli --preset "$preset" --seeds 5:10 --set dtype=fp32 \
      --out "$out/${preset}_seeds5-9.json" > "$out/${preset}_seeds5-9.log" 2>&1
done
