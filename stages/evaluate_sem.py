"""DVC stage: the IRM paper's SEM study (InvariantRiskMinimization, experiment_synthetic).

It runs on the saved SEM environments.

ERM (least squares on all environments), ICP (exhaustive subsets, the reference's tests at
``icp_alpha``) and IRM (linear Phi, its regulariser chosen on the last environment), per setup
and repetition, from ``params.yaml: sem_study``.
"""

import argparse
import json
from pathlib import Path

import yaml

from pipeline.environments import load_envs
from pipeline.sem_study import run_sem_study, sem_settings, sem_table_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=Path, required=True, help="the SEM environment set")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    settings = sem_settings(yaml.safe_load(args.params.read_text()).get("sem_study"))
    envset = load_envs(args.envs)
    rows = run_sem_study(envset, progress=print, **settings)
    print(sem_table_markdown(rows))
    meta = {"settings": settings, "reps": envset.manifest["params"]["reps"],
            "setups": envset.manifest["params"]["setups"],
            "manifest_sha256": envset.manifest_sha256}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, sort_keys=True) + "\n")
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
