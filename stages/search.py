"""DVC stage: one hyperparameter search, from ``params.yaml: search`` (the CLI's same function)."""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.params.search import spec_from_params
from pipeline.process import run_command
from pipeline.search.runner import run_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--space", default=None, help="default: the method's name")
    parser.add_argument("--envs-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    run_search(spec_from_params(params.get("search"), spaces=params.get("search_spaces") or {},
                                dataset=args.dataset, method=args.method, space=args.space,
                                envs_dir=str(args.envs_dir), out=str(args.out)),
               replace_other=True)  # the output persists (dvc.yaml)


if __name__ == "__main__":
    sys.exit(run_command(main))
