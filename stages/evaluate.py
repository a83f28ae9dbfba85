"""DVC stage: the final evaluation of one configuration on one dataset, with fresh seeds.

Either the configuration a search selected (``--search DIR``, its ``best.json``) or a published
fixed preset (``--preset NAME``), trained with ``params.yaml: evaluate.seeds``, which no search
trial used. Writes the full result (JSON, with provenance) and its accuracy curve (CSV, for
``dvc plots``).
"""

import argparse
import csv
import sys
from pathlib import Path

import yaml

from pipeline.evaluate import curve_rows, evaluate_preset, evaluate_selected
from pipeline.locks import output_lock
from pipeline.outputs import write_json
from pipeline.params.evaluate import evaluation_settings
from pipeline.process import run_command
from pipeline.terminal import print_progress, result_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--search", type=Path, help="a finished search's output directory")
    which.add_argument("--preset", help="a published fixed configuration, e.g. irm_paper")
    parser.add_argument("--envs-dir", type=Path, required=True,
                        help="directory holding the dataset's environments (data/envs)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--curves", type=Path, required=True, help="accuracy curve CSV")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    settings = evaluation_settings(yaml.safe_load(args.params.read_text()).get("evaluate"))
    with output_lock(args.out, "--out"):  # one writer per result file
        envs_dir = str(args.envs_dir)
        if args.search:
            result = evaluate_selected(args.search, settings.seeds, envs_dir, print_progress,
                                       execution=settings.execution, dataset=args.dataset)
        else:
            result = evaluate_preset(args.preset, args.dataset, settings.seeds, envs_dir,
                                     overrides={**settings.preset_set, **settings.execution},
                                     progress=print_progress)
            result["provenance"]["deviations"] = settings.preset_set
        if result["provenance"]["kind"] == "nothing_selected":
            print(f"NOTHING SELECTED by {args.search}: {result['provenance']['reason']}; the "
                  "report shows this row as such", flush=True)
        else:
            print(result_table(result), flush=True)
        write_json(args.out, result, sort_keys=True)
        rows = curve_rows(result)
        args.curves.parent.mkdir(parents=True, exist_ok=True)
        with open(args.curves, "w", newline="") as f:
            fields = list(rows[0]) if rows else ["step", "train_acc", "test_acc"]
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)



if __name__ == "__main__":
    sys.exit(run_command(main))
