"""DVC stage: one row of the protocol table on one dataset.

The row is the protocol's preset (``params.yaml: protocol.preset``, IRM's published
hyperparameters) with the row's changes (``protocol.row_set``: its method and the method's own
hyperparameters), trained with ``protocol.seeds`` (Fishr's protocol, alexrame/fishr@7b8fdf1:
``coloredmnist/train_coloredmnist.py``).
Writes the full result (JSON, with provenance) and prints its accuracy table.
"""

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.locks import output_lock
from pipeline.outputs import write_json
from pipeline.params.protocol import protocol_settings
from pipeline.process import run_command
from pipeline.protocol import evaluate_protocol_row
from pipeline.terminal import print_progress, result_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--row", required=True, help="a name in protocol.rows, e.g. fishr")
    parser.add_argument("--envs-dir", type=Path, required=True,
                        help="directory holding the dataset's environments (data/envs)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    settings = protocol_settings(yaml.safe_load(args.params.read_text()).get("protocol"))
    with output_lock(args.out, "--out"):  # one writer per result file
        result = evaluate_protocol_row(settings, args.row, args.dataset, str(args.envs_dir),
                                       print_progress)
        print(result_table(result), flush=True)
        write_json(args.out, result, sort_keys=True)


if __name__ == "__main__":
    sys.exit(run_command(main))
