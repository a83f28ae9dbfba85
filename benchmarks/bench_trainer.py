"""Batched K-seed trainer against a plain per-seed loop written like IRM's ``main.py``.

Same data (full-size environments), same config (the ``irm_paper`` preset by default), same
seeds. Prints ms per step per seed for each variant, the speed-up over the plain loop, and the
final test accuracies. On a CUDA machine it also sweeps K = 1, 4, 16, 64 in fp32, TF32 and bf16.

    python benchmarks/bench_trainer.py                      # full protocol: slow on a CPU
    python benchmarks/bench_trainer.py --accuracy-seeds 2   # what the README reports

Timing: every variant trains all K seeds for ``--timing-steps`` steps (a step costs the same in
every phase). Accuracy: the plain loop and the fastest batched setting train the same first
``--accuracy-seeds`` seeds for ``--steps`` steps, and their final test accuracies are compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import make_config  # noqa: E402
from pipeline.environments import load_envs  # noqa: E402
from pipeline.reference import train_reference  # noqa: E402
from pipeline.training import train  # noqa: E402


def time_plain(cfg, seeds, envs, device) -> tuple[float, list[dict]]:
    """Seconds per step per seed of the plain loop (its loop only), and its final metrics."""
    seconds, results = 0.0, []
    for seed in seeds:
        record: dict = {}
        results.append(train_reference(cfg, seed, envs, device, record=record))
        seconds += record["loop_seconds"][0]  # set-up excluded, as for the batched trainer
    return seconds / (cfg.steps * len(seeds)), results


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
    parser.add_argument("--accuracy-seeds", type=int, default=None,
                        help="seeds of the accuracy comparison (default: all K)")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    envs = load_envs(args.envs)
    seeds = list(range(args.seeds))
    accuracy_seeds = seeds[: args.accuracy_seeds or args.seeds]
    sizes = {e.name: len(e) for e in envs.envs}
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"data {args.envs} {sizes}; preset {args.preset}; K = {len(seeds)}", flush=True)

    timing_cfg = dict(steps=args.timing_steps, eval_every=10**9, device=str(device))
    plain_t, _ = time_plain(make_config(args.preset, **timing_cfg), seeds[:1], envs, device)
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
    print(f"\naccuracy runs: {args.steps} steps, seeds {accuracy_seeds}", flush=True)
    full = dict(steps=args.steps, device=str(device))
    _, plain_metrics = time_plain(make_config(args.preset, **full), accuracy_seeds, envs, device)
    cfg = make_config(args.preset, dtype=best[0], formulation=best[1], **full)
    _, batched_metrics = time_batched(cfg, accuracy_seeds, envs)
    print(f"{'variant':<28} {'test acc % (mean ± std)':>24} {'train acc %':>12}")
    for name, metrics in (("plain loop fp32", plain_metrics),
                          (f"batched {best[0]} {best[1]}", batched_metrics)):
        train_acc = statistics.fmean(100 * m["train_acc"] for m in metrics)
        print(f"{name:<28} {fmt_acc(metrics):>24} {train_acc:12.1f}")
    gaps = [100 * abs(a["test_acc"] - b["test_acc"])
            for a, b in zip(plain_metrics, batched_metrics, strict=True)]
    mean_gap = abs(statistics.fmean(m["test_acc"] for m in plain_metrics)
                   - statistics.fmean(m["test_acc"] for m in batched_metrics))
    print(f"test accuracy gap: {100 * mean_gap:.2f} points in the mean, "
          f"at most {max(gaps):.2f} points for one seed")


def gpu_sweep(preset: str, envs, steps: int) -> None:
    print("\nGPU sweep: ms/step/seed")
    print(f"{'K':>4} {'formulation':<12} {'fp32':>8} {'tf32':>8} {'bf16':>8}")
    for k in (1, 4, 16, 64):
        for formulation in ("bmm", "linear"):
            row = []
            for mode in ("fp32", "tf32", "bf16"):
                torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
                cfg = make_config(preset, steps=steps, eval_every=10**9, device="cuda",
                                  formulation=formulation,
                                  dtype="bf16" if mode == "bf16" else "fp32")
                t, _ = time_batched(cfg, list(range(k)), envs)
                row.append(1000 * t)
            torch.backends.cuda.matmul.allow_tf32 = False
            print(f"{k:>4} {formulation:<12} {row[0]:8.2f} {row[1]:8.2f} {row[2]:8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
