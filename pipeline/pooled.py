"""Pool train results of one configuration run over disjoint seeds into one result.

With ``data_draw = per_seed`` member ``s`` of a batch equals seed ``s`` run alone, up to float
rounding (tests/test_data_draw.py), so runs over seeds 0..4 and 5..9 of the same
configuration, on the same saved environments, are one 10-seed run spread over time or
machines (a different CPU can round differently: each source's CPU is kept). Pooling refuses
anything that would make that untrue: another configuration, other data (manifest, source,
data seed, draw, pool) or a seed twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import EXECUTION
from pipeline.errors import ConfigError
from pipeline.training import aggregate

# Data fields that name what was trained on; every pooled run must agree on them.
_DATA_KEYS = ("dataset", "manifest_sha256", "source", "reduced", "data_seed", "draw",
              "pool_sha256")
# Config keys that say where and how a run executed, not what it learned: they may differ (the
# data is checked by hash instead, and the precision each run resolved to must agree).
_EXECUTION_KEYS = ("envs_dir", *EXECUTION)


def pool_results(results: Sequence[dict], names: Sequence[str] | None = None) -> dict:
    """One result over every seed of ``results`` (same config and data, disjoint seeds).

    The pooled result keeps the config and data, concatenates seeds, members and draw seeds,
    recomputes the metrics over all members (``training.aggregate``), keeps the runtime and
    version fields every source agrees on, and lists each source's seeds, runtime (machine,
    commit, wall time) and versions under ``pooled_from``; the per-step curves stay in the
    source files.
    """
    names = list(names) if names is not None else [f"result {i}" for i in range(len(results))]
    if len(results) < 2:
        raise ConfigError("pooling needs at least two train results")
    _check_poolable(results, names)
    return _merge(results, names)


def _learned(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _EXECUTION_KEYS}


def _check_poolable(results: Sequence[dict], names: Sequence[str]) -> None:
    first, first_name = results[0], names[0]
    seen: dict[int, str] = {}
    for result, name in zip(results, names, strict=True):
        mine, theirs = _learned(result["config"]), _learned(first["config"])
        if mine != theirs:
            diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            raise ConfigError(f"cannot pool {name} with {first_name}: their configs differ in "
                              f"{', '.join(diff)}")
        if result["runtime"]["dtype"] != first["runtime"]["dtype"]:
            raise ConfigError(f"cannot pool {name} with {first_name}: they ran in "
                              f"{result['runtime']['dtype']} and {first['runtime']['dtype']}")
        for key in _DATA_KEYS:
            if result["data"].get(key) != first["data"].get(key):
                raise ConfigError(f"cannot pool {name} with {first_name}: they trained on "
                                  f"different data ({key}: {result['data'].get(key)!r} vs "
                                  f"{first['data'].get(key)!r})")
        for seed in result["seeds"]:
            if seed in seen:
                raise ConfigError(f"cannot pool: seed {seed} is in both {seen[seed]} and {name}")
            seen[seed] = name


def _merge(results: Sequence[dict], names: Sequence[str]) -> dict:
    first = results[0]
    members = [m for r in results for m in r["members"]]
    common = {field: {k: v for k, v in first[field].items()
                      if all(r[field].get(k) == v for r in results)}
              for field in ("runtime", "versions")}
    # a source whose members all diverged stops early; the pooled run ran as far as the longest
    common["runtime"]["steps_run"] = max(r["runtime"]["steps_run"] for r in results)
    data = dict(first["data"])
    if "draw_seeds" in data:
        data["draw_seeds"] = [d for r in results for d in r["data"]["draw_seeds"]]
    return {
        "config": first["config"],  # the first source's execution keys; each is in pooled_from
        "seeds": [s for r in results for s in r["seeds"]],
        "metrics": aggregate(members),
        "members": members,
        "data": data,
        "runtime": common["runtime"],  # what every source agrees on (dtype, ...)
        "versions": common["versions"],
        "pooled_from": [{"name": name, "seeds": r["seeds"], "config": r["config"],
                         "runtime": r["runtime"], "versions": r["versions"]}
                        for r, name in zip(results, names, strict=True)],
    }
