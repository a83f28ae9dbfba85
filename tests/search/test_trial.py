"""One trial without Ray: done records, leave-one-environment-out, rows per run length."""

from __future__ import annotations

import json

import pytest

from pipeline.config import make_config
from pipeline.environments import load_envs, make_envs
from pipeline.environments.store import save_envset
from pipeline.search.trial import (
    TrialSetup,
    read_record,
    recorded_config,
    rerun,
    rows_of,
    train_trial,
    without_env,
    write_record,
)
from pipeline.training import train


@pytest.fixture(scope="module")
def three_env_dir(tmp_path_factory):
    """Colored Fashion-MNIST with three training environments (flips 0.1, 0.2, 0.3), sliced."""
    root = tmp_path_factory.mktemp("three_envs")
    full = load_envs(make_envs("colored_fashion_mnist", seed=0, out_dir=root / "full",
                               params={"train_flips": [0.1, 0.2, 0.3]}))
    save_envset(full.head(200).envs, {**full.head(200).manifest, "reduced": True, "head": 200},
                root / "envs" / "colored_fashion_mnist")
    return root / "envs"


def _setup(envs_dir, **overrides) -> TrialSetup:
    base = make_config(None, dataset="colored_fashion_mnist", envs_dir=str(envs_dir),
                       method="irm", hidden_dim=8, steps=12, anneal_iters=4, eval_every=5,
                       threads=1).to_dict()
    envs = load_envs(envs_dir / "colored_fashion_mnist")
    values = {"base": base, "seeds": (0, 1), "record_at": (6, 12), "selection": "oracle",
              "records_dir": str(envs_dir.parent / "records"), "search_hash": "test",
              "data_sha256": envs.manifest_sha256}
    return TrialSetup(**{**values, **overrides})


def test_leave_one_env_out_scores_each_env_with_a_model_that_never_saw_it(three_env_dir):
    setup = _setup(three_env_dir, selection="leave_one_env_out", leave_one_out=True)
    record = train_trial(setup, {"penalty_weight": 50.0})
    result = record["result"]
    assert result["leave_one_out_envs"] == ["train0", "train1", "train2"]
    envs = load_envs(three_env_dir / "colored_fashion_mnist")
    cfg = setup.config({"penalty_weight": 50.0})
    by_hand = []
    for name in ["train0", "train1", "train2"]:
        held_out = train(cfg, [0, 1], envset=without_env(envs, name))
        by_hand.append([m["metrics"][f"{name}_out_acc"] for m in held_out.members])
    per_seed = [sum(accs[i] for accs in by_hand) / 3 for i in range(2)]
    assert result["metrics"]["loo_acc"]["mean"] == pytest.approx(sum(per_seed) / 2, abs=1e-12)
    assert "loo_acc" in result["at_steps"]["6"]["metrics"]


def test_done_records_round_trip_and_give_one_row_per_run_length(three_env_dir):
    setup = _setup(three_env_dir)
    record = train_trial(setup, {"penalty_weight": 50.0})
    write_record(setup.records_dir, record)
    stored = read_record(setup.records_dir, setup.key({"penalty_weight": 50.0}))
    assert stored == json.loads(json.dumps(record))  # JSON: tuples come back as lists
    assert read_record(setup.records_dir, setup.key({"penalty_weight": 60.0})) is None
    rows = rows_of(record)
    assert [r["steps"] for r in rows] == [6, 12]
    assert all(r["status"] == "ok" and r["n_diverged"] == 0 for r in rows)
    assert rows[0]["metrics"] != rows[1]["metrics"]


def test_trial_key_depends_on_what_sets_the_numbers_only(three_env_dir, tmp_path):
    setup = _setup(three_env_dir)
    key = setup.key({"penalty_weight": 50.0})
    assert setup.key({"penalty_weight": 50.0}) == key
    assert _setup(three_env_dir, seeds=(0, 2)).key({"penalty_weight": 50.0}) != key
    assert _setup(three_env_dir, record_at=(12,)).key({"penalty_weight": 50.0}) != key
    moved = {**setup.base, "envs_dir": str(tmp_path)}  # same data elsewhere: same work
    assert _setup(three_env_dir, base=moved).key({"penalty_weight": 50.0}) == key


def test_a_rerun_repeats_what_auto_resolved_not_a_new_decision(three_env_dir):
    setup = _setup(three_env_dir, base={**_setup(three_env_dir).base, "dtype": "auto",
                                        "formulation": "auto"})
    record = json.loads(json.dumps(train_trial(setup, {"penalty_weight": 50.0})))
    ran, formulation = (record["result"]["runtime"][k] for k in ("dtype", "formulation"))
    cfg, _ = recorded_config(record)
    assert (cfg.dtype, cfg.formulation) == (ran, formulation)
    # a record that says the trial ran in the other dtype is repeated in that dtype
    other = "fp32" if ran == "bf16" else "bf16"
    record["result"]["runtime"]["dtype"] = other
    assert recorded_config(record)[0].dtype == other
    record["result"]["runtime"]["dtype"] = ran
    again = rerun(record)
    assert again.runtime["dtype"] == ran
    assert again.members == record["result"]["members"]
