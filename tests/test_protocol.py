"""The protocol table's rows: settings and one row trained on real data (the tables:
tests/report/test_tables.py)."""

from __future__ import annotations

import copy

import pytest

from pipeline.config import PRESETS
from pipeline.errors import ConfigError
from pipeline.params.protocol import protocol_settings
from pipeline.protocol import evaluate_protocol_row

SECTION = {"datasets": ["colored_fashion_mnist"], "rows": ["erm", "irm", "vrex", "erm_lenet"],
           "preset": "irm_paper", "seeds": [0, 1],
           "row_set": {"vrex": {"vrex_penalty": "squared_difference"},
                       "erm_lenet": {"method": "erm", "model": "lenet", "hidden_dim": 8}},
           "execution": {"dtype": "fp32", "eval_every": 50}}


def test_a_row_is_the_preset_plus_its_changes_with_the_method_explicit():
    settings = protocol_settings(SECTION)
    assert settings.row_changes("irm") == {"method": "irm"}
    assert settings.row_changes("vrex") == {"method": "vrex",
                                            "vrex_penalty": "squared_difference"}
    assert settings.row_changes("erm_lenet")["model"] == "lenet"
    with pytest.raises(ConfigError, match="protocol row"):
        settings.row_changes("fishrr")


@pytest.mark.parametrize("change,message", [
    ({"rowz": []}, "rowz"),
    ({"rows": ["erm", "nosuchmethod"]}, "nosuchmethod"),
    ({"row_set": {**SECTION["row_set"], "vrexx": {}}}, "vrexx"),  # a typo: no such method
    ({"row_set": {**SECTION["row_set"], "irm": {"dataset": "sem"}}}, "dataset"),
    ({"row_set": {**SECTION["row_set"], "irm": {"andmask_tau": 0.5}}}, "not a hyperparameter"),
    ({"rows": ["andmask"], "row_set": {"andmask": {"andmask_tau": 2.0}}}, "andmask_tau"),
    ({"preset": "irm_papr"}, "irm_papr"),
    ({"execution": {"lr": 0.1}}, "lr"),
    ({"seeds": [0, 0]}, "distinct"),
])
def test_bad_protocol_settings_name_the_key(change, message):
    section = {**copy.deepcopy(SECTION), **copy.deepcopy(change)}
    with pytest.raises(ConfigError, match=message):
        protocol_settings(section)


def test_both_profiles_protocol_sections_are_valid():
    import yaml

    for path in ("params.yaml", "profiles/paper.yaml"):
        settings = protocol_settings(yaml.safe_load(open(path))["protocol"])
        assert {"erm", "irm", "vrex", "fishr", "andmask", "groupdro", "ibirm",
                "coral"} <= set(settings.rows)


@pytest.fixture(scope="module")
def protocol_results(tiny_envs_dir):
    section = copy.deepcopy(SECTION)
    for row in section["rows"]:  # the preset's 501 steps are too long for a test
        section["row_set"].setdefault(row, {})["steps"] = 3
    settings = protocol_settings(section)
    return settings, [evaluate_protocol_row(settings, row, "colored_fashion_mnist",
                                            str(tiny_envs_dir)) for row in ("erm", "vrex")]


def test_a_row_trains_the_preset_with_its_changes_and_records_them(protocol_results):
    _, (erm, vrex) = protocol_results
    for key in ("hidden_dim", "lr", "l2_weight", "anneal_iters", "penalty_weight"):
        assert vrex["config"][key] == PRESETS["irm_paper"][key]
    assert vrex["config"]["vrex_penalty"] == "squared_difference"
    assert vrex["config"]["steps"] == 3
    assert vrex["provenance"]["kind"] == "protocol"
    assert vrex["provenance"]["uses_test_data"] is True
    assert vrex["provenance"]["changes"]["method"] == "vrex"
    assert erm["seeds"] == [0, 1]
    assert "test_gray_acc" in erm["metrics"]
