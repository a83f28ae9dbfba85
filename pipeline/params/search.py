"""``params.yaml: search``: the settings of every search (the DVC stage's and the CLI's), and
where the spaces come from (``search_spaces``)."""

from __future__ import annotations

from pipeline.config import coerce
from pipeline.errors import ConfigError, as_number
from pipeline.params.common import checked_section
from pipeline.search.spec import SearchSpec

PARAM_KEYS = {"sampler": "sampler", "trials": "trials", "seeds": "seeds", "seed": "search_seed",
              "selection": "selection", "set": "fixed",
              "envs_dir": "envs_dir", "address": "address", "storage": "storage",
              "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial",
              "max_concurrent": "max_concurrent", "max_failures": "max_failures",
              "report_every": "report_every", "asha_grace": "asha_grace",
              "asha_reduction": "asha_reduction", "share_prefix": "share_prefix",
              "checkpoint_every": "checkpoint_every", "keep_checkpoints": "keep_checkpoints"}


# Numbers in the search section, checked (and YAML strings like "8" converted) up front, so a
# wrong type fails with the key's name instead of deep inside a comparison.
NUMERIC_FIELDS = {"trials": int, "search_seed": int, "cpus_per_trial": float,
                  "gpus_per_trial": float, "max_concurrent": int, "max_failures": int,
                  "report_every": int, "asha_grace": int, "asha_reduction": float,
                  "checkpoint_every": int}


def seeds_from(value) -> list[int]:
    """``3`` -> [0, 1, 2]; a list is taken as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return list(range(value))
    if isinstance(value, list | tuple) and all(isinstance(s, int) for s in value):
        return list(value)
    raise ConfigError(f"seeds = {value!r}: give a count (3 = seeds 0..2) or a list of seeds")


def spec_from_params(section: dict | None, **overrides) -> SearchSpec:
    """A search from params.yaml's ``search`` section; ``overrides`` (not None) win.

    The spaces come from params.yaml's ``search_spaces`` (``spaces=``): kept out of ``search``
    so that DVC re-runs a method's searches only when that method's space changes. The DVC
    stage and the CLI both come through here, so they run the same search.
    """
    section = checked_section("search", section, PARAM_KEYS)
    values = {PARAM_KEYS[k]: v for k, v in section.items() if v is not None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "seeds" in values:
        values["seeds"] = seeds_from(values["seeds"])
    names = {field: key for key, field in PARAM_KEYS.items()}
    for field_name, kind in NUMERIC_FIELDS.items():
        if values.get(field_name) is not None:
            values[field_name] = as_number(names[field_name], values[field_name], kind)
    for field_name in ("sampler", "selection"):
        if field_name in values and not isinstance(values[field_name], str):
            raise ConfigError(f"{field_name} = {values[field_name]!r} must be a name")
    if "fixed" in values:
        if not isinstance(values["fixed"], dict):
            raise ConfigError(f"set = {values['fixed']!r} must be a mapping of config keys "
                              "to values, e.g. {dtype: bf16}")
        values["fixed"] = {k: coerce(k, v) for k, v in values["fixed"].items()}
    values.setdefault("spaces", {})
    missing = [k for k in ("dataset", "method", "out") if k not in values]
    if missing:
        raise ConfigError(f"a search needs {', '.join(missing)}")
    return SearchSpec(**values)
