#!/usr/bin/env bash
# The cost of one DomainBed ColoredMNIST run (facebookresearch/DomainBed@b93c22a: MNIST_CNN,
# batch 64 per domain, 5001 steps, a checkpoint every 100 steps evaluating every split) on this
# machine, from two short runs evaluated twice each (the first and the last step): 100 training
# steps (A) and 2 (B). A step costs (A - B) / 98; an evaluation of every split (B - 2 steps) / 2.
# Run from the repository root: bash reports/measured/domainbed_cost/run.sh
set -euo pipefail
out=reports/measured/domainbed_cost
lscpu > "$out/lscpu.log"
test -f data/cli/colored_mnist_domainbed/manifest.json || .venv/bin/python -m pipeline make-envs \
    --dataset colored_mnist_domainbed --source ../shared/data/mnist --out data/cli/colored_mnist_domainbed
common=(--dataset colored_mnist_domainbed --envs-dir data/cli --model domainbed_cnn --method irm
        --seeds 1 --set dtype=fp32 --set batch_size=64 --set holdout_fraction=0.2
        --set jump_rule=reset_adam --set lr=0.001 --set l2_weight=0 --set penalty_weight=100
        --set anneal_iters=500 --set eval_every=100)
for k in "A 100" "B 2"; do
  set -- $k
  /usr/bin/time -v .venv/bin/python -m pipeline train "${common[@]}" --set steps=$2 \
      --out "$out/run_$1.json" > "$out/run_$1.log" 2>&1
done
.venv/bin/python - <<'PY' | tee "$out/cost.txt"
import json
a, b = (json.load(open(f"reports/measured/domainbed_cost/run_{x}.json"))["runtime"] for x in "AB")
step_s = (a["wall_s"] - b["wall_s"]) / 98   # both evaluate at their first and last step
eval_s = (b["wall_s"] - 2 * step_s) / 2
run_s = 5001 * step_s + 51 * eval_s
print(f"cpu {a['cpu']} ({a['cpu_capability']}), {a['threads']} threads, fp32, one seed")
print(f"training step (batch 64 x 2 domains): {step_s * 1e3:.0f} ms")
print(f"evaluation of every split: {eval_s:.1f} s")
print(f"one DomainBed run (5001 steps, 51 checkpoints): {run_s / 3600:.2f} h")
print(f"ERM + IRM sweep (2 x 20 hparams x 3 trials): {120 * run_s / 3600:.0f} h")
PY
