"""DVC stage: build one dataset's environments from ``params.yaml: make_envs``."""

import argparse
from pathlib import Path

import yaml

from pipeline.environments import make_envs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())["make_envs"]
    make_envs(args.dataset, seed=params["seed"], out_dir=args.out,
              params=params["datasets"][args.dataset])


if __name__ == "__main__":
    main()
