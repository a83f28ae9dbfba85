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

from pipeline.config import PRESETS, make_config
from pipeline.errors import ConfigError, lookup
from pipeline.training import ProgressFn, train

# How each preset's hyperparameters were chosen (reference section 1.4).
PRESET_PROVENANCE = {
    "irm_paper": ("IRM paper's search, selected by min(train env 0, train env 1, test)", True),
    "erm_paper": ("IRM paper's 'reasonable' ERM hyperparameters, not searched", False),
    "gray_paper": ("IRM paper's search for the grayscale model, same test-using criterion",
                   True),
}


def check_fresh_seeds(seeds: Sequence[int], used: Sequence[int]) -> list[int]:
    """``seeds`` as a list, refused if any of them was already used to select the config."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"evaluation seeds must be distinct and non-empty (got {seeds})")
    overlap = sorted(set(seeds) & {int(s) for s in used})
    if overlap:
        raise ConfigError(f"evaluation seeds {overlap} were search seeds too; evaluate with "
                          "seeds that no trial used (e.g. 1000..1009), or the selection leaks "
                          "into the reported numbers")
    return seeds


def evaluate_selected(search_out: Path | str, seeds: Sequence[int],
                      envs_dir: str | None = None, progress: ProgressFn | None = None) -> dict:
    """Retrain the configuration a search selected (``best.json``) with fresh seeds."""
    best_path = Path(search_out) / "best.json"
    try:
        best = json.loads(best_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{best_path}: not a finished search's best.json ({exc})") from None
    if best.get("selected", True) is None:
        raise ConfigError(f"{best_path}: the search selected no configuration "
                          f"({best.get('reason')})")
    seeds = check_fresh_seeds(seeds, best["seeds"])
    config = {**best["config"], **({"envs_dir": envs_dir} if envs_dir else {})}
    result = train(make_config(None, **config), seeds, progress=progress).to_dict()
    result["provenance"] = {
        "kind": "selected", "selection": best["selection"],
        "uses_test_data": best["uses_test_data"], "search": best["search"],
        "search_seeds": best["seeds"], "trial_key": best["trial_key"],
        "selection_score": best["score"]}
    return result


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
