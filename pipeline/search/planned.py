"""A search whose trials are known before any of them trains, run as prefix trees over Ray.

With a sampler that does not learn from results (``random``, ``grid``) every trial can be asked
of Optuna up front. Trials that agree on everything but the penalty-weight schedule (and the
run length) then train the steps they agree on once (:mod:`pipeline.shared_prefix`): IRM's
weight is 1 before each trial's anneal, so a grid of penalty weight x anneal iterations, or a
schedule family's trials at fixed lr, L2 and width, share their first tens of steps.

The trials of a group are cut into as many chunks as the cluster runs at once (after sorting
them by their schedules, so that trials with long common prefixes stay together), and each
chunk is one Ray task. The outputs are a Tune search's: a done record per trial (so ``rerun``
retrains any trial alone, and gets the same numbers bit for bit), the Optuna study with every
trial told its score, ``trials.parquet`` and ``best.json``. There is no early stopping (ASHA
needs Tune's scheduler).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import optuna

from pipeline.outputs import write_json
from pipeline.ray_cluster import Log
from pipeline.search.ray_optuna import make_sampler, open_study
from pipeline.search.spec import Resolved
from pipeline.search.trial import (
    checked_envs,
    final_metrics,
    log_execution,
    make_record,
    read_record,
    write_record,
)
from pipeline.shared_prefix import SHAREABLE, controls, train_shared


@dataclass(frozen=True)
class PlannedTrial:
    number: int  # the Optuna trial's number
    sampled: dict
    key: str


@dataclass
class PlannedResult:
    """What :func:`pipeline.search.table.collect` reads of a trial (as of a Tune result)."""

    config: dict
    metrics: dict
    error: str | None = None
    path: str | None = None


def ask_all(study: optuna.Study, resolved: Resolved) -> list[PlannedTrial]:
    """Every trial of the search: those the study already holds (a resumed search), then new
    ones asked until there are ``resolved.trials``."""
    setup, space = resolved.setup, resolved.space
    out = [PlannedTrial(t.number, dict(t.params), setup.key(dict(t.params)))
           for t in study.get_trials(deepcopy=False)]
    while len(out) < resolved.trials:
        trial = study.ask()
        sampled = space.suggest(trial)
        out.append(PlannedTrial(trial.number, sampled, setup.key(sampled)))
    return out


def chunks(trials: list[PlannedTrial], resolved: Resolved, slots: int) -> list[list[PlannedTrial]]:
    """The trials that may share a prefix (equal in every key outside ``SHAREABLE``), sorted by
    their updates' controls and cut into at most ``slots`` contiguous chunks in all."""
    groups: dict[str, list[tuple]] = {}
    for t in trials:
        cfg = resolved.setup.config(t.sampled)
        fixed = repr(sorted((k, v) for k, v in cfg.to_dict().items() if k not in SHAREABLE))
        groups.setdefault(fixed, []).append((controls(cfg), t))
    out = []
    shares = _split(slots, [len(g) for g in groups.values()])
    for group, n in zip(groups.values(), shares, strict=True):
        group.sort(key=lambda ct: ct[0])  # neighbours share the longest prefixes
        size = math.ceil(len(group) / n)
        out += [[t for _, t in group[i:i + size]] for i in range(0, len(group), size)]
    return out


def _split(slots: int, sizes: list[int]) -> list[int]:
    """How many chunks each group gets: at least one, about in proportion to its size."""
    total = sum(sizes)
    return [max(1, min(size, round(slots * size / total))) for size in sizes]


def _train_chunk(resolved_setup, sampled: list[dict], numbers: list[int]) -> dict:
    """One chunk, in a Ray worker: train it as a prefix tree, writing each trial's record as
    soon as its run is finished (a kill loses only the runs still training)."""
    setup = resolved_setup
    cfgs = [setup.config(s) for s in sampled]
    envset = checked_envs(cfgs[0], setup)
    start = time.perf_counter()
    for s, cfg in zip(sampled, cfgs, strict=True):
        log_execution(setup.records_dir, setup.key(s, cfg))

    def keep(i: int, result) -> None:
        record = make_record(setup, sampled[i], cfgs[i], result.to_dict())
        record.update({"trial": f"optuna-{numbers[i]}",
                       "chunk_s": time.perf_counter() - start})  # the chunk's time so far
        write_record(setup.records_dir, record)

    results, sharing = train_shared(cfgs, setup.seeds, envset=envset,
                                    record_at=setup.record_at, on_result=keep)
    errors = {setup.key(s, cfg): f"{type(r).__name__}: {r}"[:300]
              for s, cfg, r in zip(sampled, cfgs, results, strict=True)
              if isinstance(r, Exception)}
    return {"errors": errors, "trials": len(cfgs), **sharing.to_dict()}


def run_planned(resolved: Resolved, log: Log, slots: int, t0: float) -> list[PlannedResult]:
    """Ask every trial, train the ones without a done record, tell Optuna their scores.

    Trials Optuna already holds as FAIL stay failed on a resume, as a Tune search's errored
    trials do (their chunk was retried ``max_failures`` times). A configuration drawn twice is
    trained once: both trials get its record.
    """
    import ray

    spec, setup = resolved.spec, resolved.setup
    study = open_study(resolved, sampler=make_sampler(spec, resolved.space))
    trials = ask_all(study, resolved)
    failed_before = {t.number for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
    todo = list({t.key: t for t in trials if t.number not in failed_before
                 and read_record(setup.records_dir, t.key) is None}.values())
    parts = chunks(todo, resolved, slots) if todo else []
    log(f"search {resolved.hash}: {len(trials)} trials of {spec.method} on {spec.dataset} "
        f"({spec.sampler}, asked up front; {len(trials) - len(todo)} done before), "
        f"{len(parts)} prefix-sharing tasks of {spec.cpus_per_trial:g} CPU -> {resolved.out}")
    task = ray.remote(num_cpus=spec.cpus_per_trial, num_gpus=spec.gpus_per_trial,
                      max_retries=spec.max_failures, retry_exceptions=True)(_train_chunk)
    errors: dict[str, str] = {}
    finished = len(trials) - len(todo)
    shared = _read_sharing(resolved)
    waiting, pending = list(parts), {}
    while waiting or pending:
        while waiting and len(pending) < slots:  # at most `slots` chunks at once
            part = waiting.pop(0)
            pending[task.remote(setup, [t.sampled for t in part],
                                [t.number for t in part])] = part
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        part = pending.pop(ref)
        try:
            chunk = ray.get(ref)
        except Exception as exc:  # a chunk that failed: its trials are failed, not lost
            message = str(exc).strip().splitlines()[-1][:300]
            errors.update({t.key: message for t in part})
        else:
            errors.update(chunk.pop("errors"))
            shared["chunks"].append(chunk)
            _write_sharing(resolved, shared)
        finished += len(part)
        elapsed = time.perf_counter() - t0
        log(f"[search {elapsed // 60:.0f}m{elapsed % 60:02.0f}s] {finished}/{len(trials)} "
            f"trials finished ({len(errors)} failed)")
    if shared["chunks"]:
        log(f"prefix sharing: {shared['steps_trained']} steps trained for the "
            f"{shared['steps_alone']} of the trials alone ({100 * shared['saving']:.0f}% "
            f"saved) -> {resolved.out / 'shared_prefix.json'}")
    # told through a handle without the grid sampler: GridSampler.after_trial stops the study
    # when the grid is done, which Optuna allows only inside study.optimize
    teller = open_study(resolved, sampler=optuna.samplers.RandomSampler(seed=0))
    return _tell(teller, trials, resolved, errors, failed_before)


def _read_sharing(resolved: Resolved) -> dict:
    """``OUT/shared_prefix.json``: every chunk trained so far (a resumed search adds to it)."""
    path = resolved.out / "shared_prefix.json"
    return json.loads(path.read_text()) if path.is_file() else {"chunks": []}


def _write_sharing(resolved: Resolved, shared: dict) -> None:
    shared["steps_trained"] = sum(c["steps_trained"] for c in shared["chunks"])
    shared["steps_alone"] = sum(c["steps_alone"] for c in shared["chunks"])
    shared["saving"] = 1 - shared["steps_trained"] / max(1, shared["steps_alone"])
    write_json(resolved.out / "shared_prefix.json", shared)


def _tell(study: optuna.Study, trials: list[PlannedTrial], resolved: Resolved,
          errors: dict[str, str], failed_before: set[int]) -> list[PlannedResult]:
    """Tell Optuna each trial's score (FAIL: diverged, no score or failed; never a NaN)."""
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    out = []
    for t in trials:
        record = read_record(resolved.setup.records_dir, t.key)
        metrics = final_metrics(record, resolved.setup) if record else {}
        score = metrics.get("score")
        if states.get(t.number) == optuna.trial.TrialState.RUNNING:
            if score is not None and math.isfinite(score):
                study.tell(t.number, score)
            else:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        error = errors.get(t.key) or (
            None if record else "failed in an earlier run of this search"
            if t.number in failed_before else "not run")
        out.append(PlannedResult(t.sampled, {**metrics, "trial_id": f"optuna-{t.number}"},
                                 error))
    return out
