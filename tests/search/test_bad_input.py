"""Bad search input fails before any trial starts, names the parameter, and loses nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import ray

from pipeline.errors import ConfigError
from pipeline.search.runner import run_search
from pipeline.search.spec import SearchSpec

SPACES = {"irm": {"lr": {"log_uniform": [1e-3, 1e-2]}, "anneal_iters": {"int": [5, 40]},
                  "steps": {"choice": [50, 100]}}}


@pytest.fixture
def earlier_results(tmp_path):
    """An output directory that already holds a finished search's files."""
    out = tmp_path / "out"
    (out / "trials").mkdir(parents=True)
    (out / "search.json").write_text(json.dumps({"hash": "0123456789ab", "space_name": "irm",
                                                 "search": {"dataset": "colored_mnist"}}))
    (out / "trials.csv").write_text("trial,status\nabc,ok\n")
    (out / "trials" / "abc.json").write_text('{"key": "abc"}')
    return out


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _spec(out, envs_dir, **overrides) -> SearchSpec:
    values = {"dataset": "colored_fashion_mnist", "method": "irm", "spaces": SPACES,
              "out": str(out), "envs_dir": str(envs_dir), "trials": 4, "seeds": [0]}
    return SearchSpec(**{**values, **overrides})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("overrides,message", [
    ({"spaces": {"irm": {"lr": {"log_uniform": []}}}}, "lr.*needs \\[low, high\\]"),
    ({"spaces": {"irm": {"lr": {"uniform": [0.01, 0.01]}}}}, "'lr'.*empty"),
    ({"spaces": {"irm": {"lr": {"log_uniform": [1e-2, 1e-4]}}}}, "'lr'.*inverted"),
    ({"sampler": "bayes"}, "sampler.*valid choices: grid, random, tpe"),
    ({"selection": "best_test"}, "selection rule.*irm_paper.*train_domain_val"),
    ({"asha_grace": 30}, "grace period \\(30 steps\\) must exceed the largest anneal.*\\(40"),
    ({"fixed": {"schedule": "linear", "ramp_iters": 30}, "asha_grace": 60},
     "must exceed the largest anneal iteration in the space \\(70, ramp included\\)"),
    ({"space": "fishr"}, "search space.*'fishr'.*valid choices: irm"),
    ({"sampler": "grid"}, "grid.*'lr' is a log_uniform range"),
    ({"selection": "leave_one_env_out"}, ">= 3 training environments"),
    ({"fixed": {"holdout_fraction": 0.0}}, "train_domain_val.*holdout_fraction > 0"),
    ({"address": "127.0.0.1:{port}"}, "--address 127.0.0.1:\\d+: no Ray cluster answers"),
])
def test_bad_input_is_refused_before_any_trial_and_keeps_earlier_results(
        earlier_results, tiny_envs_dir, overrides, message):
    before = _snapshot(earlier_results)
    out = earlier_results
    if "address" in overrides:  # a new search (the directory check would come first)
        overrides = {"address": overrides["address"].format(port=_closed_port())}
        out = earlier_results.parent / "new"
    with pytest.raises(ConfigError, match=message):
        run_search(_spec(out, tiny_envs_dir, **overrides))
    assert not ray.is_initialized()  # Ray never started: no trial could have run
    assert _snapshot(earlier_results) == before
    assert not (earlier_results.parent / "new").exists()


def test_a_different_search_in_the_same_directory_is_refused(earlier_results, tiny_envs_dir):
    before = _snapshot(earlier_results)
    with pytest.raises(ConfigError, match="holds another search.*nothing was changed"):
        run_search(_spec(earlier_results, tiny_envs_dir, max_concurrent=1))
    assert not ray.is_initialized()
    assert _snapshot(earlier_results) == before


def test_command_line_error_names_the_flag_and_exits_2(earlier_results, tiny_envs_dir):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "search", "--dataset", "colored_fashion_mnist",
         "--method", "irm", "--envs-dir", str(tiny_envs_dir), "--out", str(earlier_results),
         "--set", "lr=-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error:" in done.stderr and "lr" in done.stderr
    assert "Traceback" not in done.stderr

