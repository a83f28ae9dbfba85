"""Final evaluation: fresh seeds only, provenance on every result."""

from __future__ import annotations

import json

import pytest

from pipeline.config import PRESET_PROVENANCE, PRESETS, make_config
from pipeline.errors import ConfigError
from pipeline.evaluate import curve_rows, evaluate_preset, evaluate_selected
from pipeline.params.evaluate import evaluation_settings
from pipeline.report.tables import accuracy_markdown
from pipeline.training import train


def _best(tmp_path, tiny_envs_dir, **overrides):
    config = make_config(None, dataset="colored_fashion_mnist", envs_dir=str(tiny_envs_dir),
                         method="irm", hidden_dim=8, steps=12, anneal_iters=4,
                         penalty_weight=50.0, threads=1).to_dict()
    best = {"selection": "irm_paper", "uses_test_data": True, "score": 0.6, "search": "abc",
            "trial_key": "k", "seeds": [0, 1, 2], "config": config, **overrides}
    (tmp_path / "best.json").write_text(json.dumps(best))
    # the search that wrote it (the evaluation checks that best.json is this search's)
    (tmp_path / "search.json").write_text(json.dumps({"hash": "abc", "search": {
        "dataset": "colored_fashion_mnist"}}))
    return config


def test_selected_config_is_retrained_with_the_given_seeds(tmp_path, tiny_envs_dir):
    config = _best(tmp_path, tiny_envs_dir)
    result = evaluate_selected(tmp_path, [1000, 1001])
    assert result["seeds"] == [1000, 1001]
    assert result["provenance"] == {"kind": "selected", "selection": "irm_paper",
                                    "uses_test_data": True, "search": "abc",
                                    "search_seeds": [0, 1, 2], "trial_key": "k",
                                    "selection_score": 0.6, "execution": {},
                                    "search_trials": None}
    direct = train(make_config(None, **config), [1000, 1001]).to_dict()
    assert result["members"] == direct["members"]  # the same config, nothing else changed


def test_search_seeds_are_refused_for_evaluation(tmp_path, tiny_envs_dir):
    _best(tmp_path, tiny_envs_dir)
    with pytest.raises(ConfigError, match=r"evaluation seeds \[2\] were search seeds"):
        evaluate_selected(tmp_path, [2, 1000])


def test_a_search_that_selected_nothing_gives_a_row_that_says_why(tmp_path, tiny_envs_dir):
    _best(tmp_path, tiny_envs_dir, selected=None, reason="no trial finished without diverging",
          dataset="colored_fashion_mnist", method="irm", config=None)
    result = evaluate_selected(tmp_path, [1000], envs_dir=str(tiny_envs_dir))
    assert result["provenance"]["kind"] == "nothing_selected"
    assert result["members"] == [] and result["metrics"] == {} and curve_rows(result) == []
    assert result["data"]["reduced"] is True  # read from the environments' manifest
    table = accuracy_markdown([result])
    row = [line for line in table.splitlines() if "irm selected by irm_paper" in line][0]
    assert row.count("—") >= 4  # no train or test number, never a made-up one
    assert "NOTHING SELECTED (no trial finished without diverging)" in table
    with pytest.raises(ConfigError, match="were search seeds"):
        evaluate_selected(tmp_path, [0])
    with pytest.raises(ConfigError, match="not a finished search"):
        evaluate_selected(tmp_path / "missing", [1000])


def test_every_preset_says_how_it_was_chosen(tiny_envs_dir):
    assert set(PRESET_PROVENANCE) == set(PRESETS)
    result = evaluate_preset("erm_paper", "colored_fashion_mnist", [1000],
                             envs_dir=str(tiny_envs_dir), overrides={"steps": 5, "threads": 1})
    assert result["provenance"]["kind"] == "preset"
    assert result["provenance"]["uses_test_data"] is False
    assert result["config"]["hidden_dim"] == PRESETS["erm_paper"]["hidden_dim"]


def test_execution_settings_change_nothing_learned(tmp_path, tiny_envs_dir):
    _best(tmp_path, tiny_envs_dir)
    plain = evaluate_selected(tmp_path, [1000])
    measured_more = evaluate_selected(tmp_path, [1000], execution={"eval_every": 1})
    assert plain["members"] == measured_more["members"]
    assert len(measured_more["curves"]["eval_step"]) > len(plain["curves"]["eval_step"])
    assert measured_more["provenance"]["execution"] == {"eval_every": 1}
    with pytest.raises(ConfigError, match="execution keys"):
        evaluate_selected(tmp_path, [1000], execution={"lr": 0.1})


def test_curve_rows_average_the_seeds_at_evaluation_steps(tmp_path, tiny_envs_dir):
    _best(tmp_path, tiny_envs_dir)
    result = evaluate_selected(tmp_path, [1000, 1001], execution={"eval_every": 2})
    rows = curve_rows(result)
    curves = result["curves"]
    assert [r["step"] for r in rows] == curves["eval_step"]
    last = rows[-1]
    assert last["test_acc"] == pytest.approx(100 * result["metrics"]["test_acc"]["mean"], abs=1e-3)
    step = rows[1]["step"]
    expected = [curves[k][i][step] for k in ("train0_acc", "train1_acc") for i in (0, 1)]
    assert rows[1]["train_acc"] == pytest.approx(100 * sum(expected) / 4, abs=1e-3)


@pytest.mark.parametrize("section, needle", [
    ({"seed": [1000]}, "seed"),
    ({"seeds": 3}, "evaluate.seeds"),
    ({"seeds": [1000, 1000]}, "distinct"),
    ({"execution": {"lr": 0.1}}, "lr"),
    ({"execution": {"threads": "many"}}, "threads"),
    ({"preset_set": {"dtype": "fp16"}}, "dtype"),
    ({"preset_set": {"stepz": 3}}, "stepz"),
    ({"preset_set": {"method": "vrex"}}, "preset_set.method"),
    ({"preset_set": {"threads": 1}, "execution": {"threads": 2}}, "threads.*one of them"),
])
def test_bad_evaluate_settings_name_the_key(section, needle):
    with pytest.raises(ConfigError, match=needle):
        evaluation_settings(section)


def test_evaluate_settings_defaults_and_coercion():
    settings = evaluation_settings({"seeds": [7, 8], "execution": {"threads": "2"},
                                    "preset_set": {"dtype": "bf16"}})
    assert settings.seeds == [7, 8]
    assert settings.execution == {"threads": 2}
    assert settings.preset_set == {"dtype": "bf16"}
