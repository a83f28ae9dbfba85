"""Overhead of a search: how much of the machine Ray Tune + Optuna leave to the trials.

Runs a real search (local Ray, Optuna's random sampler) of ``--trials`` trials, each sized to
about ``--trial-seconds`` of training, ``--concurrent`` at a time with one CPU each, and prints

    overhead = 1 - (sum of trial compute) / (search wall time x concurrent slots)

twice: with Ray's start-up in the wall time and without it (``Tuner.fit()`` only). Trial
compute is the trainer's own loop time (``runtime.wall_s`` of each trial), so everything else
(Ray scheduling, actor start-up, data loading, reports, Optuna, the done records) counts as
overhead. The baseline, zero overhead, is the trials back to back on ``--concurrent`` cores.

    python benchmarks/bench_search.py                  # 16 trials x ~15 s, 2 at a time
    python benchmarks/bench_search.py --trials 4 --trial-seconds 3   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import make_config  # noqa: E402
from pipeline.environments import load_envs, make_envs  # noqa: E402
from pipeline.environments.store import save_envset  # noqa: E402
from pipeline.search.runner import SearchSpec, run_search  # noqa: E402
from pipeline.training import train  # noqa: E402

SPACE = {"irm": {"lr": {"log_uniform": [3e-4, 3e-3]},
                 "penalty_weight": {"log_uniform": [1e2, 1e4]}}}


def build_envs(root: Path, examples: int) -> Path:
    """Colored Fashion-MNIST (real data), the first ``examples`` of each environment."""
    full = load_envs(make_envs("colored_fashion_mnist", seed=0, out_dir=root / "full"))
    envs_dir = root / "envs"
    manifest = {**full.manifest, "reduced": True, "head": examples}
    save_envset(full.head(examples).envs, manifest, envs_dir / "colored_fashion_mnist")
    return envs_dir


def steps_for(seconds: float, fixed: dict, envs_dir: Path, seeds: list[int]) -> int:
    """Steps that take about ``seconds`` on one thread, from a timed 40-step run."""
    torch.set_num_threads(1)
    cfg = make_config(None, **fixed, steps=40, dataset="colored_fashion_mnist",
                      envs_dir=str(envs_dir))
    envs = load_envs(envs_dir / "colored_fashion_mnist")
    train(cfg, seeds, envset=envs)  # warm-up
    wall = train(cfg, seeds, envset=envs).runtime["wall_s"]
    return max(50, round(seconds / (wall / 40)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--trial-seconds", type=float, default=15.0)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--examples", type=int, default=2000, help="per environment")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per trial")
    parser.add_argument("--out", type=Path, default=None, help="keep the search here")
    args = parser.parse_args()

    seeds = list(range(args.seeds))
    fixed = {"method": "irm", "hidden_dim": 128, "anneal_iters": 20, "holdout_fraction": 0.2}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        envs_dir = build_envs(root, args.examples)
        steps = steps_for(args.trial_seconds, fixed, envs_dir, seeds)
        print(f"{args.trials} trials x {steps} steps (~{args.trial_seconds:.0f} s each), "
              f"{args.seeds} seeds per trial, {args.concurrent} at a time, 1 CPU each",
              flush=True)
        out = args.out or root / "search"
        spec = SearchSpec(dataset="colored_fashion_mnist", method="irm", spaces=SPACE,
                          out=str(out), envs_dir=str(envs_dir), sampler="random",
                          trials=args.trials, seeds=seeds, search_seed=0,
                          fixed={k: v for k, v in fixed.items() if k != "method"} |
                          {"steps": steps},
                          cpus_per_trial=1, max_concurrent=args.concurrent)
        outcome = run_search(spec)
        records = [json.loads(p.read_text()) for p in (out / "trials").glob("*.json")]

    compute = sum(r["result"]["runtime"]["wall_s"] for r in records)
    trial_wall = sum(r["trial_s"] for r in records)
    timing, slots = outcome.timing, args.concurrent
    print(f"\ntrials finished: {len(records)} of {args.trials}")
    print(f"sum of trial compute (trainer loops): {compute:8.1f} s")
    print(f"sum of trial wall (incl. data, model): {trial_wall:7.1f} s")
    print(f"Ray start-up:                         {timing['connect_s']:8.1f} s")
    print(f"Tuner.fit():                          {timing['fit_s']:8.1f} s")
    print(f"baseline (compute / {slots} slots, no overhead): {compute / slots:8.1f} s")
    for name, wall in (("with Ray start-up", timing["connect_s"] + timing["fit_s"]),
                       ("without Ray start-up", timing["fit_s"])):
        overhead = 1 - compute / (wall * slots)
        print(f"overhead {name:<22} {100 * overhead:5.1f}%  (target <= 10%; search wall / "
              f"baseline = {wall / (compute / slots):.3f}x)")


if __name__ == "__main__":
    main()
