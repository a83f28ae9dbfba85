"""Batched K-seed trainer against a plain per-seed loop written like IRM's ``main.py``.

Same data (full-size environments), same config (the ``irm_paper`` preset by default), same
seeds. Prints ms per step per seed for each variant, the speed-up over the plain loop, and the
final test accuracies. On a CUDA machine it also sweeps K = 1, 4, 16, 64 in fp32, TF32 and bf16.

    python benchmarks/bench_trainer.py                      # full protocol: slow on a CPU
    python benchmarks/bench_trainer.py --steps 301 --plain-seeds 2 --timing-steps 10

Timing variants run ``--timing-steps`` steps each (the cost of a step does not depend on the
phase); the accuracy comparison trains the plain loop (``--plain-seeds`` of the K seeds) and the
fastest batched variant for ``--steps`` steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import make_config  # noqa: E402
from pipeline.environments import load_envs  # noqa: E402
from pipeline.reference import train_reference  # noqa: E402
from pipeline.training import train  # noqa: E402


def time_plain(cfg, seeds, envs, device) -> tuple[float, list[dict]]:
    """Seconds per step per seed of the plain loop, and its final metrics per seed."""
    start, results = time.perf_counter(), []
    for seed in seeds:
        results.append(train_reference(cfg, seed, envs, device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / (cfg.steps * len(seeds)), results


def time_batched(cfg, seeds, envs) -> tuple[float, list[dict]]:
    result = train(cfg, seeds, envset=envs)
    per_seed = result.runtime["wall_s"] / result.runtime["steps_run"] / len(seeds)
    return per_seed, [m["metrics"] for m in result.members]


def fmt_acc(metrics: list[dict]) -> str:
    values = [100 * m["test_acc"] for m in metrics if m]
    if not values:
        return "n/a"
    return f"{statistics.fmean(values):.1f} ± {statistics.pstdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="data/envs/colored_fashion_mnist")
    parser.add_argument("--preset", default="irm_paper")
    parser.add_argument("--seeds", type=int, default=10, help="K, the number of seeds")
    parser.add_argument("--steps", type=int, default=501, help="steps of the accuracy runs")
    parser.add_argument("--timing-steps", type=int, default=10, help="steps of the timing runs")
    parser.add_argument("--plain-seeds", type=int, default=None,
                        help="train only this many seeds with the plain loop (default: all K)")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    envs = load_envs(args.envs)
    seeds = list(range(args.seeds))
    plain_seeds = seeds[: args.plain_seeds or args.seeds]
    sizes = {e.name: len(e) for e in envs.envs}
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"data {args.envs} {sizes}; preset {args.preset}; K = {len(seeds)}", flush=True)

    timing_cfg = dict(steps=args.timing_steps, eval_every=10**9, device=str(device))
    plain_t, _ = time_plain(make_config(args.preset, **timing_cfg), plain_seeds[:1], envs, device)
    print(f"plain loop (fp32, double backprop, every env every step): "
          f"{1000 * plain_t:.1f} ms/step/seed", flush=True)
    rows = []
    for dtype in ("fp32", "bf16"):
        for formulation in ("bmm", "linear"):
            cfg = make_config(args.preset, dtype=dtype, formulation=formulation, **timing_cfg)
            t, _ = time_batched(cfg, seeds, envs)
            rows.append((dtype, formulation, t))
            print(f"batched {dtype:<4} {formulation:<6}: {1000 * t:8.1f} ms/step/seed  "
                  f"x{plain_t / t:.2f} vs plain", flush=True)
    best = min(rows, key=lambda r: r[2])
    print(f"fastest batched setting: {best[0]} {best[1]} (x{plain_t / best[2]:.2f})")

    if device.type == "cuda":
        gpu_sweep(args.preset, envs, args.timing_steps)
    if args.skip_accuracy:
        return
    print(f"\naccuracy runs: {args.steps} steps", flush=True)
    full = dict(steps=args.steps, device=str(device))
    plain_t, plain_metrics = time_plain(make_config(args.preset, **full), plain_seeds, envs,
                                        device)
    cfg = make_config(args.preset, dtype=best[0], formulation=best[1], **full)
    batched_t, batched_metrics = time_batched(cfg, seeds, envs)
    common = batched_metrics[: len(plain_seeds)]
    print(f"{'variant':<34} {'ms/step/seed':>12} {'speed-up':>9} {'test acc % (seeds)':>26}")
    print(f"{'plain loop fp32':<34} {1000 * plain_t:12.1f} {'1.00':>9} "
          f"{fmt_acc(plain_metrics):>18} ({len(plain_seeds)})")
    print(f"{'batched ' + best[0] + ' ' + best[1]:<34} {1000 * batched_t:12.1f} "
          f"{plain_t / batched_t:9.2f} {fmt_acc(batched_metrics):>18} ({len(seeds)})")
    print(f"{'batched, the plain loop seeds only':<34} {'':>12} {'':>9} "
          f"{fmt_acc(common):>18} ({len(common)})")
    gap = abs(statistics.fmean(m["test_acc"] for m in common)
              - statistics.fmean(m["test_acc"] for m in plain_metrics))
    print(f"test accuracy gap on the same seeds: {100 * gap:.2f} points")


def gpu_sweep(preset: str, envs, steps: int) -> None:
    print("\nGPU sweep: ms/step/seed")
    print(f"{'K':>4} {'fp32':>8} {'tf32':>8} {'bf16':>8}")
    for k in (1, 4, 16, 64):
        row = []
        for mode in ("fp32", "tf32", "bf16"):
            torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
            cfg = make_config(preset, steps=steps, eval_every=10**9, device="cuda",
                              dtype="bf16" if mode == "bf16" else "fp32")
            t, _ = time_batched(cfg, list(range(k)), envs)
            row.append(1000 * t)
        torch.backends.cuda.matmul.allow_tf32 = False
        print(f"{k:>4} {row[0]:8.2f} {row[1]:8.2f} {row[2]:8.2f}", flush=True)


if __name__ == "__main__":
    main()
