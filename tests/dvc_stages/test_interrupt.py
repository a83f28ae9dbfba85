"""`dvc repro` interrupted: Ctrl-C (SIGINT to the terminal's process group) stops the search
stage and every Ray process it started within seconds; after that and a SIGKILL to
everything, the same `dvc repro` resumes the search without retraining a finished trial (its
output persists). A stage whose DVC is killed alone stops itself: tests/test_process.py.
Meanwhile a second search on the stage's output is refused (one writer per output).

A one-stage DVC project of its own (the search stage of dvc.yaml, on the tiny environments),
so that the test costs seconds, not a whole pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from tests.dvc_stages.import_graph import ROOT

DVC = str(Path(sys.executable).with_name("dvc"))


def _project(root: Path, envs_dir: Path) -> dict:
    root.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = {"search": {**params["search"], "trials": 3, "seeds": 1, "max_concurrent": 1,
                         "selection": "oracle",
                         "set": {"steps": 500, "hidden_dim": 16, "anneal_iters": 50}},
              "search_spaces": {"shared": {}, "irm": {"lr": {"log_uniform": [1e-3, 1e-2]}}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["search"]
    out = stage["outs"][0]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"search": {
        "cmd": f"python -m stages.search --dataset colored_fashion_mnist --method irm "
               f"--envs-dir {envs_dir} --out results/search",
        "params": ["search", "search_spaces.shared", "search_spaces.irm"],
        "outs": [{"results/search": next(iter(out.values()))}]}}}))  # dvc.yaml's persist
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=root, check=True)
    return {**os.environ, "PYTHONPATH": str(ROOT),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _executions(out: Path) -> list[dict]:
    path = out / "trials" / "executions.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def _wait_for(predicate, timeout_s: float, what: str, proc) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"dvc repro ended (rc {proc.returncode}) before {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _interrupt(root: Path, env: dict, name: str, ready, send) -> list[psutil.Process]:
    """Start `dvc repro`, wait until ``ready()``, ``send`` the signal; returns the processes
    dvc had started, for the caller to check."""
    log = open(root / f"{name}.log", "w")
    repro = subprocess.Popen([DVC, "repro"], cwd=root, env=env, stdout=log, stderr=log,
                             start_new_session=True)
    try:
        _wait_for(ready, 240, f"{name}: a trial to train", repro)
        started = psutil.Process(repro.pid).children(recursive=True)
        assert any("stages.search" in " ".join(p.cmdline()) for p in started)
        send(repro)
        repro.wait(timeout=30)
    finally:
        if repro.poll() is None:
            os.killpg(repro.pid, signal.SIGKILL)
            repro.wait()
    assert repro.returncode != 0  # dvc reports the stage as failed, and commits nothing
    return started


class SecondWriter:
    """A search started by hand on the stage's output as soon as the stage holds it: it must
    be refused at once, naming the stage's process, changing nothing."""

    def __init__(self, root: Path, env: dict, envs_dir: Path):
        self.root, self.env, self.envs_dir = root, env, envs_dir
        self.out = root / "results" / "search"
        self.proc, self.holder = None, None

    def started_and_done(self) -> bool:
        lock = self.out / ".lock"
        if self.proc is None and lock.is_file() and lock.read_text():
            self.holder = json.loads(lock.read_text())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "search", "--dataset",
                 "colored_fashion_mnist", "--method", "irm", "--envs-dir", str(self.envs_dir),
                 "--out", str(self.out), "--trials", "2"], cwd=self.root, env=self.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return self.proc is not None and self.proc.poll() is not None

    def check(self) -> None:
        stderr = self.proc.stderr.read()
        assert self.proc.returncode == 2, stderr[-2000:]
        assert f"is being written by another process (pid {self.holder['pid']} on" in stderr
        assert "stages.search" in stderr and "Traceback" not in stderr
        assert "search.json" not in stderr  # refused before reading the search there


def test_interrupted_dvc_repro_stops_everything_and_resumes(tmp_path, tiny_envs_dir):
    root = tmp_path / "project"
    env = _project(root, tiny_envs_dir)
    out = root / "results" / "search"

    def records() -> int:
        return len(list((out / "trials").glob("*.json")))

    # Ctrl-C in a terminal: SIGINT to the whole foreground process group, once a trial has
    # finished and the next one trains
    second = SecondWriter(root, env, tiny_envs_dir)
    started = _interrupt(root, env, "sigint", lambda: second.started_and_done() and records()
                         >= 1 and len(_executions(out)) >= 2,
                         lambda p: os.killpg(p.pid, signal.SIGINT))
    second.check()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, f"left running after SIGINT: {[p.pid for p in alive]}"
    assert "interrupted by SIGINT" in (root / "sigint.log").read_text()

    # SIGKILL to everything (a crash, an out-of-memory kill): nothing can clean up, and Tune's
    # own state may be seconds old; the done records still say what is finished
    done_before = records()

    def next_one_trains() -> bool:  # a trial finished since, and another one trains now
        runs = _executions(out)
        return records() > done_before and bool(runs) and not (
            out / "trials" / f"{runs[-1]['key']}.json").exists()

    _interrupt(root, env, "sigkill", next_one_trains,
               lambda p: os.killpg(p.pid, signal.SIGKILL))
    finished = {p.stem for p in (out / "trials").glob("*.json")}
    assert len(finished) >= 2, "fewer than two trials finished before the interrupts"
    runs_before = [e["key"] for e in _executions(out)]  # (an interrupted trial ran again)

    done = subprocess.run([DVC, "repro"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming search" in done.stdout + done.stderr
    executions = [e["key"] for e in _executions(out)]
    for key in finished:
        assert executions.count(key) == runs_before.count(key), \
            f"finished trial {key} was trained again"
    assert len({p.stem for p in (out / "trials").glob("*.json")}) == 3
    assert (out / "best.json").is_file()
