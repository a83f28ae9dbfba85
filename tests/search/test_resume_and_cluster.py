"""The search command as users run it: killed and resumed, on a two-node Ray cluster, and
losing a trial process and the worker node mid-search (docs/faults.md; a second writer and
signals: tests/dvc_stages/test_interrupt.py).

Real processes throughout: the CLI in a subprocess, a real SIGKILL, real `ray start` nodes
(token authentication on, loopback addresses) that the test stops again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from pipeline.search.trial import rerun

RAY = str(Path(sys.executable).with_name("ray"))
SPACE = {"irm": {"lr": {"log_uniform": [1e-3, 1e-2]},
                 "penalty_weight": {"log_uniform": [10.0, 1000.0]}}}


def _search_command(tmp_path, envs_dir, out, trials, *extra) -> list[str]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"search_spaces": SPACE}))
    return [sys.executable, "-m", "pipeline", "search", "--dataset", "colored_fashion_mnist",
            "--method", "irm", "--envs-dir", str(envs_dir), "--params", str(params),
            "--out", str(out), "--trials", str(trials), "--seeds", "2", "--sampler", "random",
            "--set", "hidden_dim=64", "--set", "anneal_iters=50", *extra]


def _wait_for(predicate, timeout_s: float, what: str, proc=None):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head and a worker node, one CPU each, on loopback, with token authentication.

    Ray rewrites 127.0.0.1 to the machine's outward address, so the nodes use 127.0.0.2 and
    127.0.0.3 (loopback too). ``--block`` keeps each node's processes under one parent that
    the test terminates, so only these nodes are stopped, never another Ray on the machine.
    """
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = _free_port()
    address = f"127.0.0.2:{port}"
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    nodes = [subprocess.Popen([RAY, "start", "--head", "--node-ip-address=127.0.0.2",
                               f"--port={port}", "--include-dashboard=false", *common],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        _wait_for(lambda: _ray_status(address, env).returncode == 0, 60, "the head node",
                  nodes[0])
        nodes.append(subprocess.Popen([RAY, "start", f"--address={address}",
                                       "--node-ip-address=127.0.0.3", *common],
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_for(lambda: _ray_status(address, env).stdout.count("node_") >= 2, 60,
                  "the worker node", nodes[1])
        yield address, env, nodes[1]
    finally:
        for node in reversed(nodes):
            if node.poll() is None:  # (the last test kills the worker node)
                node.terminate()  # `ray start --block` stops its node's processes on SIGTERM
        for node in nodes:
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        # `ray start` records the cluster for later `ray.init()` calls; it is gone now
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and address in current.read_text():
            current.unlink()


def _ray_status(address: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, "status", f"--address={address}"], env=env,
                          capture_output=True, text=True, timeout=60)


def _executions(out: Path) -> list[dict]:
    path = out / "trials" / "executions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "trials").glob("*.json")}


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "ray").glob("*/*/checkpoint_*/step.json"))


def _same_as_uninterrupted(record: dict) -> None:
    """The record's numbers are those of its config trained in one go, outside Ray."""
    alone = rerun(record).to_dict()
    assert record["result"]["members"] == alone["members"]  # every metric, bit for bit
    assert record["result"]["curves"] == alone["curves"]  # every step's records


def test_a_killed_trial_process_and_a_lost_worker_node_lose_nothing(
        tmp_path, tiny_envs_dir, two_node_cluster):
    """A search on a two-node cluster (and, at the same time, one with the wrong token,
    refused with a hint): its two trials spread over the nodes. Each past its
    first checkpoint, the head's trial process is SIGKILLed and the worker node dies whole.
    Both trials are retried on the head from their checkpoints, and their numbers are those
    of runs never interrupted, bit for bit. (Last in the module: the cluster has lost its
    worker after it.)"""
    address, env, worker_node = two_node_cluster
    # meanwhile, a search with the wrong token (Ray retries for ~20 s before it gives up)
    (tmp_path / "other").mkdir()
    wrong_token = subprocess.Popen(
        _search_command(tmp_path / "other", tiny_envs_dir, tmp_path / "other" / "out", 2,
                        "--address", address),
        env={**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    out = tmp_path / "out"
    command = _search_command(tmp_path, tiny_envs_dir, out, 2, "--set", "steps=400",
                              "--set", "hidden_dim=32", "--checkpoint-every", "50",
                              "--address", address)
    log = open(tmp_path / "search.log", "w")
    search = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)

    def checkpointed() -> dict[str, dict]:  # node ip -> the first run of a checkpointed trial
        keys = {json.loads(p.read_text())["key"] for p in _checkpoints(out)}
        return {e["node_ip"]: e for e in _executions(out) if e["key"] in keys}

    try:
        _wait_for(lambda: len(checkpointed()) == 2, 240, "a checkpoint of both trials", search)
        first = checkpointed()
        assert not _records(out), "a trial finished before the faults"
        os.kill(first["127.0.0.2"]["pid"], signal.SIGKILL)  # a trial process on the head
        node = [psutil.Process(worker_node.pid),  # the worker node: raylet, store, workers
                *psutil.Process(worker_node.pid).children(recursive=True)]
        for p in node:
            p.kill()
        psutil.wait_procs(node, timeout=10)
        assert search.wait(timeout=400) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
            search.wait()
    log_text = (tmp_path / "search.log").read_text()
    assert f"joined the Ray cluster at {address}: 2 CPUs" in log_text
    assert set(first) == {"127.0.0.2", "127.0.0.3"}  # one CPU per node: the trials spread
    table = pd.read_csv(out / "trials.csv")
    assert table["trial_key"].nunique() == 2 and (table["status"] == "ok").all()
    assert set(table["node_ip"]) == {"127.0.0.2"}  # the records name the node that finished
    records = _records(out)
    for lost in first.values():
        runs = [e for e in _executions(out) if e["key"] == lost["key"]]
        assert len(runs) == 2 and runs[1]["node_ip"] == "127.0.0.2"  # retried on the head
        assert runs[1]["pid"] != lost["pid"] and runs[1]["resumed_at"] >= 50  # not step 0
        assert records[lost["key"]]["resumed_from_step"] == runs[1]["resumed_at"]
        _same_as_uninterrupted(records[lost["key"]])
    assert not _checkpoints(out), "a finished trial's checkpoints are removed"

    # the search with the wrong token: refused with the hint, nothing written
    stderr = wrong_token.communicate(timeout=120)[1]
    assert wrong_token.returncode == 2, stderr[-2000:]
    assert "RAY_AUTH_TOKEN" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "other" / "out").exists()
