"""``params.yaml: protocol``: the protocol table's datasets, rows, preset, seeds and changes."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import PRESETS, coerce, make_config
from pipeline.errors import ConfigError, lookup, unknown_name_message
from pipeline.evaluate import EXECUTION_KEYS
from pipeline.methods import METHODS
from pipeline.params.common import checked_section, mapping_param, name_list, seed_list

PROTOCOL_KEYS = ("datasets", "rows", "preset", "seeds", "row_set", "execution")
# What a row may not change: that would no longer be the preset's protocol.
ROW_FIXED = ("dataset", "envs_dir", "seeds")


@dataclass(frozen=True)
class ProtocolSettings:
    datasets: list[str]
    rows: list[str]
    preset: str
    seeds: list[int]
    row_set: dict[str, dict]  # row -> its changes to the preset (method defaults to the row)
    execution: dict  # how every row executes (dtype here is a recorded deviation)

    def row_changes(self, row: str) -> dict:
        """The row's changes to the preset, its method made explicit."""
        lookup({r: None for r in dict.fromkeys([*self.rows, *self.row_set])}, row,
               "protocol row")
        return {"method": row, **self.row_set.get(row, {})}


def protocol_settings(section: dict | None) -> ProtocolSettings:
    """Validate ``params.yaml: protocol``; every error names the key and the valid choices."""
    section = checked_section("protocol", section, PROTOCOL_KEYS)
    datasets = name_list("protocol.datasets", section.get("datasets", []))
    rows = name_list("protocol.rows", section.get("rows", []))
    preset = str(section.get("preset", "irm_paper"))
    lookup(PRESETS, preset, "protocol.preset")
    seeds = seed_list("protocol.seeds", section.get("seeds", list(range(2000, 2010))))
    row_set = mapping_param("protocol.row_set", section.get("row_set"))
    for row, changes in row_set.items():  # rows not run now may be defined too
        changes = mapping_param(f"protocol.row_set.{row}", changes)
        for key in changes:
            if key in ROW_FIXED:
                raise ConfigError(f"protocol.row_set.{row}.{key}: a row may not change its "
                                  f"{key}; the protocol fixes it")
        row_set[row] = {k: coerce(k, v) for k, v in changes.items()}
        _check_own_hyperparameters(row, {"method": row, **row_set[row]})
    execution = {k: coerce(k, v) for k, v in
                 mapping_param("protocol.execution", section.get("execution")).items()}
    for key in execution:
        if key not in (*EXECUTION_KEYS, "dtype"):
            raise ConfigError(unknown_name_message("key in protocol.execution", key,
                                                   (*EXECUTION_KEYS, "dtype")))
    settings = ProtocolSettings(datasets, rows, preset, seeds, row_set, execution)
    for row in dict.fromkeys([*rows, *row_set]):  # every row is valid before any training
        try:
            make_config(preset, **settings.row_changes(row), **execution)
        except ConfigError as exc:
            raise ConfigError(f"protocol row {row!r}: {exc}") from None
    return settings


def _check_own_hyperparameters(row: str, changes: dict) -> None:
    """A row may set its own method's hyperparameters, not another method's (a silent no-op)."""
    method = METHODS.get(changes["method"])
    if method is None:
        return  # make_config names the unknown method
    for name, other in METHODS.items():
        for key in other.hparams:
            if key in changes and key not in method.hparams:
                raise ConfigError(f"protocol.row_set.{row}.{key} is not a hyperparameter of "
                                  f"{changes['method']!r} (it belongs to {name!r}); it would "
                                  "change nothing")


