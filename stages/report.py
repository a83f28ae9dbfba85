"""DVC stage: the report (report.md + HTML, LaTeX tables, PNG/PDF figures, metrics.json).

Reads the finished evaluations, searches, protocol rows, schedule study, SEM study and PICA
study named by ``params.yaml: study``, ``protocol`` and ``schedule_study``; trains nothing.
The provenance header compares this run's params with ``profiles/paper.yaml`` to say how the
run was scaled down from the full protocols.
"""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.params.protocol import protocol_settings
from pipeline.params.schedule_study import schedule_study_settings, study_fixed
from pipeline.params.study import study_settings
from pipeline.process import run_command
from pipeline.report.build import write_report
from pipeline.report.inputs import load_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--envs-dir", type=Path, default=Path("data/envs"))
    parser.add_argument("--sem", type=Path, default=None, help="the SEM study's result JSON")
    parser.add_argument("--pica", type=Path, default=None, help="the PICA study's result JSON")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--paper", type=Path, default=Path("profiles/paper.yaml"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    study = study_settings(params.get("study"))
    paper = yaml.safe_load(args.paper.read_text()) if args.paper.exists() else None
    protocol = protocol_settings(params["protocol"]) if params.get("protocol") else None
    schedules = (schedule_study_settings(params["schedule_study"])
                 if params.get("schedule_study") else None)
    inputs = load_inputs(study, args.results, args.envs_dir, args.sem, protocol, schedules,
                         args.pica)
    if schedules is not None:  # the caption lists what the study held fixed
        inputs.schedule_fixed = study_fixed(params)
    metrics = write_report(inputs, study, params, paper, args.out)
    print(f"wrote {args.out / 'report.md'} and {args.out / 'report.html'}; headline numbers "
          f"in {args.out / 'metrics.json'} ({len(metrics['accuracy'])} datasets)")


if __name__ == "__main__":
    sys.exit(run_command(main))
