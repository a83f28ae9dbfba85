"""DVC stage: the IRM paper's SEM study (InvariantRiskMinimization, experiment_synthetic).

It runs on the saved SEM environments.

ERM (least squares on all environments), ICP (exhaustive subsets, the reference's tests at
``icp_alpha``) and IRM (linear Phi, its regulariser chosen on the last environment), per setup
and repetition, from ``params.yaml: sem_study``. It prints the mean errors per setup and method;
the report sets them beside the published numbers.
"""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.environments import load_envs
from pipeline.locks import output_lock
from pipeline.outputs import write_json
from pipeline.params.sem import sem_settings
from pipeline.process import run_command
from pipeline.sem.study import run_sem_study, summary_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=Path, required=True, help="the SEM environment set")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    settings = sem_settings(yaml.safe_load(args.params.read_text()).get("sem_study"))
    with output_lock(args.out, "--out"):  # one writer per result file
        envset = load_envs(args.envs)
        rows = run_sem_study(envset, progress=print, **settings)
        print(summary_text(rows))
        meta = {"settings": settings, "reps": envset.manifest["params"]["reps"],
                "setups": envset.manifest["params"]["setups"],
                "manifest_sha256": envset.manifest_sha256}
        write_json(args.out, {"meta": meta, "rows": rows}, sort_keys=True)


if __name__ == "__main__":
    sys.exit(run_command(main))
