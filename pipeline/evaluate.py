"""Final evaluation: a selected or published configuration retrained with fresh seeds.

A search's numbers are biased upwards by the selection itself (most of all under a rule that
looks at test data), so the numbers to report come from retraining the selected configuration
with evaluation seeds that no trial of the search used. Published fixed configurations (the
``irm_paper`` and ``erm_paper`` presets) are evaluated the same way, with the same seeds.
Every result carries its provenance: where the configuration came from and how it was chosen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import EXECUTION, PRESET_PROVENANCE, PRESETS, make_config
from pipeline.errors import ConfigError, lookup
from pipeline.search.finished import read_best
from pipeline.seeds import check_seeds
from pipeline.training import ProgressFn, train


def check_fresh_seeds(seeds: Sequence[int], used: Sequence[int]) -> list[int]:
    """``seeds`` as a list, refused if any of them was already used to select the config."""
    seeds = check_seeds(seeds, "evaluation seeds")
    overlap = sorted(set(seeds) & {int(s) for s in used})
    if overlap:
        raise ConfigError(f"evaluation seeds {overlap} were search seeds too; evaluate with "
                          "seeds that no trial used (e.g. 1000..1009), or the selection leaks "
                          "into the reported numbers")
    return seeds


def evaluate_selected(search_out: Path | str, seeds: Sequence[int],
                      envs_dir: str | None = None, progress: ProgressFn | None = None,
                      execution: dict | None = None, dataset: str | None = None) -> dict:
    """Retrain the configuration a search selected (``best.json``) with fresh seeds.

    ``execution`` (EXECUTION_KEYS only: device, threads, ...) may differ from the search's;
    ``dataset``, if given, must be the one the search ran on (checked before any training).
    """
    execution = dict(execution or {})
    if set(execution) - set(EXECUTION_KEYS):
        raise ConfigError(f"execution keys must be among {', '.join(EXECUTION_KEYS)} "
                          f"(got {sorted(execution)})")
    best = read_best(search_out, dataset)  # checked to be this search's (on dataset)
    seeds = check_fresh_seeds(seeds, best["seeds"])
    if best.get("selected", True) is None:
        return nothing_selected(best, seeds, envs_dir)
    config = {**best["config"], **execution, **({"envs_dir": envs_dir} if envs_dir else {})}
    result = train(make_config(None, **config), seeds, progress=progress).to_dict()
    result["provenance"] = {
        "kind": "selected", "selection": best["selection"],
        "uses_test_data": best["uses_test_data"], "search": best["search"],
        "search_seeds": best["seeds"], "trial_key": best["trial_key"],
        "selection_score": best["score"], "execution": execution,
        "search_trials": _search_trials(Path(search_out))}
    return result


def _search_trials(search_out: Path) -> int | None:
    """How many trials the search ran (its search.json), for comparisons with published
    searches; None when the file is not there."""
    try:
        return json.loads((search_out / "search.json").read_text())["trials"]
    except (OSError, ValueError, KeyError):
        return None


def nothing_selected(best: dict, seeds: list[int], envs_dir: str | None) -> dict:
    """The result of a search that selected nothing (every trial diverged or failed): a row
    that says so, so one failed search does not stop the study's other evaluations."""
    manifest_path = Path(envs_dir or "data/envs") / best["dataset"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return {"config": {"dataset": best["dataset"], "method": best["method"]}, "seeds": seeds,
            "members": [], "metrics": {}, "curves": None,
            "data": {"dataset": best["dataset"], "source": manifest.get("source"),
                     "reduced": manifest.get("reduced")},
            "provenance": {"kind": "nothing_selected", "selection": best["selection"],
                           "uses_test_data": best["uses_test_data"], "search": best["search"],
                           "search_seeds": best["seeds"], "reason": best.get("reason")}}


def evaluate_preset(preset: str, dataset: str, seeds: Sequence[int],
                    envs_dir: str | None = None, overrides: dict | None = None,
                    progress: ProgressFn | None = None) -> dict:
    """Train a published fixed configuration with the evaluation seeds."""
    lookup(PRESETS, preset, "preset")
    values = {"dataset": dataset, **(overrides or {})}
    if envs_dir:
        values["envs_dir"] = envs_dir
    result = train(make_config(preset, **values), check_fresh_seeds(seeds, []),
                   progress=progress).to_dict()
    how, uses_test = PRESET_PROVENANCE[preset]
    result["provenance"] = {"kind": "preset", "preset": preset, "selection": how,
                            "uses_test_data": uses_test}
    return result


# Keys that change how a run executes or what it measures, never what it learns: they may be
# set for every evaluation, selected configurations included, without changing the selection.
# The config's execution keys less dtype (bf16 changes the numbers: a recorded deviation, set
# per preset or protocol), plus eval_every (what is measured, not what is learned).
EXECUTION_KEYS = (*(k for k in EXECUTION if k != "dtype"), "eval_every")


def curve_rows(result: dict) -> list[dict]:
    """Accuracy (%) at each evaluation step, mean over the seeds that did not diverge.

    The rows of ``dvc plots``: train (full-data accuracy, mean of the training environments)
    and every test environment, at the steps where test accuracy was measured.
    """
    curves = result["curves"]
    if not curves:  # nothing was trained (the search selected nothing)
        return []
    alive = [i for i, m in enumerate(result["members"]) if m["status"] == "ok"]
    train_keys = per_step_train_keys(curves)
    test_keys = sorted(k for k in curves if k.endswith("_acc") and k not in train_keys)
    rows = []
    for j, step in enumerate(curves["eval_step"]):
        row = {"step": step}
        row["train_acc"] = _mean_pct([curves[k][i][step] for k in train_keys for i in alive])
        for key in test_keys:
            row[key] = _mean_pct([curves[key][i][j] for i in alive])
        rows.append(row)
    return rows


def per_step_train_keys(curves: dict) -> list[str]:
    """The training environments' per-step accuracy curves (not held-out ``NAME_val`` ones,
    which are measured at evaluation steps only)."""
    return sorted(k for k in curves if k.startswith("train") and k.endswith("_acc")
                  and not k.endswith("_val_acc") and len(curves[k][0]) == len(curves["step"]))


def _mean_pct(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(100 * sum(values) / len(values), 4) if values else None
