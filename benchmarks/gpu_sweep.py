"""The batched K-seed trainer on a CUDA GPU: K x precision x formulation.

For every K (seeds trained together as one stacked model), precision mode (``dtype`` fp32 with
TF32 matmuls off, tf32, bf16 autocast) and formulation of the stacked MLP (``bmm``, ``linear``),
one row: the ``irm_paper`` preset (hidden 390) trained full batch for ``--steps`` steps on
Colored Fashion-MNIST, timed as the median [range] of ``--repeats`` runs after one warm-up run
of the same configuration (the trainer's own loop time: set-up and result assembly excluded;
the loop includes the test evaluations at step 0 and at the last step). Each row prints

- ms/step/seed;
- seeds per minute at the preset's 501 steps (training loop only);
- achieved TFLOP/s: the GEMM FLOPs of one full-batch step per seed
  (``harness.gemm_flops(harness.mlp_layer_shapes(rows, 392, 390))``, rows = all training
  examples) times K, over the step's time;
- the fraction of the GPU's dense peak for that mode (table ``PEAKS``; "unknown" when the
  device name matches none of it);
- the peak GPU memory of the row.

A row that runs out of GPU memory prints as OOM and the sweep goes on. The sweep keeps to a
time budget (``--budget-s``): it runs the rows in order of K, predicts each row's time from the
same mode and formulation at the previous K, and where a row would take more than its share it
runs fewer steps (not below ``--min-steps``) and then fewer repeats; every such row says so.

    python benchmarks/gpu_sweep.py                         # the whole sweep (~4 min on an H100)
    python benchmarks/gpu_sweep.py --ks 16,64 --modes bf16 --formulations bmm
"""

from __future__ import annotations

import argparse
import gc
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import Timing, gemm_flops, machine_banner, mlp_layer_shapes, repeat  # noqa: E402

from pipeline.config import make_config  # noqa: E402
from pipeline.environments import DATASETS, load_envs  # noqa: E402
from pipeline.training import Trainer  # noqa: E402

KS = (1, 16, 64, 256)
MODES = ("fp32", "tf32", "bf16")  # the dtype config values
FORMULATIONS = ("bmm", "linear")
PRESET_STEPS = 501  # the irm_paper preset's run length, for seeds per minute

# Dense (no sparsity) peak TFLOP/s per mode, by a substring of torch.cuda.get_device_name().
# fp32 is the plain (non-tensor-core) rate; tf32 and bf16 are tensor-core rates.
H100_SXM = {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}
A100 = {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}
PEAKS: list[tuple[str, str, dict[str, float]]] = [
    ("H200", "H200 (= H100 SXM)", H100_SXM),
    ("H100 80GB HBM3", "H100 SXM", H100_SXM),  # how the SXM5 part names itself
    ("H100 SXM", "H100 SXM", H100_SXM),
    ("A100", "A100", A100),
]

# first guesses of ms/step/seed at K = 1 on the full data (H100-like), before any row measured
GUESS_MS_PER_STEP_PER_SEED = {"fp32": 3.0, "tf32": 1.0, "bf16": 1.0}
FULL_ROWS = 54_000
MIN_SHARE_S = 8.0  # a row predicted to take less than this is never shortened


def peak_for(name: str) -> tuple[str | None, dict[str, float] | None]:
    for substring, label, peaks in PEAKS:
        if substring.lower() in name.lower():
            return label, peaks
    return None, None


def is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return (isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower()
            or "CUBLAS_STATUS_ALLOC_FAILED" in text)


@dataclass
class Row:
    k: int
    mode: str
    formulation: str
    steps: int = 0
    repeats: int = 0
    ms: Timing | None = None  # ms/step/seed
    peak_gib: float = math.nan
    status: str = "pending"  # ok | OOM | error | skipped
    notes: str = ""
    seconds: float = 0.0  # the row's wall time, set-up and warm-up included


def ensure_envs(path: Path) -> None:
    """Build the environment set with ``python -m pipeline make-envs`` when it is missing."""
    if (path / "manifest.json").is_file():
        return
    dataset = path.name
    if dataset not in DATASETS:
        sys.exit(f"{path} is missing and {dataset!r} is not a dataset name; build it with "
                 "python -m pipeline make-envs --dataset NAME --out PATH")
    cmd = [sys.executable, "-m", "pipeline", "make-envs", "--dataset", dataset, "--out",
           str(path.resolve())]
    print(f"{path} is missing: building it ({' '.join(cmd[1:])})", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def plan(step_s: float, share_s: float, steps: int, repeats: int,
         min_steps: int) -> tuple[int, int, str]:
    """Steps and repeats that fit ``share_s`` at ``step_s`` seconds per step (warm-up included)."""
    share_s = max(share_s, MIN_SHARE_S)
    if (1 + repeats) * steps * step_s <= share_s:
        return steps, repeats, ""
    fit_steps = int(share_s / ((1 + repeats) * step_s))
    if fit_steps >= min_steps:
        return fit_steps, repeats, f"steps {steps}->{fit_steps} (time budget)"
    fit_repeats = max(1, min(repeats, int(share_s / (min_steps * step_s)) - 1))
    note = f"steps {steps}->{min_steps}" if min_steps < steps else ""
    if fit_repeats < repeats:
        note += f"{', ' if note else ''}repeats {repeats}->{fit_repeats}"
    return min(steps, min_steps), fit_repeats, f"{note} (time budget)" if note else ""


def measure(row: Row, envs, preset: str) -> None:
    cfg = make_config(preset, steps=row.steps, eval_every=10**9, device="cuda",
                      dtype=row.mode, formulation=row.formulation)
    trainer = Trainer(cfg, list(range(row.k)), envset=envs)
    torch.cuda.reset_peak_memory_stats()
    trainer.run()  # warm-up: kernel selection, the allocator's pools, Adam's state
    runs = []

    def once() -> float:
        torch.cuda.synchronize()
        rt = trainer.run().runtime  # the same model trains on: only the time is kept
        runs.append(rt)
        return rt["ms_per_step_per_seed"]

    row.ms = repeat(once, row.repeats)
    row.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    if any(rt["steps_run"] < row.steps for rt in runs):
        row.notes += "; every member diverged (fewer steps ran)"
    if runs[-1]["dtype"] != row.mode or runs[-1]["formulation"] != row.formulation:
        row.notes += f"; ran {runs[-1]['dtype']}/{runs[-1]['formulation']}"


def fmt(t: Timing, digits: int) -> str:
    return f"{t.median:.{digits}f} [{t.low:.{digits}f}, {t.high:.{digits}f}]"


HEADER = (f"{'K':>4} {'mode':<5} {'form':<7} {'steps x runs':>12} {'ms/step/seed':>24} "
          f"{'seeds/min@501':>22} {'TFLOP/s':>20} {'% of peak':>16} {'peak GiB':>9}  notes")


def line(row: Row, flops_seed: float, peaks: dict[str, float] | None) -> str:
    head = f"{row.k:>4} {row.mode:<5} {row.formulation:<7} "
    if row.status != "ok":
        return head + f"{row.status:>12}  {row.notes.lstrip('; ')}"
    ms = row.ms
    tflops = ms.inverse(flops_seed / 1e9)  # FLOP per (ms * 1e9) = TFLOP/s
    per_min = ms.inverse(60_000 / PRESET_STEPS)
    frac = (fmt(tflops.scaled(100 / peaks[row.mode]), 1) + " %") if peaks else "unknown"
    digits = 3 if ms.median < 1 else 2
    return (head + f"{f'{row.steps} x {row.repeats}':>12} {fmt(ms, digits):>24} "
            f"{fmt(per_min, 0):>22} {fmt(tflops, 1):>20} {frac:>16} {row.peak_gib:>9.1f}  "
            f"{row.notes.lstrip('; ')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="data/envs/colored_fashion_mnist",
                        help="an environment set; built with `python -m pipeline make-envs` "
                             "if missing (default: %(default)s, full Colored Fashion-MNIST)")
    parser.add_argument("--preset", default="irm_paper", help="default: %(default)s")
    parser.add_argument("--steps", type=int, default=20,
                        help="full-batch steps of each timed run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per row, after one warm-up (default %(default)s)")
    parser.add_argument("--min-steps", type=int, default=5,
                        help="the time budget never shortens a run below this (default "
                             "%(default)s)")
    parser.add_argument("--budget-s", type=float, default=200.0,
                        help="seconds for all rows together, set-up included (default "
                             "%(default)s); slow rows run fewer steps, then fewer repeats")
    parser.add_argument("--ks", default=",".join(map(str, KS)),
                        help="seeds per batched run (default %(default)s)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="dtype values among fp32, tf32, bf16 (default %(default)s)")
    parser.add_argument("--formulations", default=",".join(FORMULATIONS),
                        help="bmm, linear (default %(default)s)")
    args = parser.parse_args()
    ks = sorted({int(k) for k in args.ks.split(",")})
    modes = [m for m in args.modes.split(",") if m]
    formulations = [f for f in args.formulations.split(",") if f]
    if bad := [m for m in modes if m not in MODES] + [f for f in formulations
                                                       if f not in FORMULATIONS]:
        parser.error(f"unknown mode or formulation: {', '.join(bad)}")
    if not torch.cuda.is_available():
        print("gpu_sweep: no CUDA device here (torch.cuda.is_available() is False); this sweep "
              "times the trainer on a GPU. Run it on a CUDA machine (benchmarks/gpu_check.sh); "
              "benchmarks/bench_trainer.py times the CPU.", file=sys.stderr)
        return 1

    t_start = time.perf_counter()
    torch.zeros(1, device="cuda")  # the CUDA context, before anything is timed
    name = torch.cuda.get_device_name()
    props = torch.cuda.get_device_properties(0)
    label, peaks = peak_for(name)
    print(machine_banner())
    print(f"GPU {name}: {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} "
          f"SMs, CUDA {torch.version.cuda}; dense peaks "
          + (f"({label}): " + ", ".join(f"{m} {p:g}" for m, p in peaks.items()) + " TFLOP/s"
             if peaks else "unknown for this device name (% of peak: unknown)"), flush=True)

    envs_path = Path(args.envs)
    ensure_envs(envs_path)
    envs = load_envs(envs_path)
    base = make_config(args.preset)
    rows_n = sum(len(e) for e in envs.train)
    in_features = math.prod(envs.manifest["input_shape"])
    flops_seed = gemm_flops(mlp_layer_shapes(rows_n, in_features, base.hidden_dim))
    sizes = ", ".join(f"{e.name} {len(e)}" for e in envs.envs)
    print(f"data {envs_path} ({sizes}); preset {args.preset} (hidden {base.hidden_dim}, "
          f"{base.method}); full batch: {rows_n} training rows x {in_features} inputs; "
          f"{flops_seed / 1e9:.1f} GFLOP of GEMMs per step per seed")
    if envs.manifest.get("reduced"):
        print(f"NOTE: {envs_path} is a REDUCED environment set (manifest: reduced), e.g. the "
              "default DVC profile's 10k images: not the full Colored Fashion-MNIST. For the "
              "full set: python -m pipeline make-envs --dataset colored_fashion_mnist --out "
              "DIR, then --envs DIR")
    print(f"each row: one warm-up run, then the median [range] of {args.repeats} runs of "
          f"{args.steps} steps (the trainer's loop time); time budget {args.budget_s:.0f} s\n",
          flush=True)

    rows = [Row(k, m, f) for k in ks for m in modes for f in formulations]
    measured: dict[tuple[str, str], tuple[int, float]] = {}  # (mode, form) -> (K, s/step/seed)
    scale = rows_n / FULL_ROWS

    def step_s(row: Row) -> float:
        """Predicted seconds per step of ``row``: per seed as at the largest K measured."""
        got = measured.get((row.mode, row.formulation))
        per_seed = got[1] if got else GUESS_MS_PER_STEP_PER_SEED[row.mode] / 1e3 * scale
        return per_seed * row.k

    def cost(row: Row) -> float:
        return 0.5 + 0.01 * row.k + (1 + args.repeats) * args.steps * step_s(row)

    budget_end = t_start + args.budget_s
    print(HEADER, flush=True)
    for i, row in enumerate(rows):
        remaining = budget_end - time.perf_counter()
        if remaining <= 0:
            row.status, row.notes = "skipped", "time budget spent"
            print(line(row, flops_seed, peaks), flush=True)
            continue
        todo = rows[i:]
        share = remaining * cost(row) / sum(cost(r) for r in todo)
        row.steps, row.repeats, row.notes = plan(step_s(row), share - 0.5 - 0.01 * row.k,
                                                 args.steps, args.repeats, args.min_steps)
        start = time.perf_counter()
        error = None
        try:
            measure(row, envs, args.preset)
            row.status = "ok"
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if is_oom(exc):
                row.status, error = "OOM", "out of GPU memory"
            else:
                row.status, error = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        if error:  # the exception (and the run's tensors it holds) is gone: free the memory
            gc.collect()
            torch.cuda.empty_cache()
            row.notes = f"{error}; {row.notes}" if row.notes else error
        row.seconds = time.perf_counter() - start
        if row.status == "ok":
            measured[(row.mode, row.formulation)] = (row.k, row.ms.median / 1e3)
        print(line(row, flops_seed, peaks), flush=True)

    ok = [r for r in rows if r.status == "ok"]
    print(f"\nsweep: {len(ok)} of {len(rows)} rows measured, "
          f"{sum(r.status == 'OOM' for r in rows)} OOM, "
          f"{sum(r.status == 'error' for r in rows)} failed, "
          f"{sum(r.status == 'skipped' for r in rows)} skipped; "
          f"{sum('time budget' in r.notes for r in ok)} measured with fewer steps or runs "
          f"for the time budget; {time.perf_counter() - t_start:.0f} s in all")
    for k in ks:
        best = min((r for r in ok if r.k == k), key=lambda r: r.ms.median, default=None)
        if best is not None:
            print(f"fastest at K={k}: {best.mode} {best.formulation}, "
                  f"{best.ms.median:.3g} ms/step/seed = "
                  f"{60_000 / PRESET_STEPS / best.ms.median:.0f} seeds/min at "
                  f"{PRESET_STEPS} steps")
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
