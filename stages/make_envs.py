"""DVC stage: build one dataset's environments from ``params.yaml: make_envs``."""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.environments import make_envs
from pipeline.errors import ConfigError
from pipeline.params.make_envs import make_envs_settings
from pipeline.process import run_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    settings = make_envs_settings(yaml.safe_load(args.params.read_text()).get("make_envs"))
    if args.dataset not in settings.datasets:
        raise ConfigError(f"--dataset {args.dataset} is not in make_envs.datasets "
                         f"({', '.join(settings.datasets)})")
    make_envs(args.dataset, seed=settings.seed, out_dir=args.out,
              params=settings.datasets[args.dataset])


if __name__ == "__main__":
    sys.exit(run_command(main))
