"""What one mid-trial checkpoint costs (docs/faults.md), beside the training step it interrupts.

For one configuration (default: the IRM paper's preset, ``irm_paper``, with the paper's 10
restarts as one batched model) on saved environments, one run prints and writes (``--out``):

- the machine;
- ms per training step (the median of ``--steps`` steps after a warm-up);
- per checkpoint: the time to save the trainer's state (``save_checkpoint``: state to a file,
  written atomically), the time Tune's report takes to copy the directory to the trial's
  storage (timed here as a plain copy on the same disk), the time to load it into a fresh
  trainer, and the bytes on disk; each the median and [range] of ``--repeats``;
- the overhead at a given ``checkpoint_every``: (save + copy) / (checkpoint_every x step).

    python benchmarks/bench_checkpoint.py --envs data/envs/colored_mnist
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import machine_banner  # noqa: E402

from pipeline.config import make_config, parse_set  # noqa: E402
from pipeline.environments import load_envs  # noqa: E402
from pipeline.precision import machine_info  # noqa: E402
from pipeline.training import Trainer, load_checkpoint, save_checkpoint  # noqa: E402


def _stat(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=Path, required=True, help="a saved environment set")
    parser.add_argument("--preset", default="irm_paper")
    parser.add_argument("--seeds", type=int, default=10, help="members of the batched model")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=100, help="checkpoint_every, for the "
                        "overhead line")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args()

    print(machine_banner(), flush=True)
    envset = load_envs(args.envs)
    cfg = make_config(args.preset, **{"dtype": "fp32", **parse_set(args.set),
                                      "dataset": envset.manifest["dataset"],
                                      "envs_dir": str(args.envs.parent)})
    seeds = list(range(args.seeds))
    trainer = Trainer(cfg, seeds, envset=envset)
    with trainer.precision.active(trainer.device):
        trainer.advance(2)  # warm-up: first-step allocations, Adam's state created
        step_s = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            trainer.advance(trainer.next_step + 1)
            step_s.append(time.perf_counter() - t0)
    save_s, copy_s, load_s, size = [], [], [], 0
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out else None) as tmp:
        for i in range(args.repeats):
            folder = Path(tmp) / f"checkpoint_{i}"
            folder.mkdir()
            t0 = time.perf_counter()
            save_checkpoint(trainer, folder / "trainer.pt")
            save_s.append(time.perf_counter() - t0)
            size = sum(p.stat().st_size for p in folder.iterdir())
            t0 = time.perf_counter()
            shutil.copytree(folder, Path(tmp) / f"persisted_{i}")
            copy_s.append(time.perf_counter() - t0)
            fresh = Trainer(cfg, seeds, envset=envset)
            t0 = time.perf_counter()
            load_checkpoint(fresh, folder / "trainer.pt")
            load_s.append(time.perf_counter() - t0)
            assert fresh.next_step == trainer.next_step
    step = statistics.median(step_s)
    overhead = (statistics.median(save_s) + statistics.median(copy_s)) / (args.every * step)
    result = {"machine": machine_info(), "preset": args.preset, "config": cfg.to_dict(),
              "seeds": len(seeds), "data": {"path": str(args.envs),
                                            "reduced": bool(envset.manifest.get("reduced")),
                                            "manifest_sha256": envset.manifest_sha256},
              "step_s": _stat(step_s), "save_s": _stat(save_s), "copy_s": _stat(copy_s),
              "load_s": _stat(load_s), "bytes": size, "checkpoint_every": args.every,
              "overhead": overhead}
    fmt = lambda s: f"{1000 * s['median']:.1f} ms [{1000 * s['min']:.1f}, {1000 * s['max']:.1f}]"  # noqa: E731
    print(f"{args.preset}, {len(seeds)} seeds as one model, hidden {cfg.hidden_dim}, "
          f"{envset.manifest['dataset']} ({'REDUCED' if result['data']['reduced'] else 'full'})")
    print(f"  training step          {fmt(result['step_s'])}")
    print(f"  checkpoint: save       {fmt(result['save_s'])}")
    print(f"              copy       {fmt(result['copy_s'])}  (Tune's persist, same disk)")
    print(f"              load       {fmt(result['load_s'])}")
    print(f"              size       {size / 2**20:.2f} MiB")
    print(f"  overhead at checkpoint_every={args.every}: {100 * overhead:.3f}% of training time")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
