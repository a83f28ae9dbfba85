"""Pooling train results over disjoint seeds (``summarize --pool``): one per-seed-draw run
spread over two invocations gives the metrics of the single run, and nothing else pools."""

from __future__ import annotations

import copy
import json

import pytest

from pipeline.__main__ import main
from pipeline.config import make_config
from pipeline.environments import make_envs
from pipeline.errors import ConfigError
from pipeline.pooled import pool_results
from pipeline.training import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool_envs")
    make_envs("colored_fashion_mnist", seed=0, out_dir=root / "colored_fashion_mnist",
              params={"n_train": 300})
    cfg = make_config(None, dataset="colored_fashion_mnist", envs_dir=str(root), method="irm",
                      hidden_dim=8, steps=5, anneal_iters=2, penalty_weight=10.0, eval_every=2,
                      device="cpu", threads=1, formulation="bmm", data_draw="per_seed")
    return {name: train(cfg, seeds).to_dict()
            for name, seeds in (("all", [0, 1, 2]), ("first", [0, 1]), ("last", [2]))}


def test_two_runs_over_disjoint_seeds_pool_into_the_single_run(runs):
    pooled = pool_results([runs["first"], runs["last"]], ["first.json", "last.json"])
    whole = runs["all"]
    assert pooled["seeds"] == whole["seeds"] == [0, 1, 2]
    assert pooled["data"]["draw_seeds"] == whole["data"]["draw_seeds"]
    assert pooled["config"] == whole["config"]
    assert set(pooled["metrics"]) == set(whole["metrics"])
    for name, agg in whole["metrics"].items():
        assert pooled["metrics"][name]["n"] == 3
        assert pooled["metrics"][name]["mean"] == pytest.approx(agg["mean"], rel=1e-4, abs=1e-6)
        assert pooled["metrics"][name]["std"] == pytest.approx(agg["std"], rel=1e-3, abs=1e-6)
    assert [p["name"] for p in pooled["pooled_from"]] == ["first.json", "last.json"]
    assert pooled["pooled_from"][1]["seeds"] == [2]
    assert pooled["runtime"]["steps_run"] == 5 and "wall_s" not in pooled["runtime"]


def test_pooling_refuses_another_config_other_data_and_a_repeated_seed(runs):
    other_cfg = copy.deepcopy(runs["last"])
    other_cfg["config"]["lr"] = 0.5
    with pytest.raises(ConfigError, match="configs differ in lr"):
        pool_results([runs["first"], other_cfg])
    other_data = copy.deepcopy(runs["last"])
    other_data["data"]["manifest_sha256"] = "0" * 64
    with pytest.raises(ConfigError, match="different data .manifest_sha256"):
        pool_results([runs["first"], other_data])
    with pytest.raises(ConfigError, match="seed 2 is in both"):
        pool_results([runs["all"], runs["last"]], ["all.json", "last.json"])
    with pytest.raises(ConfigError, match="at least two"):
        pool_results([runs["all"]])
    other_dtype = copy.deepcopy(runs["last"])
    other_dtype["runtime"]["dtype"] = "bf16"
    with pytest.raises(ConfigError, match="ran in bf16 and fp32"):
        pool_results([runs["first"], other_dtype])


def test_runs_that_differ_only_in_how_they_executed_pool(runs):
    """Another machine or directory (device, threads, formulation, envs_dir) is the same run:
    the data are checked by hash; each source's execution keys are kept."""
    moved = copy.deepcopy(runs["last"])
    moved["config"].update(envs_dir="/elsewhere", threads=2, formulation="linear")
    moved["runtime"]["steps_run"] = 3  # its members diverged at step 3
    pooled = pool_results([runs["first"], moved])
    assert pooled["seeds"] == [0, 1, 2]
    assert pooled["pooled_from"][1]["config"]["envs_dir"] == "/elsewhere"
    assert pooled["runtime"]["steps_run"] == 5


def test_summarize_pool_prints_one_row_and_writes_the_pooled_result(runs, tmp_path, capsys):
    paths = []
    for name in ("first", "last"):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(runs[name]))
    assert main(["summarize", "--pool", *map(str, paths), "--out", str(tmp_path / "p.json")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| colored_fashion_mnist")]
    assert len(rows) == 1 and "| 3 |" in rows[0]
    assert json.loads((tmp_path / "p.json").read_text())["seeds"] == [0, 1, 2]
    assert main(["summarize", str(paths[0]), "--out", str(tmp_path / "q.json")]) != 0
    assert "give --pool" in capsys.readouterr().err
    assert not (tmp_path / "q.json").exists()
