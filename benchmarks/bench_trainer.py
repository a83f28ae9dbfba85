"""The batched K-seed trainer against the hardware's matmul floor and a plain per-seed loop.

One run prints, for the same data, configuration and seeds:

- the machine (CPU model, torch's CPU capability, native bf16 or not, threads);
- the **matmul floor** per dtype: every GEMM of one training step (and the amortised
  evaluations) timed alone at its real shape, summed: the time a step cannot beat on this
  machine in that dtype, as long as plain ``a @ b`` runs it at the kernels' real speed (an
  emulated bf16 is slower in plain ``a @ b`` than in the trainer's kernels: no bound then);
- for each variant (the plain loop written like IRM's ``main.py``; the batched trainer in
  fp32 and bf16 with ``bmm`` and ``linear``; ``dtype=auto`` with ``formulation=auto``, what
  the pipeline's ``auto`` picks here): ms per step per seed, achieved GFLOP/s (the step's
  GEMM FLOPs over its time) and the fraction of the floor of the dtype it computed in, each
  the median and [range] of ``--repeats`` runs, plus the speed-up over the plain loop.

FLOPs count the useful GEMM work of the batched trainer's step (closed-form IRM penalty); the
plain loop does more (double backprop, a test forward every step), so its GFLOP/s understates
what it executes; its ms/step/seed is the comparable number.

    python benchmarks/bench_trainer.py                     # irm_paper, full Colored F-MNIST
    python benchmarks/bench_trainer.py --envs data/envs/colored_fashion_mnist   # after dvc repro:
                                                           # the default profile's 10k images
    python benchmarks/bench_trainer.py --accuracy-steps 501   # also compare final accuracies
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (  # noqa: E402
    Timing,
    gemm_flops,
    machine_banner,
    mlp_layer_shapes,
    repeat,
    seconds,
)

from pipeline.config import make_config  # noqa: E402
from pipeline.environments import load_envs  # noqa: E402
from pipeline.plain_loop import train_plain  # noqa: E402
from pipeline.training import train  # noqa: E402

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# (label, dtype, formulation) of the batched variants
BATCHED = [("batched fp32 bmm", "fp32", "bmm"), ("batched fp32 linear", "fp32", "linear"),
           ("batched bf16 bmm", "bf16", "bmm"), ("batched bf16 linear", "bf16", "linear"),
           ("batched auto (auto)", "auto", "auto")]


def step_gemms(rows: int, in_features: int, hidden: int, eval_rows: int,
               evals_per_step: float) -> list[tuple[int, int, int, str, float]]:
    """Every GEMM of one step per member, with how many times a step runs it (evals amortised)."""
    train_shapes = [(*s, 1.0) for s in mlp_layer_shapes(rows, in_features, hidden)]
    eval_shapes = [(eval_rows, in_features, hidden, "eval layer 1", evals_per_step),
                   (eval_rows, hidden, hidden, "eval layer 2", evals_per_step),
                   (eval_rows, hidden, 1, "eval layer 3", evals_per_step)]
    return train_shapes + eval_shapes


def step_flops(gemms) -> float:
    return sum(gemm_flops([g[:4]]) * g[4] for g in gemms)


def matmul_floor(gemms, dtype: torch.dtype, repeats: int) -> Timing:
    """Seconds per step per member if every GEMM ran alone at its measured speed."""
    gen = torch.Generator().manual_seed(0)
    operands = [(torch.randn(m, k, generator=gen).to(dtype),
                 torch.randn(k, n, generator=gen).to(dtype), w) for m, k, n, _, w in gemms]

    def one_step() -> float:
        total = 0.0
        for a, b, weight in operands:
            total += weight * seconds(lambda a=a, b=b: a @ b, inner=3)
        return total

    for a, b, _ in operands:  # warm-up: kernel selection, page faults
        a @ b
    return repeat(one_step, repeats)


def time_plain(cfg, seeds, envs) -> float:
    """Seconds per step per seed of the plain loop (its loop only, set-up excluded)."""
    total = 0.0
    for seed in seeds:
        record: dict = {}
        train_plain(cfg, seed, envs, "cpu", record=record)
        total += record["loop_seconds"][0]
    return total / (cfg.steps * len(seeds))


def time_batched(cfg, seeds, envs) -> tuple[float, dict]:
    result = train(cfg, seeds, envset=envs)
    rt = result.runtime
    return rt["wall_s"] / rt["steps_run"] / len(seeds), rt


def fmt(t: Timing, unit: float = 1.0, digits: int = 1) -> str:
    return (f"{t.median * unit:.{digits}f} [{t.low * unit:.{digits}f}, "
            f"{t.high * unit:.{digits}f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="data/envs/colored_fashion_mnist",
                        help="an environment set (python -m pipeline make-envs ...)")
    parser.add_argument("--preset", default="irm_paper")
    parser.add_argument("--seeds", type=int, default=2, help="K, seeds per batched run")
    parser.add_argument("--steps", type=int, default=20, help="steps of each timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--variants", default="plain,fp32,bf16,auto",
                        help="which to time: plain (the main.py-style loop), fp32 and bf16 "
                             "(batched, bmm and linear), auto (dtype and formulation auto)")
    parser.add_argument("--accuracy-steps", type=int, default=0,
                        help="if > 0: also train plain loop and auto for this many steps and "
                             "compare final test accuracies")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    envs = load_envs(args.envs)
    seeds = list(range(args.seeds))
    base = make_config(args.preset)
    sizes = {e.name: len(e) for e in envs.envs}
    rows = sum(len(e) for e in envs.train)
    eval_rows = sum(len(e) for e in envs.test)
    in_features = math.prod(envs.manifest["input_shape"])
    print(machine_banner())
    print(f"data {args.envs} {sizes}; preset {args.preset} (hidden {base.hidden_dim}); "
          f"K = {len(seeds)}; {args.steps} steps per run; median [range] of {args.repeats} "
          f"runs", flush=True)

    gemms = step_gemms(rows, in_features, base.hidden_dim, eval_rows, 2 / args.steps)
    flops = step_flops(gemms)
    keep = args.variants.split(",")
    # the floors of the dtypes asked for (auto's, once it has resolved, below)
    floor_dtypes = [d for d in TORCH_DTYPES if d in keep or d == "fp32"]
    floors = {d: matmul_floor(gemms, TORCH_DTYPES[d], args.repeats) for d in floor_dtypes}
    print(f"\nGEMM work per step per seed: {flops / 1e9:.2f} GFLOP "
          f"({len(gemms)} GEMMs, evaluations at step 0 and the last amortised)")
    for name, floor in floors.items():
        print(f"matmul floor {name}: {fmt(floor, 1e3)} ms/step/seed = "
              f"{fmt(floor.inverse(flops), 1e-9, 0)} GFLOP/s", flush=True)

    timing = dict(steps=args.steps, eval_every=10**9, device="cpu")
    results = {}
    if "plain" in keep:
        cfg = make_config(args.preset, **timing)
        results["plain loop fp32"] = (repeat(lambda: time_plain(cfg, seeds, envs),
                                             args.repeats), "fp32", "main.py-style")
    for label, dtype, formulation in BATCHED:
        if label.split()[1] not in keep:
            continue
        cfg = make_config(args.preset, dtype=dtype, formulation=formulation, **timing)
        time_batched(cfg, seeds, envs)  # warm-up (and auto's calibration, cached)
        runtimes = []

        def once(cfg=cfg, runtimes=runtimes) -> float:
            t, rt = time_batched(cfg, seeds, envs)
            runtimes.append(rt)
            return t

        t = repeat(once, args.repeats)
        rt = runtimes[-1]
        how = f"{rt['formulation']}; {rt['dtype_reason']}; {rt['formulation_reason']}"
        results[label] = (t, rt["dtype"], how)

    plain = results.get("plain loop fp32")
    print(f"\n{'variant':<22} {'ms/step/seed':>22} {'GFLOP/s':>20} {'of floor':>18} "
          f"{'vs plain':>9}")
    for label, (t, dtype, _) in results.items():
        if dtype not in floors:  # auto resolved to a dtype whose floor was not asked for
            floors[dtype] = matmul_floor(gemms, TORCH_DTYPES[dtype], args.repeats)
        floor = floors[dtype]
        frac = Timing(floor.median / t.median, floor.median / t.high, floor.median / t.low)
        speed = f"x{plain[0].median / t.median:.2f}" if plain else "-"
        print(f"{label:<22} {fmt(t, 1e3):>22} {fmt(t.inverse(flops), 1e-9, 0):>20} "
              f"{fmt(frac, 100, 0) + ' %':>18} {speed:>9}")
    if any(floors[d].median > t.median for t, d, _ in results.values() if d in floors):
        print("(over 100 %: that dtype's plain mm kernel, which the floor times, is slower here "
              "than the kernels the trainer ends up in, e.g. bf16 emulated without native "
              "support; the floor is then no bound)")
    print("\nwhat ran:")
    for label, (_, dtype, how) in results.items():
        print(f"  {label}: {dtype}, {how}")
    if args.accuracy_steps:
        accuracy(args, envs, seeds)


def accuracy(args, envs, seeds) -> None:
    """Final test accuracy of the plain loop and of ``auto`` over the same seeds."""
    full = dict(steps=args.accuracy_steps, device="cpu")
    start = time.perf_counter()
    plain = [train_plain(make_config(args.preset, **full), s, envs) for s in seeds]
    batched = train(make_config(args.preset, dtype="auto", **full), seeds, envset=envs)
    print(f"\naccuracy after {args.accuracy_steps} steps, seeds {seeds} "
          f"({time.perf_counter() - start:.0f} s):")
    for name, accs in (("plain loop fp32", [100 * m["test_acc"] for m in plain]),
                       (f"batched auto ({batched.runtime['dtype']})",
                        [100 * m["metrics"]["test_acc"] for m in batched.members])):
        print(f"  {name:<28} test {statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f}")


if __name__ == "__main__":
    main()
