"""Overhead of a search: how much slower Ray Tune + Optuna run trials than a plain loop does.

Runs a real search (local Ray, Optuna's random sampler) of ``--trials`` trials, each sized to
about ``--trial-seconds`` of training, ``--concurrent`` at a time with one CPU (one torch
thread) each, ``--repeats`` times, each into a fresh output directory with the same search
seed, so every repeat samples the same trials. After each search, the **baseline** runs the
same trials again outside Ray: each configuration is rebuilt from its done record as
``pipeline.search.trial.rerun`` rebuilds it (same seeds, dtype and formulation), but on
``--concurrent`` torch threads, all the cores the search had, and trained back to back in this
one process. The whole loop is timed with ``time.perf_counter()``, data loading and model
set-up included, as a user's plain script would have them. Then

    overhead = search wall / baseline - 1

twice: with Ray's start-up in the search wall and without it (``Tuner.fit()`` only). So
everything the search adds (Ray start-up, scheduling, worker start-up, data loading in every
worker, reports, Optuna, the done records) counts as overhead, and so does running trials
side by side on one thread each instead of one after the other on all threads. The table
gives each number as the median and [range] over the repeats, beside the sum of the trials'
own compute (``runtime.wall_s`` of the done records) and the old computed ideal, that sum
divided by the slots. The baseline's final test accuracies are compared with the search's
(the largest difference is printed; they may differ in the last bits, the thread counts do).

    python benchmarks/bench_search.py                  # 3 x (16 trials x ~15 s, 2 at a time)
    python benchmarks/bench_search.py --trials 4 --trial-seconds 3 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Timing, machine_banner  # noqa: E402

from pipeline.config import TrainConfig, make_config  # noqa: E402
from pipeline.environments import EnvSet, load_envs, make_envs  # noqa: E402
from pipeline.environments.store import save_envset  # noqa: E402
from pipeline.search.runner import run_search
from pipeline.search.spec import SearchSpec  # noqa: E402
from pipeline.search.trial import TrialSetup, recorded_config  # noqa: E402
from pipeline.training import TrainResult, train  # noqa: E402

SPACE = {"irm": {"lr": {"log_uniform": [3e-4, 3e-3]},
                 "penalty_weight": {"log_uniform": [1e2, 1e4]}}}
TARGET = 0.10  # the search may cost at most 10% over the plain loop


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


def done_records(out: Path) -> list[dict]:
    """The search's done records (``OUT/trials/KEY.json``), in key order."""
    records = [json.loads(p.read_text()) for p in (out / "trials").glob("*.json")]
    return sorted(records, key=lambda r: r["key"])


def trial_config(record: dict, threads: int) -> tuple[TrainConfig, TrialSetup]:
    """A done record's configuration as ``rerun`` rebuilds it, on ``threads`` threads (``rerun``
    keeps the trial's own one thread)."""
    cfg, setup = recorded_config(record)
    return replace(cfg, threads=threads), setup


def plain_loop(records: list[dict], threads: int) -> tuple[float, list[TrainResult]]:
    """The search's trials back to back in this process, outside Ray: wall seconds, results.

    Timed as a plain script runs: load the data (once), then build and train each
    configuration in turn.
    """
    start = time.perf_counter()
    envsets: dict[Path, EnvSet] = {}
    results = []
    for record in records:
        cfg, setup = trial_config(record, threads)
        path = Path(cfg.envs_dir) / cfg.dataset
        if path not in envsets:
            envsets[path] = load_envs(path)
        if envsets[path].manifest_sha256 != setup.data_sha256:
            raise SystemExit(f"the environments at {path} are not the ones the search used")
        results.append(train(cfg, setup.seeds, envset=envsets[path], record_at=setup.record_at))
    return time.perf_counter() - start, results


def accuracy_difference(records: list[dict], results: list[TrainResult]) -> tuple[float, int, int]:
    """Largest |test accuracy difference| over all members, members compared, status mismatches."""
    largest, compared, mismatched = 0.0, 0, 0
    for record, result in zip(records, results, strict=True):
        for searched, again in zip(record["result"]["members"], result.members, strict=True):
            if searched["status"] != again["status"]:
                mismatched += 1
                continue
            a, b = searched["metrics"].get("test_acc"), again["metrics"].get("test_acc")
            if a is not None and b is not None:
                largest, compared = max(largest, abs(a - b)), compared + 1
    return largest, compared, mismatched


@dataclass
class Repeat:
    """One repeat: a search and the same trials as a plain loop."""

    connect_s: float  # Ray start-up (and the search's validation)
    fit_s: float  # Tuner.fit()
    compute_s: float  # sum of the trials' trainer loops (runtime.wall_s)
    trial_s: float  # sum of the trials' own wall (data, model, training, reports)
    baseline_s: float  # the plain loop, timed
    baseline_compute_s: float  # the plain loop's trainer loops (runtime.wall_s)
    trials: int
    keys: tuple[str, ...]

    @property
    def search_s(self) -> float:
        return self.connect_s + self.fit_s


def spread(values: list[float]) -> Timing:
    """Median and range of one number over the repeats."""
    return Timing(statistics.median(values), min(values), max(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--trial-seconds", type=float, default=15.0)
    parser.add_argument("--concurrent", type=int, default=2,
                        help="trials at a time (one CPU each); the baseline's torch threads")
    parser.add_argument("--examples", type=int, default=2000, help="per environment")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per trial")
    parser.add_argument("--repeats", type=int, default=3,
                        help="searches (each followed by its baseline); median and range")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the searches here (OUT/search-1, ...; must not exist yet)")
    args = parser.parse_args()
    if args.repeats < 1 or args.concurrent < 1:
        parser.error("--repeats and --concurrent must be >= 1")
    if args.out is not None:
        taken = [args.out / f"search-{i}" for i in range(1, args.repeats + 1)
                 if (args.out / f"search-{i}").exists()]
        if taken:  # an existing search would be resumed, not run again
            parser.error(f"--out: {taken[0]} exists; every repeat needs a fresh directory")

    print(machine_banner(), flush=True)
    seeds = list(range(args.seeds))
    slots = args.concurrent
    fixed = {"method": "irm", "hidden_dim": 128, "anneal_iters": 20, "holdout_fraction": 0.2}
    runs: list[Repeat] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        envs_dir = build_envs(root, args.examples)
        steps = steps_for(args.trial_seconds, fixed, envs_dir, seeds)
        print(f"{args.trials} trials x {steps} steps (~{args.trial_seconds:.0f} s each), "
              f"{args.seeds} seeds per trial, {slots} at a time, 1 CPU each; baseline: the "
              f"same trials back to back on {slots} threads; {args.repeats} repeats",
              flush=True)
        for i in range(1, args.repeats + 1):
            out = (args.out or root) / f"search-{i}"
            spec = SearchSpec(dataset="colored_fashion_mnist", method="irm", spaces=SPACE,
                              out=str(out), envs_dir=str(envs_dir), sampler="random",
                              trials=args.trials, seeds=seeds, search_seed=0,
                              fixed={k: v for k, v in fixed.items() if k != "method"} |
                              {"steps": steps},
                              cpus_per_trial=1, max_concurrent=slots)
            outcome = run_search(spec)
            records = done_records(out)
            baseline_s, results = plain_loop(records, slots)
            largest, compared, mismatched = accuracy_difference(records, results)
            run = Repeat(outcome.timing["connect_s"], outcome.timing["fit_s"],
                         sum(r["result"]["runtime"]["wall_s"] for r in records),
                         sum(r.get("trial_s", 0.0) for r in records), baseline_s,
                         sum(r.runtime["wall_s"] for r in results),
                         len(records), tuple(r["key"] for r in records))
            runs.append(run)
            same = "" if run.keys == runs[0].keys else (
                "  NOT the trials of repeat 1: the repeats are not comparable")
            print(f"repeat {i}/{args.repeats}: {run.trials} of {args.trials} trials finished; "
                  f"Ray start-up {run.connect_s:.1f} s, Tuner.fit() {run.fit_s:.1f} s, "
                  f"trial compute {run.compute_s:.1f} s, baseline {run.baseline_s:.1f} s "
                  f"(its trainer loops {run.baseline_compute_s:.1f} s); "
                  f"test accuracy, baseline vs search: largest difference {largest:.3g} over "
                  f"{compared} members"
                  + (f", {mismatched} members diverged in one only" if mismatched else "")
                  + (f" (threads {slots} vs 1)" if largest else " (identical)") + same,
                  flush=True)
            if not compared:
                print("  no test accuracies to compare (no member finished in both)")

    def row(name: str, values: list[float], unit: str = "s") -> None:
        print(f"{name:<52} {spread(values)!s:>26} {unit}")

    baseline = [r.baseline_s for r in runs]
    with_startup = [r.search_s / r.baseline_s - 1 for r in runs]
    without_startup = [r.fit_s / r.baseline_s - 1 for r in runs]
    print(f"\n{'':<52} {f'median [range], {len(runs)} repeats':>26}")
    row("Ray start-up", [r.connect_s for r in runs])
    row("search wall with Ray start-up", [r.search_s for r in runs])
    row("search wall without Ray start-up (Tuner.fit())", [r.fit_s for r in runs])
    row(f"baseline, timed (plain loop on {slots} threads)", baseline)
    row("baseline's trainer loops (its runtime.wall_s)", [r.baseline_compute_s for r in runs])
    row("sum of trial compute (trainer loops)", [r.compute_s for r in runs])
    row("sum of trial wall (incl. data, model, reports)", [r.trial_s for r in runs])
    row(f"ideal, computed (compute / {slots} slots)", [r.compute_s / slots for r in runs])
    row("overhead with Ray start-up (search / baseline - 1)",
        [100 * v for v in with_startup], "%")
    row("overhead without Ray start-up (fit / baseline - 1)",
        [100 * v for v in without_startup], "%")
    verdict = ", ".join(f"{name} {'met' if statistics.median(v) <= TARGET else 'NOT met'}"
                        for name, v in (("with start-up", with_startup),
                                        ("without", without_startup)))
    print(f"target: overhead <= {100 * TARGET:.0f}% (median): {verdict}")


if __name__ == "__main__":
    main()
