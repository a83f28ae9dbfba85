"""DVC stage: one search of the schedule study (``params.yaml: schedule_study``).

``--which FAMILY`` searches one penalty-weight schedule family with the study's trial budget
(the same for every family); ``--which landscape`` trains IRM's constant schedule on a grid of
penalty weight x anneal iterations; ``--which power_sweep`` trains lambda = k * t^p on a grid
of p. Each is a search as ``params.yaml: search`` configures it (selection rule, search seed,
Ray), asked up front and trained as prefix trees (``share_prefix``); same outputs as
``stages/search.py``.
"""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.params.schedule_study import study_search_spec
from pipeline.process import run_command
from pipeline.search.runner import run_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--which", required=True,
                        help="a family in schedule_study.families, or landscape, power_sweep")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--envs-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    run_search(study_search_spec(params, args.which, args.dataset, args.method,
                                 str(args.envs_dir), str(args.out)),
               replace_other=True)  # the output persists (dvc.yaml)


if __name__ == "__main__":
    sys.exit(run_command(main))
