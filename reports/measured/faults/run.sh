#!/usr/bin/env bash
# Mid-trial checkpoints on full MNIST (docs/faults.md): what one costs at the paper's size, and
# a trial killed mid-run that resumes from its checkpoint with the numbers of a run never
# interrupted, bit for bit.
# Run from the repository root: bash reports/measured/faults/run.sh
set -euo pipefail
out=reports/measured/faults
py=.venv/bin/python
test -f data/cli/colored_mnist/manifest.json || $py -m pipeline make-envs \
    --dataset colored_mnist --source ../shared/data/mnist --out data/cli/colored_mnist
{ lscpu; $py -c "import torch; print('torch CPU capability', torch.backends.cpu.get_cpu_capability())"; } > $out/lscpu.log
git rev-parse HEAD > $out/commit.txt

# 1. the cost of one checkpoint: irm_paper, the paper's 10 restarts as one model, fp32
#    (skipped when its result is there; RERUN_COST=1 redoes it)
if [ ! -f $out/checkpoint_cost.json ] || [ -n "${RERUN_COST:-}" ]; then
  $py benchmarks/bench_checkpoint.py --envs data/cli/colored_mnist --seeds 10 --steps 5 \
      --repeats 5 --every 100 --out $out/checkpoint_cost.json > $out/checkpoint_cost.log 2>&1
fi

# 2. a search of one trial (irm_paper's values, shortened to 151 steps with the anneal at
#    100; one seed), checkpointed every 25 steps; its trial process is SIGKILLed once a
#    checkpoint of step >= 75 is saved; Tune retries it from that checkpoint (the penalty
#    weight jumps at step 100, after the resume); then `rerun` trains the same trial in one go
#    and compares every number
search=$(mktemp -d)/search
$py -m pipeline search --dataset colored_mnist --method irm --envs-dir data/cli \
    --sampler random --trials 1 --seeds 1 --selection irm_paper --checkpoint-every 25 \
    --set steps=151 --set hidden_dim=390 --set lr=0.0004898536566546834 \
    --set l2_weight=0.00110794568 --set penalty_weight=91257.18613 --set anneal_iters=100 \
    --set dtype=fp32 --out "$search" > $out/resume_search.log 2>&1 &
driver=$!
checkpointed() {  # the step of the trial's latest checkpoint (0: none yet)
  $py -c "import glob,json,sys; print(max([json.load(open(p))['next_step'] for p in
glob.glob(sys.argv[1] + '/ray/*/*/checkpoint_*/step.json')] or [0]))" "$search"
}
until [ "$(checkpointed)" -ge 75 ]; do
  kill -0 $driver  # the search must still run
  sleep 1
done
pid=$($py -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['pid'])" \
      "$search/trials/executions.jsonl")
echo "$(date -u +%FT%TZ) SIGKILL to the trial process $pid (checkpoint of step $(checkpointed) saved)" \
    | tee $out/kill.log
kill -9 "$pid"
wait $driver
cp "$search/trials/executions.jsonl" $out/executions.jsonl
key=$($py -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['key'])" \
      "$out/executions.jsonl")
cp "$search/trials/$key.json" $out/resumed_trial.json
$py -m pipeline rerun --trial "$key" --search "$search" > $out/resume_rerun.log 2>&1
tail -1 $out/resume_rerun.log
