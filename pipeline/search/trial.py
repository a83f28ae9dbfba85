"""One trial: a configuration trained for K seeds (one batched model), inside a Ray Tune worker.

A finished trial writes a *done record* (``OUT/trials/KEY.json``, KEY = hash of its config,
seeds and data), the project's own proof that the work is done: Ray saves its experiment state
only every few seconds, so after a kill it may start a finished trial again; the trial then
finds its record and reports it instead of training. ``rerun`` retrains a record outside Ray.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipeline.config import TrainConfig, make_config
from pipeline.environments import EnvSet, load_envs
from pipeline.environments.store import Environment
from pipeline.errors import ConfigError
from pipeline.outputs import write_json
from pipeline.selection import SELECTION_RULES, train_env_keys
from pipeline.training import (
    Trainer,
    TrainResult,
    aggregate,
    load_checkpoint,
    save_checkpoint,
    train,
)

RECORD_VERSION = 1


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one search shares; sent to the workers with the trainable."""

    base: dict  # the resolved config every trial starts from (--set applied)
    seeds: tuple[int, ...]
    record_at: tuple[int, ...]  # run lengths read off each trial (steps in the space)
    selection: str
    records_dir: str  # absolute; on a cluster it must be shared storage
    search_hash: str
    data_sha256: str
    leave_one_out: bool = False

    def config(self, sampled: dict) -> TrainConfig:
        return make_config(None, **{**self.base, **sampled})

    def key(self, sampled: dict, cfg: TrainConfig | None = None) -> str:
        """The trial's key; ``cfg``: its config when already built (it is checked once)."""
        return trial_key(cfg or self.config(sampled), self.seeds, self.record_at,
                         self.data_sha256, self.leave_one_out)


def trial_key(cfg: TrainConfig, seeds, record_at, data_sha256: str, leave_one_out: bool) -> str:
    """Names a unit of work by what determines its numbers (not by where the data lies)."""
    config = {k: v for k, v in cfg.to_dict().items() if k != "envs_dir"}
    blob = json.dumps({"config": config, "seeds": list(seeds), "record_at": list(record_at),
                       "data": data_sha256, "leave_one_out": leave_one_out}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- done records -------------------------------------------------------------------------------

def record_path(records_dir: str | Path, key: str) -> Path:
    return Path(records_dir) / f"{key}.json"


def read_record(records_dir: str | Path, key: str) -> dict | None:
    path = record_path(records_dir, key)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # writes are atomic; a bad file is none
        return None


def write_record(records_dir: str | Path, record: dict) -> Path:
    """Write atomically: a record exists completely or not at all."""
    return write_json(record_path(records_dir, record["key"]), record)


def log_execution(records_dir: str | Path, key: str, resumed_at: int | None = None) -> None:
    """One line each time a trial really trains: how a resumed search shows it re-ran nothing
    (and from which step a trial restored from its checkpoint went on)."""
    line = json.dumps({"key": key, "pid": os.getpid(), "host": socket.gethostname(),
                       "node_ip": node_info()["node_ip"], "time": time.time(),
                       "resumed_at": resumed_at})
    Path(records_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(records_dir) / "executions.jsonl", "a") as f:
        f.write(line + "\n")


# -- running a trial ----------------------------------------------------------------------------

_ENVS: dict[str, EnvSet] = {}  # per worker process: reused actors load the data once


def _envs(cfg: TrainConfig) -> EnvSet:
    path = str(Path(cfg.envs_dir) / cfg.dataset)
    if path not in _ENVS:
        _ENVS[path] = load_envs(path)
    return _ENVS[path]


def checked_envs(cfg: TrainConfig, setup: TrialSetup) -> EnvSet:
    """The trial's environments, refused unless they are the ones the search started with."""
    envset = _envs(cfg)
    if envset.manifest_sha256 != setup.data_sha256:
        raise ConfigError(f"the environments at {envset.path} are not the search's (manifest "
                          f"sha256 {envset.manifest_sha256[:12]}, search "
                          f"{setup.data_sha256[:12]}): rebuilt since, or the wrong --envs-dir")
    return envset


def train_trial(setup: TrialSetup, sampled: dict, progress=None,
                cfg: TrainConfig | None = None, checkpoint_every: int = 0,
                on_checkpoint=None, resume_from: Path | None = None) -> dict:
    """Train one sampled configuration and return its done record (not yet written).

    With ``checkpoint_every``, ``on_checkpoint(trainer)`` is called every that many steps;
    ``resume_from`` (a checkpoint file of this trial) continues a run from its state.
    """
    cfg = cfg or setup.config(sampled)
    envset = checked_envs(cfg, setup)
    trainer = Trainer(cfg, setup.seeds, envset=envset, progress=progress,
                      record_at=setup.record_at)
    resumed_at = None
    if resume_from is not None:
        load_checkpoint(trainer, resume_from)
        resumed_at = trainer.next_step
    result = trainer.run(checkpoint_every, on_checkpoint)
    result_dict = result.to_dict()
    if setup.leave_one_out:
        add_leave_one_out(result_dict, cfg, setup, envset)
    record = make_record(setup, sampled, cfg, result_dict)
    if resumed_at is not None:  # the numbers are the uninterrupted run's; the time is not
        record["resumed_from_step"] = resumed_at
    return record


def make_record(setup: TrialSetup, sampled: dict, cfg: TrainConfig, result: dict) -> dict:
    """A trial's done record (not yet written): what it ran, where, and its result."""
    return {"version": RECORD_VERSION, "key": setup.key(sampled, cfg),
            "search_hash": setup.search_hash, "sampled": sampled, "selection": setup.selection,
            "setup": asdict(setup), "node": node_info(), "finished_at": time.time(),
            "result": result}


def node_info() -> dict:
    info = {"hostname": socket.gethostname(), "node_id": None, "node_ip": None}
    try:
        import ray

        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
            info["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # outside Ray (rerun): the host name is enough
        pass
    return info


CHECKPOINT_FILE = "trainer.pt"


def run_trial(sampled: dict, setup: TrialSetup, checkpoint_every: int = 0) -> None:
    """The Ray Tune trainable: report every few dozen steps, then the final metrics.

    With ``checkpoint_every`` the trial reports a Tune checkpoint (the trainer's whole state)
    every that many steps, and a trial Tune retries or restores goes on from its latest one.
    """
    from ray import tune

    start = time.perf_counter()
    cfg = setup.config(sampled)  # built and checked once per trial
    key = setup.key(sampled, cfg)
    record = read_record(setup.records_dir, key)
    if record is None:
        def report(info: dict) -> None:
            if info["evaluated_at"] == info["step"]:  # fresh test/val numbers only
                tune.report(progress_metrics(info, setup, key))

        def on_checkpoint(trainer: Trainer) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(trainer, Path(tmp) / CHECKPOINT_FILE)
                write_json(Path(tmp) / "step.json", {"key": key, "next_step": trainer.next_step})
                # the report copies the directory to the trial's storage before it returns
                tune.report({"step": trainer.next_step, "trial_key": key, "finished": False,
                             "checkpoint_step": trainer.next_step},
                            checkpoint=tune.Checkpoint.from_directory(tmp))

        checkpoint = tune.get_checkpoint() if checkpoint_every else None
        with checkpoint.as_directory() if checkpoint else nullcontext() as restored:
            resume = Path(restored) / CHECKPOINT_FILE if restored else None
            log_execution(setup.records_dir, key,
                          _checkpoint_step(resume) if resume else None)
            record = train_trial(setup, sampled, progress=report, cfg=cfg,
                                 checkpoint_every=checkpoint_every,
                                 on_checkpoint=on_checkpoint if checkpoint_every else None,
                                 resume_from=resume)
        # the trial's own time (data, model, training, reports) beside the trainer's wall_s
        record["trial_s"] = time.perf_counter() - start
        record["trial"] = tune.get_context().get_trial_id()
        write_record(setup.records_dir, record)
    tune.report(final_metrics(record, setup))


def _checkpoint_step(path: Path) -> int | None:
    try:
        return int(json.loads(path.with_name("step.json").read_text())["next_step"])
    except (OSError, ValueError, KeyError):
        return None


def _flat(metrics: dict) -> dict:
    out = {}
    for name, stat in metrics.items():
        if name in ("nll", "penalty") or not isinstance(stat, dict):
            continue
        for part in ("mean", "std"):
            value = stat.get(part)
            if value is not None and math.isfinite(value):
                out[f"{name}/{part}"] = value
    return out


def score_of(metrics: dict, selection: str, train_keys: list[str]) -> float | None:
    return SELECTION_RULES[selection].score({"metrics": metrics}, train_keys)


def progress_metrics(info: dict, setup: TrialSetup, key: str) -> dict:
    metrics = info["metrics"]
    out = {"step": info["step"] + 1, "trial_key": key, "diverged": info["diverged"],
           "finished": False, **_flat(metrics)}
    score = score_of(metrics, setup.selection, train_env_keys([{"metrics": metrics}]))
    if score is not None:  # never a NaN: no score means no number
        out["score"] = score
    return out


def rows_of(record: dict) -> list[dict]:
    """One selectable row per run length read off the trial (one row when steps is fixed)."""
    result = record["result"]
    if result.get("at_steps"):
        runs = [(int(n), at["members"], at["metrics"]) for n, at in result["at_steps"].items()]
    else:
        runs = [(result["config"]["steps"], result["members"], result["metrics"])]
    rows = []
    for steps, members, metrics in runs:
        n_div = sum(m["status"] != "ok" for m in members)
        status = "ok" if n_div == 0 else "diverged"
        # a diverged row keeps its survivors' metrics for the table; selection skips it
        rows.append({"steps": steps, "status": status, "n_diverged": n_div, "metrics": metrics})
    return rows


def final_metrics(record: dict, setup: TrialSetup) -> dict:
    rows = rows_of(record)
    keys = train_env_keys(rows)
    scored = [(score_of(r["metrics"], setup.selection, keys), r) for r in rows
              if r["status"] == "ok"]
    scored = [(s, r) for s, r in scored if s is not None]
    diverged = all(r["status"] == "diverged" for r in rows)
    out = {"step": max(r["steps"] for r in rows), "trial_key": record["key"], "finished": True,
           # "no_score": finished, but the rule's metric is missing (Optuna: FAIL, no number)
           "status": "ok" if scored else "diverged" if diverged else "no_score",
           "diverged": max(r["n_diverged"] for r in rows),
           "hostname": record.get("node", {}).get("hostname")}
    if scored:
        score, best = max(scored, key=lambda sr: sr[0])
        out.update({"score": score, "best_steps": best["steps"], **_flat(best["metrics"])})
    return out


# -- leave-one-environment-out ------------------------------------------------------------------

def without_env(envset: EnvSet, name: str) -> EnvSet:
    """The set with training environment ``name`` moved to evaluation as ``NAME_out``."""
    envs = []
    for e in envset.envs:
        if e.name == name:
            e = Environment(f"{name}_out", "test", e.x, e.y, e.params, e.extra)
        envs.append(e)
    return EnvSet(envs, envset.manifest, envset.manifest_sha256, envset.path)


def add_leave_one_out(result: dict, cfg: TrainConfig, setup: TrialSetup, envset: EnvSet) -> None:
    """DomainBed's leave-one-domain-out: retrain without each training environment and
    score it on that environment; ``loo_acc`` is the mean over the left-out environments."""
    names = [e.name for e in envset.train]
    runs = {n: train(cfg, setup.seeds, envset=without_env(envset, n), record_at=setup.record_at)
            for n in names}

    def loo(members_of) -> tuple[list[dict], dict]:
        merged = []
        for i, seed in enumerate(setup.seeds):
            per_env = [members_of(runs[n])[i] for n in names]
            if any(m["status"] != "ok" for m in per_env):
                merged.append({"seed": seed, "status": "diverged", "metrics": {}})
                continue
            accs = [m["metrics"][f"{n}_out_acc"] for m, n in zip(per_env, names, strict=True)]
            merged.append({"seed": seed, "status": "ok", "metrics": {"loo_acc": sum(accs)
                                                                    / len(accs)}})
        return merged, aggregate(merged)["loo_acc"] if any(
            m["status"] == "ok" for m in merged) else None

    def attach(target: dict, members_of) -> None:
        merged, stat = loo(members_of)
        if all(m["status"] == "ok" for m in merged):  # a mean over fewer seeds is no score
            target["loo_acc"] = stat

    attach(result["metrics"], lambda r: r.members)
    for n, at in result.get("at_steps", {}).items():
        attach(at["metrics"], lambda r, n=n: r.at_steps[n]["members"])
    result["leave_one_out_envs"] = names


def recorded_config(record: dict, envs_dir: str | None = None) -> tuple[TrainConfig, TrialSetup]:
    """A done record's configuration and setup, as the trial ran it.

    The device and thread count are the stored ones (they are part of the config), and so
    are the dtype and formulation the trial resolved (``auto`` is not decided again, so a
    machine whose calibration would now decide otherwise still repeats the trial);
    ``envs_dir`` points at the same environments elsewhere.
    """
    setup = TrialSetup(**{**record["setup"], "seeds": tuple(record["setup"]["seeds"]),
                          "record_at": tuple(record["setup"]["record_at"])})
    if envs_dir is not None:
        setup = TrialSetup(**{**asdict(setup), "base": {**setup.base, "envs_dir": envs_dir}})
    cfg = setup.config(dict(record["sampled"]))
    runtime = record.get("result", {}).get("runtime", {})
    if cfg.dtype == "auto" and runtime.get("dtype"):
        cfg = replace(cfg, dtype=runtime["dtype"])
    if cfg.formulation == "auto" and runtime.get("formulation") in ("bmm", "linear"):
        cfg = replace(cfg, formulation=runtime["formulation"])
    return cfg, setup


def rerun(record: dict, envs_dir: str | None = None) -> TrainResult:
    """Retrain a done record's configuration (:func:`recorded_config`) with its seeds, outside
    Ray Tune, on environments checked by their sha256. The leave-one-environment-out runs, if
    any, are not repeated.
    """
    cfg, setup = recorded_config(record, envs_dir)
    return train(cfg, setup.seeds, envset=checked_envs(cfg, setup), record_at=setup.record_at)
