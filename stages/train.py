"""DVC stage: train one published preset on one dataset, from ``params.yaml: train``."""

import argparse
import json
from pathlib import Path

import yaml

from pipeline import make_config, train
from pipeline.reporting import result_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--envs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())["train"]
    cfg = make_config(args.preset, dataset=args.dataset, envs_dir=str(args.envs.parent),
                      **params["set"])
    result = train(cfg, list(range(params["seeds"])), progress=print_progress)
    print(result_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")


def print_progress(info: dict) -> None:
    print(f"step {info['step']}/{info['steps'] - 1}: train {100 * info['train_acc']:.1f}%, "
          f"test {100 * info['test_acc']:.1f}%, {info['elapsed_s']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
