"""A hyperparameter search: one Ray Tune ``Tuner.fit()``, Optuna as the sampler.

Local by default (Ray starts in-process on this machine's CPUs); ``address`` joins a running
cluster. Everything is validated before Ray starts, and the output directory is only written
once the search is known to be valid, so bad input never costs finished work.

Output directory::

    search.json       the resolved search (space, base config, seeds, selection, hash, versions)
    trials/KEY.json   one done record per finished trial (config, seeds, metrics, node, versions)
    trials.parquet    one row per trial and run length: config, seeds, metrics (mean, std),
    trials.csv          status (ok / diverged / failed / stopped), wall time, node
    best.json         the selected configuration and the rule that selected it
    study.db          the Optuna study (SQLite unless ``storage`` names a database URL)
    ray/              Ray Tune's experiment state (``Tuner.restore`` resumes from it) and,
                      with ``checkpoint_every``, each running trial's latest checkpoint
    .lock             held while a search runs: a second one on the same --out is refused
    shared_prefix.json  with ``share_prefix`` (no Tune, no ray/): the steps each chunk trained
                      for the steps of its trials alone
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from ray import tune

from pipeline.errors import ConfigError
from pipeline.locks import output_lock
from pipeline.outputs import write_json
from pipeline.ray_cluster import Log, connect, log_to_stderr
from pipeline.search.planned import run_planned
from pipeline.search.ray_optuna import concurrent_trials, new_tuner
from pipeline.search.spec import Resolved, SearchSpec, resolve
from pipeline.search.table import collect, summary, write_outputs
from pipeline.search.trial import run_trial


@dataclass
class SearchOutcome:
    out: Path
    hash: str
    table: list[dict]  # the rows of trials.parquet (plus their metrics as dicts)
    best: dict | None
    resumed: bool
    timing: dict = field(default_factory=dict)  # seconds: connect (Ray start-up), fit, total


def existing_search(resolved: Resolved, replace_other: bool = False,
                    log: Log = log_to_stderr) -> bool:
    """True if ``out`` holds this search (resume); if it holds another, an error (reading
    only), or with ``replace_other`` (a DVC stage, whose output follows params.yaml) the other
    search is removed."""
    marker = resolved.out / "search.json"
    if not marker.is_file():
        return False
    try:
        previous = json.loads(marker.read_text())
    except json.JSONDecodeError:
        previous = {}
    if previous.get("hash") != resolved.hash and replace_other:
        log(f"{resolved.out} holds the search of other settings (hash {previous.get('hash')}): "
            f"replaced by this one ({resolved.hash}), as params.yaml now asks")
        for entry in resolved.out.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.name != ".lock":  # held by this process
                entry.unlink()
        return False
    if previous.get("hash") != resolved.hash:
        raise ConfigError(
            f"--out {resolved.out} holds another search (hash {previous.get('hash')}, "
            f"{previous.get('search', {}).get('dataset')} / {previous.get('space_name')}); "
            f"this one is {resolved.hash}. Use another --out; nothing was changed")
    return True


def claim_out(resolved: Resolved) -> None:
    resolved.out.mkdir(parents=True, exist_ok=True)
    marker = resolved.out / "search.json"
    if not marker.is_file():
        write_json(marker, resolved.describe())


def run_search(spec: SearchSpec, log: Log = log_to_stderr,
               replace_other: bool = False) -> SearchOutcome:
    """Run (or resume) a search and write its table, best config and Optuna study.

    ``replace_other``: a search of other settings found in ``out`` is removed, not refused
    (DVC stages: their outputs persist, so that an interrupted search resumes)."""
    t0 = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines suffice
    resolved = resolve(spec)
    # one writer per --out: a second search on it fails here, before it changes anything
    with output_lock(resolved.out, "--out", log):
        return _run_locked(resolved, log, t0, replace_other)


def _run_locked(resolved: Resolved, log: Log, t0: float,
                replace_other: bool) -> SearchOutcome:
    spec = resolved.spec
    resumed = existing_search(resolved, replace_other, log)
    started = connect(spec.address, log)  # an unreachable address fails before --out is used
    t1 = time.perf_counter()
    try:
        slots = concurrent_trials(spec)  # a GPU request the cluster cannot meet fails here
        claim_out(resolved)
        if spec.share_prefix:
            if spec.checkpoint_every:
                log("checkpoint_every is not used with share_prefix: its prefix trees run as "
                    "Ray tasks, not Tune trials; a lost task is retrained from its start")
            grid = run_planned(resolved, log, slots, t0)
        else:
            grid = _fit_tune(resolved, log)
        t2 = time.perf_counter()
        table = collect(resolved, grid)
        best = write_outputs(resolved, table)
        log(summary(resolved, table, best))
        timing = {"connect_s": t1 - t0, "fit_s": t2 - t1, "total_s": time.perf_counter() - t0}
        return SearchOutcome(resolved.out, resolved.hash, table, best, resumed, timing)
    finally:
        if started:
            import ray

            ray.shutdown()


def _fit_tune(resolved: Resolved, log: Log):
    """The trials through Ray Tune (new, or resumed from its experiment state)."""
    spec = resolved.spec
    experiment = resolved.out / "ray" / f"search-{resolved.hash}"
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=resolved.setup,
                             checkpoint_every=spec.checkpoint_every),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    if tune.Tuner.can_restore(str(experiment)):
        log(f"resuming search {resolved.hash} from {experiment} (finished trials are "
            "read from their done records, not trained again)")
        # errored trials stay failed: FailureConfig has already retried them
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                   resume_unfinished=True, resume_errored=False)
    else:
        log(f"search {resolved.hash}: {resolved.trials} trials of {spec.method} on "
            f"{spec.dataset} ({spec.sampler}, {len(spec.seeds)} seeds each, selection "
            f"{spec.selection}) -> {resolved.out}")
        tuner = new_tuner(resolved, trainable)
    # Our own metric check: trials may report without a score (no NaN ever reaches Tune).
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 silences the old engine
    return tuner.fit()
