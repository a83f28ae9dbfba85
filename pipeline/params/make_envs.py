"""``params.yaml: make_envs``: the data seed and each dataset's parameters."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.environments import DATASETS, resolve_dataset_params
from pipeline.errors import as_number, check_range, lookup
from pipeline.params.common import checked_section, mapping_param

MAKE_ENVS_KEYS = ("seed", "datasets")


@dataclass(frozen=True)
class MakeEnvsSettings:
    seed: int  # the data seed: every run shares these environments
    datasets: dict[str, dict]  # dataset -> its parameters as params.yaml sets them


def make_envs_settings(section: dict | None) -> MakeEnvsSettings:
    """Validate ``params.yaml: make_envs``: the seed, and every dataset's name and parameter
    names against the registry (values are checked by the dataset's builder)."""
    section = checked_section("make_envs", section, MAKE_ENVS_KEYS)
    seed = as_number("make_envs.seed", section.get("seed", 0), int)
    check_range("make_envs.seed", seed, 0)
    datasets = mapping_param("make_envs.datasets", section.get("datasets"))
    for name, overrides in datasets.items():
        lookup(DATASETS, name, "dataset in make_envs.datasets")
        datasets[name] = mapping_param(f"make_envs.datasets.{name}", overrides)
        resolve_dataset_params(name, datasets[name])
    return MakeEnvsSettings(seed, datasets)
