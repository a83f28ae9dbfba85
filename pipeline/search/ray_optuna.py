"""Ray Tune and Optuna plumbing: the Optuna searcher Tune drives, the Tuner,
and the progress lines a running search prints."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from pipeline.errors import ConfigError
from pipeline.ray_cluster import log_to_stderr
from pipeline.search.space import SearchSpace
from pipeline.search.spec import SAMPLERS, Resolved, SearchSpec
from pipeline.search.trial import read_record
from pipeline.selection import SELECTION_RULES


def make_sampler(spec: SearchSpec, space: SearchSpace) -> optuna.samplers.BaseSampler:
    name, kwargs = SAMPLERS[spec.sampler]
    grid = (space.grid(),) if spec.sampler == "grid" else ()
    return getattr(optuna.samplers, name)(*grid, seed=spec.search_seed, **kwargs)


class NoNaNOptunaSearch(OptunaSearch):
    """Optuna never sees a NaN or a missing score: a trial without one is told FAILED.

    (A NaN told to Optuna under Ray leaves the Optuna trial RUNNING for ever.)
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        score = result.get(self.metric)
        if score is None or not math.isfinite(score):
            return
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            # finished before a kill, restarted by the restore, reported from its done record
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        result = result or {}
        score = result.get(self.metric)
        if result.get("finished") is False and not error:  # stopped early (ASHA): PRUNED
            return super().on_trial_complete(trial_id, None, False)
        if score is None or not math.isfinite(score) or result.get("status") != "ok":
            return super().on_trial_complete(trial_id, None, True)  # FAIL, never a NaN
        super().on_trial_complete(trial_id, result, error)


def open_study(resolved: Resolved, sampler: optuna.samplers.BaseSampler | None = None,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """The search's Optuna study (created, or loaded to resume), labelled with what its values
    mean."""
    spec = resolved.spec
    study = optuna.create_study(storage=storage or optuna.storages.RDBStorage(resolved.storage),
                                study_name=resolved.study_name, direction="maximize",
                                load_if_exists=True, sampler=sampler)
    for name, value in (("selection", spec.selection), ("search_hash", resolved.hash),
                        ("dataset", spec.dataset), ("method", spec.method),
                        ("uses_test_data", SELECTION_RULES[spec.selection].uses_test_data)):
        study.set_user_attr(name, value)  # the study says what its values mean
    return study


def _optuna_searcher(resolved: Resolved) -> OptunaSearch:
    storage = optuna.storages.RDBStorage(resolved.storage)
    open_study(resolved, storage=storage)
    return NoNaNOptunaSearch(space=resolved.space.suggest, metric="score", mode="max",
                             sampler=make_sampler(resolved.spec, resolved.space),
                             storage=storage, study_name=resolved.study_name)


class SearchProgress(tune.Callback):
    """Terminal progress: trials done / running / failed, the best so far, elapsed time."""

    def __init__(self, total: int, selection: str, steps: int, interval_s: float = 15.0):
        self.total, self.selection, self.interval_s = total, selection, interval_s
        self.steps = steps
        self.start, self.last = time.time(), 0.0

    def setup(self, **info) -> None:
        self.start, self.last = time.time(), 0.0  # also after a restore

    def _line(self, trials) -> str:
        count = {"ok": 0, "diverged": 0}
        running = failed = stopped = 0
        best, at = None, []
        for t in trials:
            last = t.last_result or {}
            if t.status == "RUNNING":
                running += 1
                at.append(f"{last.get('step', 0)}/{self.steps}")
            elif t.status == "ERROR":
                failed += 1
            elif t.status == "TERMINATED":
                if last.get("finished") and last.get("status") in count:
                    count[last["status"]] += 1
                    score = last.get("score")
                    if score is not None and (best is None or score > best[0]):
                        best = (score, t)
                else:
                    stopped += 1
        finished = count["ok"] + count["diverged"] + failed + stopped
        best_text = "none yet" if best is None else (
            f"{best[0]:.4f} ({best[1].trial_id}: " + ", ".join(
                f"{k}={_short(v)}" for k, v in best[1].config.items()) + ")")
        elapsed = time.time() - self.start
        return (f"[search {elapsed // 60:.0f}m{elapsed % 60:02.0f}s] {finished}/{self.total} "
                f"finished ({count['ok']} ok, {count['diverged']} diverged, {failed} failed, "
                f"{stopped} stopped early), {running} running"
                f"{' (steps ' + ', '.join(at) + ')' if at else ''} | best {self.selection}: "
                f"{best_text}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.last = time.time()
        log_to_stderr(self._line(trials))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.last = time.time()
        log_to_stderr(self._line(trials) + f"  [trial {trial.trial_id} failed]")

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - self.last >= self.interval_s:
            self.last = time.time()
            log_to_stderr(self._line(trials))


class DropCheckpoints(tune.Callback):
    """A trial's checkpoints are removed once it has ended with its done record written (so
    disk use stays bounded by the running trials); a trial that failed keeps them."""

    def __init__(self, records_dir: str):
        self.records_dir = records_dir

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        key = (trial.last_result or {}).get("trial_key")
        if key and read_record(self.records_dir, key) is not None:
            drop_checkpoints(trial.path)


def drop_checkpoints(trial_dir: str | None) -> int:
    """Remove a Tune trial directory's checkpoints; the number removed."""
    if not trial_dir or "://" in trial_dir:  # cloud storage: Tune's num_to_keep bounds it
        return 0
    dirs = sorted(Path(trial_dir).glob("checkpoint_*"))
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    return len(dirs)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def concurrent_trials(spec: SearchSpec) -> int:
    """``max_concurrent``, else as many trials as the cluster's CPUs (and GPUs) hold now."""
    import ray

    resources = ray.cluster_resources()
    if spec.gpus_per_trial and not resources.get("GPU"):
        raise ConfigError(f"gpus_per_trial = {spec.gpus_per_trial} but the Ray cluster has no "
                          "GPUs; its trials would wait for ever (use 0 for CPU trials)")
    if spec.max_concurrent:
        return spec.max_concurrent
    fits = [resources.get("CPU", 1.0) / spec.cpus_per_trial]
    if spec.gpus_per_trial:
        fits.append(resources.get("GPU", 0.0) / spec.gpus_per_trial)
    return max(1, int(min(fits) + 1e-9))


def new_tuner(resolved: Resolved, trainable):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    spec = resolved.spec
    # Tune runs a custom searcher's trials one at a time unless told how many fit at once
    search_alg = ConcurrencyLimiter(_optuna_searcher(resolved),
                                    max_concurrent=concurrent_trials(spec))
    scheduler = FIFOScheduler()
    if spec.asha_grace is not None:
        # max_t one past the last step: ASHA stops a trial *at* max_t, before it could write
        # its done record; the trainer ends there by itself
        scheduler = ASHAScheduler(time_attr="step", metric="score", mode="max",
                                  max_t=resolved.setup.base["steps"] + 1,
                                  grace_period=spec.asha_grace,
                                  reduction_factor=spec.asha_reduction)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                    num_samples=resolved.trials, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"search-{resolved.hash}", storage_path=str(resolved.out / "ray"),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            # Ray copies its experiment state to storage_path every 300 s by default; a restore
            # should not start from a state that old (state is saved every ~10 s)
            sync_config=tune.SyncConfig(sync_period=10),
            # with checkpoint_every: the latest checkpoint of a running trial, no more
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[SearchProgress(resolved.trials, spec.selection,
                                      resolved.setup.base["steps"]),
                       *([] if spec.keep_checkpoints else
                         [DropCheckpoints(resolved.setup.records_dir)])], verbose=0))
