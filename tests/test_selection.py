"""Selection rules on synthetic trial records: ties, missing environments, diverged trials."""

from __future__ import annotations

import math

import pytest

from pipeline.errors import ConfigError
from pipeline.selection import SELECTION_RULES, select


def rec(status="ok", **means):
    return {"status": status, "metrics": {k: {"mean": v, "std": 0.0} for k, v in means.items()}}


RECORDS = [
    rec(train0_acc=0.90, train1_acc=0.92, test_acc=0.10, val_acc=0.91, loo_acc=0.30),  # ERM
    rec(train0_acc=0.70, train1_acc=0.71, test_acc=0.66, val_acc=0.70, loo_acc=0.68),  # IRM
    rec(train0_acc=0.50, train1_acc=0.50, test_acc=0.80, val_acc=0.50, loo_acc=0.50),  # lucky
]


def test_each_rule_picks_what_it_promises():
    assert select(RECORDS, "train_domain_val").index == 0
    assert select(RECORDS, "oracle").index == 2
    irm = select(RECORDS, "irm_paper")
    assert irm.index == 1 and irm.score == pytest.approx(0.66)
    assert select(RECORDS, "leave_one_env_out").index == 1


def test_rules_say_whether_they_use_test_data():
    assert select(RECORDS, "train_domain_val").uses_test_data is False
    assert select(RECORDS, "oracle").uses_test_data is True
    assert select(RECORDS, "irm_paper").uses_test_data is True
    assert select(RECORDS, "leave_one_env_out").uses_test_data is False


@pytest.mark.parametrize("rule", sorted(SELECTION_RULES))
def test_ties_go_to_the_earliest_record(rule):
    same = rec(train0_acc=0.7, train1_acc=0.7, test_acc=0.7, val_acc=0.7, loo_acc=0.7)
    assert select([same, dict(same), dict(same)], rule).index == 0


@pytest.mark.parametrize("rule", sorted(SELECTION_RULES))
def test_diverged_and_failed_trials_never_win(rule):
    diverged = rec("diverged", train0_acc=1.0, train1_acc=1.0, test_acc=1.0, val_acc=1.0,
                   loo_acc=1.0)
    nan = rec(train0_acc=math.nan, train1_acc=1.0, test_acc=math.nan, val_acc=math.nan,
              loo_acc=math.nan)
    normal = rec(train0_acc=0.6, train1_acc=0.6, test_acc=0.6, val_acc=0.6, loo_acc=0.6)
    assert select([diverged, nan, normal], rule).index == 2


def test_missing_environments_are_skipped_or_explained():
    no_val = [rec(train0_acc=0.9, train1_acc=0.9, test_acc=0.5)]
    with pytest.raises(ConfigError, match="holdout_fraction"):
        select(no_val, "train_domain_val")
    missing_train1 = rec(train0_acc=0.9, test_acc=0.9)  # not judged on fewer environments
    complete = rec(train0_acc=0.6, train1_acc=0.6, test_acc=0.6)
    assert select([missing_train1, complete], "irm_paper").index == 1
    no_train = rec(test_acc=0.99)
    assert select([no_train, complete], "irm_paper").index == 1
    with pytest.raises(ConfigError, match=">= 3 training environments"):
        select([complete], "leave_one_env_out")


def test_three_training_environments_all_count_for_irm_paper():
    weak_third = rec(train0_acc=0.9, train1_acc=0.9, train2_acc=0.2, test_acc=0.9)
    even = rec(train0_acc=0.6, train1_acc=0.6, train2_acc=0.6, test_acc=0.6)
    assert select([weak_third, even], "irm_paper").index == 1


def test_unknown_rule_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="irm_paper"):
        select(RECORDS, "best_test")
