"""dvc.yaml declares exactly what each stage runs, and both profiles are valid study params."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.dvc_stages.import_graph import ROOT, import_closure

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())


def stage_of(name: str) -> dict:
    stage = DVC_YAML["stages"][name]
    return stage.get("do", stage)


def code_deps(stage: dict) -> set[Path]:
    """The stage's deps under pipeline/ and stages/, directories expanded to their .py files."""
    out = set()
    for dep in stage["deps"]:
        path = ROOT / dep
        if not dep.startswith(("pipeline", "stages")):
            continue
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        out |= {f.relative_to(ROOT) for f in files}
    return out


@pytest.mark.parametrize("name", sorted(DVC_YAML["stages"]))
def test_code_deps_are_the_stage_scripts_import_closure(name):
    stage = stage_of(name)
    script = re.search(r"python -m (stages\.\w+)", stage["cmd"]).group(1)
    assert code_deps(stage) == import_closure(script), (
        "dvc.yaml is out of date: python -m tests.dvc_stages.import_graph --rewrite-dvc-yaml")


@pytest.mark.parametrize("name", ["search", "evaluate", "schedule_search", "schedule_grid"])
def test_matrix_stages_track_only_their_own_space(name):
    params = stage_of(name)["params"]
    if name == "search":  # one method's space: editing it re-runs only that method's searches
        assert params == ["search", "search_spaces.shared", "search_spaces.${item.method}"]
    elif name == "schedule_search":  # one family's space re-runs only that family's searches
        assert "schedule_study.spaces.${item.family}" in params
        assert "schedule_study" not in params and "schedule_study.spaces" not in params
    elif name == "schedule_grid":
        assert "schedule_study.${item.grid}" in params and "schedule_study" not in params
    else:  # the preset deviations do not re-run the selected configurations
        assert "evaluate" not in params and "evaluate.preset_set" not in params


# mappings whose keys are values (config overrides; which datasets to build): a profile may
# list other ones
VALUE_MAPPINGS = ("search_spaces.", "search.set.", "evaluate.preset_set.",
                  "evaluate.execution.", "make_envs.datasets.", "schedule_study.set.",
                  "schedule_study.spaces.", "schedule_study.landscape.axes.",
                  "schedule_study.landscape.set.", "schedule_study.power_sweep.axes.",
                  "schedule_study.power_sweep.set.")


def _keys(tree, prefix=""):
    if not isinstance(tree, dict) or prefix.startswith(VALUE_MAPPINGS):
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}{k}.") for k, v in tree.items()))


def test_paper_profile_has_the_same_keys_and_the_full_protocol():
    assert _keys(PAPER) == _keys(PARAMS)
    assert PAPER["search"]["trials"] == 50 and PAPER["search"]["seeds"] == 10
    assert PAPER["search"]["sampler"] == "random"  # the IRM paper's random search
    assert PAPER["search"]["selection"] == "irm_paper" and PAPER["search"]["set"] == {}
    shared = PAPER["search_spaces"]["shared"]  # every method's space starts from it
    assert shared["steps"] == {"choice": [101, 201, 301, 401, 501]}
    assert shared["hidden_dim"] == {"log_int": [64, 512]}
    for space in ("irm", "vrex"):
        assert PAPER["search_spaces"][space] == {"anneal_iters": "default",
                                                  "penalty_weight": "default"}
    assert PAPER["evaluate"]["seeds"] == list(range(1000, 1010))
    assert PAPER["evaluate"]["preset_set"] == {}
    assert PAPER["make_envs"]["datasets"]["colored_fashion_mnist"]["n_train"] is None
    assert PAPER["sem_study"]["irm_iterations"] == 100000
    study = PAPER["schedule_study"]
    assert study["methods"] == ["irm", "vrex"] and len(study["families"]) == 5
    assert study["set"]["steps"] == 501 and study["set"]["hidden_dim"] == 390
    axes = study["landscape"]["axes"]
    assert len(axes["penalty_weight"]) * len(axes["anneal_iters"]) > 36  # denser than default
    assert study["power_sweep"]["set"]["steps"] == 500  # the course project's


@pytest.mark.parametrize("params", [PARAMS, PAPER], ids=["default", "paper"])
def test_every_stage_accepts_the_profile(params, tmp_path, tiny_envs_dir):
    from pipeline.params.evaluate import evaluation_settings
    from pipeline.params.make_envs import make_envs_settings
    from pipeline.params.pica import pica_settings
    from pipeline.params.search import spec_from_params
    from pipeline.params.sem import sem_settings
    from pipeline.params.study import study_settings
    from pipeline.search.spec import resolve

    study = study_settings(params["study"])
    make_envs_settings(params["make_envs"])
    settings = evaluation_settings(params["evaluate"])
    assert not set(settings.seeds) & set(range(params["search"]["seeds"]))
    sem_settings(params["sem_study"])
    pica_settings(params["pica_study"])
    for method in study.methods:
        spec = spec_from_params(params["search"], spaces=params["search_spaces"],
                                dataset="colored_fashion_mnist", method=method,
                                out=str(tmp_path / method), envs_dir=str(tiny_envs_dir))
        resolve(spec)
    from pipeline.params.schedule_study import GRIDS, schedule_study_settings, study_search_spec

    schedules = schedule_study_settings(params["schedule_study"])
    for which in [*schedules.families, *GRIDS]:
        for method in schedules.methods:
            spec = study_search_spec(params, which, "colored_fashion_mnist", method,
                                     str(tiny_envs_dir), str(tmp_path / f"{which}-{method}"))
            assert spec.share_prefix and spec.sampler in ("random", "grid")
            resolve(spec)


def test_the_results_layout_is_the_one_dvc_yaml_writes():
    """pipeline.outputs (what the report reads) and dvc.yaml (what the stages write) spell the
    same paths."""
    from pipeline import outputs

    d, m, p, r = "${item.dataset}", "${item.method}", "${item.preset}", "${item.row}"
    expected = {
        "search": [outputs.search_dir("results", d, m)],
        "evaluate": [outputs.evaluation_file("results", d, m)],
        "evaluate_preset": [outputs.evaluation_file("results", d, p)],
        "evaluate_protocol": [outputs.protocol_file("results", d, r)],
        "evaluate_sem": [outputs.sem_file("results")],
        "schedule_search": [outputs.schedule_search_dir("results", d, m, "${item.family}")],
        "schedule_evaluate": [outputs.schedule_evaluation_file("results", d, m,
                                                               "${item.family}")],
        "schedule_grid": [outputs.schedule_grid_dir("results", "${item.grid}", d)],
    }
    for name, paths in expected.items():
        assert [Path(o if isinstance(o, str) else next(iter(o))) for o in
                stage_of(name)["outs"]] == paths, name
    # a search's outputs persist: DVC must not delete an interrupted search before the stage
    # runs again, or it could not resume (pipeline.search.runner replaces another search)
    for name in ("search", "schedule_search", "schedule_grid"):
        (out,) = stage_of(name)["outs"]
        assert isinstance(out, dict) and next(iter(out.values())) == {"persist": True}, name
    plots = {"evaluate": outputs.curves_file("results", d, m),
             "evaluate_preset": outputs.curves_file("results", d, p)}
    for name, path in plots.items():
        assert [Path(next(iter(x))) for x in stage_of(name)["plots"]] == [path], name
