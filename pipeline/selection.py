"""Model-selection rules: which trial (configuration) a search reports.

Every rule reads the aggregated metrics of each trial (means over its seeds) and returns the
best trial with the score it was chosen by. The rule is a parameter of every search and is
written into every output, because the published numbers depend on it: the IRM paper selected
on ``min(train env 0, train env 1, test)`` (test data!), DomainBed's test-domain "oracle" on the
test environment, and training-domain validation, the honest default, on held-out training data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.errors import ConfigError, lookup

_TRAIN_ENV = re.compile(r"^train\d+_acc$")


@dataclass(frozen=True)
class Selection:
    rule: str
    index: int  # position of the chosen trial in the records given
    score: float
    uses_test_data: bool


def _mean(record: dict, key: str) -> float | None:
    stat = record.get("metrics", {}).get(key)
    value = stat.get("mean") if isinstance(stat, dict) else stat
    return None if value is None or not math.isfinite(value) else float(value)


def train_domain_val(record: dict, train_keys: list[str]) -> float | None:
    """Accuracy on the held-out part of the training environments (needs holdout_fraction)."""
    return _mean(record, "val_acc")


def oracle(record: dict, train_keys: list[str]) -> float | None:
    """Test-environment accuracy (DomainBed's test-domain validation): an upper bound."""
    return _mean(record, "test_acc")


def irm_paper(record: dict, train_keys: list[str]) -> float | None:
    """The IRM paper's criterion: the worst of every training environment and the test one.

    ``train_keys`` are the training environments of all records, so a record that lacks one
    is skipped rather than judged on fewer environments.
    """
    values = [_mean(record, k) for k in [*train_keys, "test_acc"]]
    if not train_keys or any(v is None for v in values):
        return None
    return min(values)


def leave_one_env_out(record: dict, train_keys: list[str]) -> float | None:
    """DomainBed's leave-one-domain-out: accuracy on each training env, retrained without it.

    ``loo_acc`` is the mean over the left-out environments; it needs >= 3 training ones.
    """
    return _mean(record, "loo_acc")


@dataclass(frozen=True)
class Rule:
    score: Callable[[dict, list[str]], float | None]
    uses_test_data: bool
    needs: str


SELECTION_RULES: dict[str, Rule] = {
    "train_domain_val": Rule(train_domain_val, False, "val_acc (set holdout_fraction > 0)"),
    "oracle": Rule(oracle, True, "test_acc"),
    "irm_paper": Rule(irm_paper, True, "train<i>_acc for every training env and test_acc"),
    "leave_one_env_out": Rule(leave_one_env_out, False,
                              "loo_acc (a search with >= 3 training environments)"),
}


def train_env_keys(records: Sequence[dict]) -> list[str]:
    """The training-environment accuracies (``train0_acc``, ...) found in any record."""
    return sorted({k for r in records for k in r.get("metrics", {}) if _TRAIN_ENV.match(k)})


def select(records: Sequence[dict], rule: str) -> Selection:
    """The best of ``records`` by ``rule``; ties go to the earliest record (stable, seeded order).

    Records whose status is not ``ok`` (diverged, failed) never win. A record that lacks the
    metrics a rule needs is skipped; if none has them the error says what is missing.
    """
    chosen = lookup(SELECTION_RULES, rule, "selection rule")
    train_keys = train_env_keys(records)
    best: tuple[float, int] | None = None
    for i, record in enumerate(records):
        if record.get("status", "ok") != "ok":
            continue
        score = chosen.score(record, train_keys)
        if score is not None and (best is None or score > best[0]):
            best = (score, i)
    if best is None:
        raise ConfigError(f"selection rule {rule!r}: no finished trial has {chosen.needs}")
    return Selection(rule, best[1], best[0], chosen.uses_test_data)
