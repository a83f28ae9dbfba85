"""DVC stage: the PICA study (unsupervised IRM's linear estimator, Yotamnor/UIRM PICA/PICA.py).

On UIRM's synthetic case it measures how closely PICA's first direction matches the known
invariant direction (the source's exact rule beside the configured one, PCA as the baseline).
On each dataset of ``params.yaml: pica_study.datasets`` it projects the training environments'
pixels (no labels) on PICA's and PCA's top directions and scores a linear probe, fitted on the
training environments' labels, on every environment. Prints every number; the report draws the
table and the figure. No model selection: every setting is fixed in ``pica_study``.
"""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.environments import load_envs
from pipeline.locks import output_lock
from pipeline.outputs import write_json
from pipeline.params.pica import pica_settings
from pipeline.pica.study import run_pica_study
from pipeline.process import run_command
from pipeline.versions import git_revision, library_versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs-dir", type=Path, required=True,
                        help="directory holding each dataset's environments (data/envs)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    settings = pica_settings(yaml.safe_load(args.params.read_text()).get("pica_study"))
    with output_lock(args.out, "--out"):  # one writer per result file
        envsets = {name: load_envs(args.envs_dir / name) for name in settings["datasets"]}
        result = run_pica_study(envsets, progress=lambda msg: print(msg, flush=True),
                                **settings)
        write_json(args.out, {"settings": settings, "git": git_revision(),
                              "versions": library_versions(), **result}, sort_keys=True)


if __name__ == "__main__":
    sys.exit(run_command(main))
