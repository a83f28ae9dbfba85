"""The protocol table: every method with IRM's published hyperparameters (Fishr's protocol).

Fishr's Colored MNIST script (alexrame/fishr@7b8fdf1, ``coloredmnist/train_coloredmnist.py``)
re-ran ERM, IRM, V-REx and Fishr with the
IRM paper's tuned hyperparameters (the ``irm_paper`` preset) and 10 seeds, and reported train,
test and grayscale-test accuracy. This module runs that protocol for every method in the
registry: a row is the preset plus the row's changes (its method, the method's own
hyperparameters, a model or augmentation), all recorded in the result. The preset was selected
by the IRM paper with test data, so every row says it uses test data. The table itself and
Fishr's published rows are the report's (``pipeline.report.tables``, ``pipeline.report.published``).
"""

from __future__ import annotations

from pipeline.config import PRESET_PROVENANCE, PRESETS, make_config
from pipeline.params.protocol import ProtocolSettings
from pipeline.training import ProgressFn, train


def evaluate_protocol_row(settings: ProtocolSettings, row: str, dataset: str,
                          envs_dir: str | None = None,
                          progress: ProgressFn | None = None) -> dict:
    """Train one row of the protocol table on one dataset with the protocol's seeds."""
    changes = settings.row_changes(row)
    values = {**changes, **settings.execution, "dataset": dataset,
              **({"envs_dir": envs_dir} if envs_dir else {})}
    result = train(make_config(settings.preset, **values), settings.seeds,
                   progress=progress).to_dict()
    how, uses_test = PRESET_PROVENANCE[settings.preset]
    preset = PRESETS[settings.preset]
    result["provenance"] = {
        "kind": "protocol", "row": row, "preset": settings.preset, "selection": how,
        "uses_test_data": uses_test, "changes": changes,
        "deviations": {k: v for k, v in settings.execution.items()
                       if k == "dtype" and v != "fp32"},
        "preset_values": {k: v for k, v in preset.items() if k != "method"}}
    return result

