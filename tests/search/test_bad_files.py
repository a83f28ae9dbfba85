"""Bad and hostile files at the data boundary, in one place (docs/faults.md): each gives an
error that names the file, never a traceback and never a silently wrong number.

Environment files truncated or tampered with, a manifest that lies, a trials table edited by
hand, a best.json from another search or dataset; on real files written by a real search.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from pipeline.environments import load_envs
from pipeline.errors import ConfigError
from pipeline.evaluate import evaluate_selected
from pipeline.search.finished import read_best, read_table
from pipeline.search.runner import run_search
from pipeline.search.spec import SearchSpec

DATASET = "colored_fashion_mnist"


@pytest.fixture
def envs_dir(tmp_path, tiny_envs_dir):
    """A copy of the tiny environments, to damage."""
    shutil.copytree(tiny_envs_dir, tmp_path / "envs")
    return tmp_path / "envs"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_envs_dir, local_ray):
    """Two finished searches (two search seeds) over the same data."""
    root = tmp_path_factory.mktemp("finished")
    for seed in (0, 1):
        run_search(_spec(root / f"s{seed}", tiny_envs_dir, seed))
    return root


def _spec(out, envs_dir, search_seed: int) -> SearchSpec:
    return SearchSpec(dataset=DATASET, method="irm", out=str(out), envs_dir=str(envs_dir),
                      spaces={"irm": {"lr": {"log_uniform": [1e-3, 1e-2]}}}, sampler="random",
                      trials=2, seeds=[0], search_seed=search_seed, selection="oracle",
                      fixed={"steps": 20, "hidden_dim": 16},
                      share_prefix=True)  # Ray tasks, not Tune: the same files, sooner


@pytest.fixture
def search(tmp_path, finished):
    shutil.copytree(finished / "s0", tmp_path / "s0")
    return tmp_path / "s0"


def _cli_error(*args) -> str:
    """Run the CLI; it must fail with exit 2 and an ``error:`` line, never a traceback."""
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "\nerror: " in "\n" + done.stderr and "Traceback" not in done.stderr
    return done.stderr


# -- environment files ------------------------------------------------------------------------

def test_a_truncated_environment_file(envs_dir):
    file = envs_dir / DATASET / "train0.pt"
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"train0\.pt is missing or differs from its sha256"):
        load_envs(envs_dir / DATASET)
    message = _cli_error("train", "--dataset", DATASET, "--envs-dir", str(envs_dir),
                         "--set", "steps=2")
    assert "train0.pt" in message


def test_a_tampered_environment_file(envs_dir):
    file = envs_dir / DATASET / "test.pt"
    data = bytearray(file.read_bytes())
    data[-100] ^= 1  # one bit of one pixel
    file.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"test\.pt is missing or differs from its sha256"):
        load_envs(envs_dir / DATASET)


def test_a_manifest_that_lies_about_sizes(envs_dir):
    path = envs_dir / DATASET / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["environments"][1]["size"] += 10
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"manifest\.json says train1 holds 266 examples but "
                                          r".*train1\.pt holds inputs \(256, 2, 14, 14\) and "
                                          r"labels \(256,\)"):
        load_envs(envs_dir / DATASET)


def test_a_manifest_with_its_file_and_hash_swapped_in(envs_dir):
    """Someone replaced a file and wrote its hash into the manifest: not an environment."""
    from pipeline.environments.store import sha256_file

    folder = envs_dir / DATASET
    torch.save({"x": torch.zeros(3)}, folder / "train0.pt")  # no labels
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["environments"][0]["sha256"] = sha256_file(folder / "train0.pt")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"train0\.pt is not an environment file"):
        load_envs(folder)


@pytest.mark.parametrize("damage,needle", [
    (lambda m: "{not json", "not valid JSON|JSONDecodeError"),
    (lambda m: json.dumps({**m, "environments": [{"name": "train0"}]}), "KeyError"),
    (lambda m: json.dumps({**m, "environments": [
        {**m["environments"][0], "file": "../../elsewhere.pt"}]}), "not a file of this"),
])
def test_a_broken_manifest_names_itself(envs_dir, damage, needle):
    path = envs_dir / DATASET / "manifest.json"
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.raises(ConfigError, match=rf"manifest\.json is not a valid manifest.*({needle})"):
        load_envs(envs_dir / DATASET)


# -- a finished search's files ----------------------------------------------------------------

def test_the_untouched_outputs_are_read(search):
    best = read_best(search, DATASET)
    table = read_table(search, best)
    assert len(table) == 2 and best["trial_key"] in set(table["trial_key"])


@pytest.mark.parametrize("table", ["trials.parquet", "trials.csv"])
def test_a_trials_table_edited_by_hand_is_refused(search, table):
    path = search / table
    if table.endswith(".csv"):
        frame = pd.read_csv(path)
        frame.loc[0, "score"] = 0.99  # a better number, typed in
        frame.to_csv(path, index=False)
    else:
        frame = pd.read_parquet(path)
        frame.loc[0, "score"] = 0.99
        frame.to_parquet(path, index=False)
    with pytest.raises(ConfigError, match=rf"{table} is not the table the search wrote"):
        read_table(search)


def test_a_best_json_from_another_search_is_refused(search, finished):
    shutil.copy(finished / "s1" / "best.json", search / "best.json")
    with pytest.raises(ConfigError, match="best.json belongs to search .* copied from another"):
        evaluate_selected(search, [10])


def test_a_best_json_of_another_dataset_is_refused_by_the_evaluation_stage(search, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "--dataset", "colored_mnist", "--search",
         str(search), "--envs-dir", str(tmp_path), "--out", str(tmp_path / "e.json"),
         "--curves", str(tmp_path / "e.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{search} searched dataset 'colored_fashion_mnist', not 'colored_mnist'" in \
        done.stderr
    assert not (tmp_path / "e.json").exists() and not (tmp_path / ".e.json.lock").exists()


def test_a_dvc_stage_replaces_a_search_of_other_settings(search, tiny_envs_dir):
    """A stage's output persists (dvc.yaml) and follows params.yaml: a search of other
    settings found there is replaced, and says so (the CLI refuses it:
    tests/search/test_bad_input.py)."""
    old_keys = {p.stem for p in (search / "trials").glob("*.json")}
    lines = []
    outcome = run_search(_spec(search, tiny_envs_dir, 1), log=lines.append, replace_other=True)
    assert any("holds the search of other settings" in line and "replaced" in line
               for line in lines)
    assert json.loads((search / "search.json").read_text())["hash"] == outcome.hash
    new_keys = {p.stem for p in (search / "trials").glob("*.json")}
    assert len(new_keys) == 2 and not old_keys & new_keys
    assert read_best(search)["search"] == outcome.hash
