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
    ray/              Ray Tune's experiment state (``Tuner.restore`` resumes from it)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from pipeline.config import make_config
from pipeline.environments import load_envs
from pipeline.errors import (
    ConfigError,
    as_number,
    check_range,
    lookup,
    unknown_name_message,
)
from pipeline.provenance import git_revision, library_versions
from pipeline.search.space import SearchSpace, parse_space
from pipeline.search.trial import TrialSetup, read_record, rows_of, run_trial
from pipeline.selection import SELECTION_RULES, select, train_env_keys

# name -> (Optuna sampler class, its keyword arguments besides the seed); constant liar:
# concurrent TPE trials do not all ask for the same point
SAMPLERS: dict[str, tuple[str, dict]] = {
    "tpe": ("TPESampler", {"constant_liar": True}),
    "random": ("RandomSampler", {}),
    "grid": ("GridSampler", {}),  # plus the grid, from the space
}
DEFAULT_HOLDOUT = 0.2  # DomainBed's holdout_fraction, for training-domain validation
Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class SearchSpec:
    """Everything a search needs; ``resolve`` checks it and derives the rest."""

    dataset: str
    method: str
    spaces: dict  # name -> space (params.yaml: search_spaces)
    out: str
    space: str | None = None  # which of ``spaces``; default: the method's name
    sampler: str = "tpe"
    trials: int | None = None  # default 20; grid: the grid's size
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    search_seed: int = 0
    selection: str = "train_domain_val"
    fixed: dict = field(default_factory=dict)  # --set: the same value in every trial
    envs_dir: str = "data/envs"
    address: str | None = None  # None: RAY_ADDRESS, else a local in-process Ray
    storage: str | None = None  # Optuna storage URL; default sqlite:///OUT/study.db
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2  # a crashing trial is retried this many times
    report_every: int = 50  # steps between reports to Tune (and test evaluations)
    asha_grace: int | None = None  # ASHA early stopping; None = off
    asha_reduction: float = 3.0


@dataclass
class Resolved:
    spec: SearchSpec
    space: SearchSpace
    setup: TrialSetup
    trials: int
    hash: str
    out: Path
    storage: str
    study_name: str

    def describe(self) -> dict:
        spec = asdict(self.spec)
        spec.pop("spaces")
        return {"hash": self.hash, "search": spec, "space_name": self.space_name,
                "space": self.space.describe(), "trials": self.trials,
                "base_config": self.setup.base, "record_at": list(self.setup.record_at),
                "selection": self.setup.selection,
                "selection_uses_test_data": SELECTION_RULES[self.setup.selection].uses_test_data,
                "data_sha256": self.setup.data_sha256, "optuna_storage": self.storage,
                "optuna_study": self.study_name, "sampler_settings": sampler_settings(self.spec),
                "versions": library_versions(), "git": git_revision()}

    @property
    def space_name(self) -> str:
        return self.spec.space or self.spec.method


def sampler_settings(spec: SearchSpec) -> dict:
    name, kwargs = SAMPLERS[spec.sampler]
    return {"sampler": name, "seed": spec.search_seed, **kwargs}


def make_sampler(spec: SearchSpec, space: SearchSpace) -> optuna.samplers.BaseSampler:
    name, kwargs = SAMPLERS[spec.sampler]
    grid = (space.grid(),) if spec.sampler == "grid" else ()
    return getattr(optuna.samplers, name)(*grid, seed=spec.search_seed, **kwargs)


def resolve(spec: SearchSpec) -> Resolved:
    """Validate the whole search without side effects; every error names its parameter."""
    if spec.sampler not in SAMPLERS:
        raise ConfigError(unknown_name_message("sampler (--sampler)", spec.sampler, SAMPLERS))
    lookup(SELECTION_RULES, spec.selection, "selection rule (--selection)")
    space_name = spec.space or spec.method
    if space_name not in spec.spaces:
        raise ConfigError(unknown_name_message(
            "search space (declare it under search_spaces in params.yaml)", space_name,
            spec.spaces) if spec.spaces else
            f"no search spaces declared; add search_spaces.{space_name} to params.yaml")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds) or min(spec.seeds) < 0:
        raise ConfigError(f"seeds must be distinct and >= 0 (got {spec.seeds})")
    check_range("cpus_per_trial", spec.cpus_per_trial, 0.0, low_open=True)
    check_range("gpus_per_trial", spec.gpus_per_trial, 0.0)
    check_range("max_failures", spec.max_failures, 0)
    check_range("report_every", spec.report_every, 1)
    if spec.max_concurrent is not None:
        check_range("max_concurrent", spec.max_concurrent, 1)

    envs_dir = Path(spec.envs_dir).resolve()
    envs_path = envs_dir / spec.dataset
    if not (envs_path / "manifest.json").is_file():
        raise ConfigError(f"no environments for dataset {spec.dataset!r} at {envs_path}; "
                          f"build them with `python -m pipeline make-envs --dataset "
                          f"{spec.dataset} --out {envs_path}` (or pass --envs-dir)")
    envset = load_envs(envs_path)

    fixed = dict(spec.fixed)
    for key in ("dataset", "method", "envs_dir"):
        if key in fixed:
            raise ConfigError(f"--set {key}=... is not allowed in a search; use --{key}")
    holdout = fixed.get("holdout_fraction",
                        DEFAULT_HOLDOUT if spec.selection == "train_domain_val" else 0.0)
    if spec.selection == "train_domain_val" and not holdout:
        raise ConfigError("selection 'train_domain_val' needs holdout_fraction > 0 (validation "
                          "data held out of each training environment); drop --set "
                          "holdout_fraction=0 or choose --selection oracle / irm_paper")
    # A trial without a GPU share must not use one that Ray leaves visible to it; the device
    # is part of the config, hence of the hash and of every trial key.
    base_values = {"eval_every": spec.report_every, "threads": max(1, int(spec.cpus_per_trial)),
                   "device": "cuda" if spec.gpus_per_trial else "cpu", **fixed,
                   "dataset": spec.dataset, "method": spec.method, "envs_dir": str(envs_dir),
                   "holdout_fraction": holdout}
    base = make_config(None, **base_values).to_dict()
    space = parse_space(spec.spaces[space_name], base, fixed)
    if space.steps:
        base = make_config(None, **{**base, "steps": max(space.steps)}).to_dict()

    leave_one_out = spec.selection == "leave_one_env_out"
    if leave_one_out and len(envset.train) < 3:
        raise ConfigError(
            f"selection 'leave_one_env_out' needs >= 3 training environments; "
            f"{spec.dataset} has {len(envset.train)} ({', '.join(e.name for e in envset.train)})."
            " Build more (e.g. make-envs --set train_flips=[0.1,0.2,0.3]) or choose "
            "train_domain_val")
    if leave_one_out and spec.asha_grace is not None:
        raise ConfigError("ASHA (--asha-grace) cannot rank trials under leave_one_env_out: "
                          "its score exists only when a trial ends")

    if spec.sampler == "grid":
        size = space.grid_size()
        trials = size if spec.trials is None else min(spec.trials, size)
    else:
        trials = 20 if spec.trials is None else spec.trials
    check_range("trials", trials, 1)
    _check_asha(spec, space, base)

    setup_fields = {"base": base, "seeds": tuple(spec.seeds), "record_at": space.steps,
                    "selection": spec.selection, "data_sha256": envset.manifest_sha256,
                    "leave_one_out": leave_one_out}
    identity = {**setup_fields, "base": {k: v for k, v in base.items() if k != "envs_dir"},
                "space_name": space_name, "space": space.describe(), "sampler": spec.sampler,
                "trials": trials, "search_seed": spec.search_seed,
                "asha": [spec.asha_grace, spec.asha_reduction] if spec.asha_grace else None}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode())
    search_hash = digest.hexdigest()[:12]
    out = Path(spec.out).resolve()
    setup = TrialSetup(records_dir=str(out / "trials"), search_hash=search_hash, **setup_fields)
    storage = spec.storage or f"sqlite:///{out / 'study.db'}"
    return Resolved(spec, space, setup, trials, search_hash, out, storage,
                    f"{spec.dataset}-{space_name}-{search_hash}")


def _check_asha(spec: SearchSpec, space: SearchSpace, base: dict) -> None:
    if spec.asha_grace is None:
        return
    cfg = make_config(None, **base)
    anneal = space.largest("anneal_iters", cfg)
    families = {cfg.schedule} | {v for d in space.all_dims() if d.key == "schedule"
                                 for v in d.bounds()}
    if "linear" in families:  # the weight is still ramping up until anneal + ramp
        anneal += space.largest("ramp_iters", cfg)
    milestones = [m for d in space.all_dims() if d.key == "step_milestones"
                  for m in d.bounds()] + list(cfg.step_milestones)
    last_jump = max([anneal, *[max(m) if isinstance(m, list) else m for m in milestones]])
    if spec.asha_grace <= last_jump:
        raise ConfigError(
            f"asha grace period ({spec.asha_grace} steps) must exceed the largest anneal "
            f"iteration in the space ({int(last_jump)}, ramp included): before it trials are "
            f"ranked on their "
            f"ERM-phase accuracy, which the penalty is meant to trade away")
    if spec.asha_grace >= cfg.steps:
        raise ConfigError(f"asha grace period ({spec.asha_grace}) must be below the number of "
                          f"steps ({cfg.steps}), or ASHA never stops anything")
    check_range("asha_reduction", spec.asha_reduction, 1.0, low_open=True)


# -- Ray ---------------------------------------------------------------------------------------

def _reachable(address: str, source: str = "--address") -> None:
    """Fail fast, naming the address, instead of Ray's long retry loop."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{source} {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379) "
                          "or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"{source} {address}: no Ray cluster answers there ({exc.strerror or exc}). Start "
            "one with `ray start --head --port PORT` (the recipe: docs/search.md), or "
            "omit --address (and RAY_ADDRESS) for a local Ray on this machine") from None


def connect(address: str | None, log: Log) -> bool:
    """Connect to Ray; True if this call started it (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    source = "--address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    quiet = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None:
        log("starting a local Ray on this machine (no --address / RAY_ADDRESS)")
        # "local": a new Ray, never a cluster that `ray start` left running (or dead) here
        ray.init(address="local", include_dashboard=False, **quiet)
        return True
    _reachable(address, source)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(
            f"{source} {address}: could not join the Ray cluster ({exc}). If it uses token "
            "authentication (Ray's default), export RAY_AUTH_TOKEN=$(ray get-auth-token) from "
            "the head node first") from None
    log(f"joined the Ray cluster at {address}: {ray.cluster_resources().get('CPU', 0):.0f} "
        f"CPUs, {ray.cluster_resources().get('GPU', 0):.0f} GPUs")
    return True


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


def _optuna_searcher(resolved: Resolved) -> OptunaSearch:
    spec = resolved.spec
    sampler = make_sampler(spec, resolved.space)
    storage = optuna.storages.RDBStorage(resolved.storage)
    study = optuna.create_study(storage=storage, study_name=resolved.study_name,
                                direction="maximize", load_if_exists=True)
    for name, value in (("selection", spec.selection), ("search_hash", resolved.hash),
                        ("dataset", spec.dataset), ("method", spec.method),
                        ("uses_test_data", SELECTION_RULES[spec.selection].uses_test_data)):
        study.set_user_attr(name, value)  # the study says what its values mean
    return NoNaNOptunaSearch(space=resolved.space.suggest, metric="score", mode="max",
                             sampler=sampler, storage=storage, study_name=resolved.study_name)


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
        _stderr(self._line(trials))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.last = time.time()
        _stderr(self._line(trials) + f"  [trial {trial.trial_id} failed]")

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - self.last >= self.interval_s:
            self.last = time.time()
            _stderr(self._line(trials))


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# -- running -----------------------------------------------------------------------------------

@dataclass
class SearchOutcome:
    out: Path
    hash: str
    table: list[dict]  # the rows of trials.parquet (plus their metrics as dicts)
    best: dict | None
    resumed: bool
    timing: dict = field(default_factory=dict)  # seconds: connect (Ray start-up), fit, total


def existing_search(resolved: Resolved) -> bool:
    """True if ``out`` holds this search (resume); an error if it holds another. Reads only."""
    marker = resolved.out / "search.json"
    if not marker.is_file():
        return False
    try:
        previous = json.loads(marker.read_text())
    except json.JSONDecodeError:
        previous = {}
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
        marker.write_text(json.dumps(resolved.describe(), indent=1) + "\n")


def run_search(spec: SearchSpec, log: Log = _stderr) -> SearchOutcome:
    """Run (or resume) a search and write its table, best config and Optuna study."""
    t0 = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines suffice
    resolved = resolve(spec)
    resumed = existing_search(resolved)
    started = connect(spec.address, log)  # an unreachable address fails before --out is touched
    t1 = time.perf_counter()
    try:
        concurrent_trials(spec)  # a GPU request the cluster cannot meet fails here
        claim_out(resolved)
        experiment = resolved.out / "ray" / f"search-{resolved.hash}"
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, setup=resolved.setup),
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
            tuner = _new_tuner(resolved, trainable)
        # Our own metric check: trials may report without a score (no NaN ever reaches Tune).
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 silences the old engine
        grid = tuner.fit()
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


def _new_tuner(resolved: Resolved, trainable):
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
            callbacks=[SearchProgress(resolved.trials, spec.selection,
                                      resolved.setup.base["steps"])], verbose=0))


# -- the table ---------------------------------------------------------------------------------

def collect(resolved: Resolved, grid) -> list[dict]:
    """One row per trial and run length, from the done records (and Tune for the rest)."""
    rows = []
    for result in grid:
        sampled = dict(result.config or {})
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or (Path(result.path).name if result.path else "?")
        error = str(result.error).strip().splitlines()[-1][:300] if result.error else None
        try:
            key = resolved.setup.key(sampled)
        except ConfigError as exc:  # cannot happen for a validated space; never lose the table
            key, sampled, error = None, {}, error or str(exc)
        record = read_record(resolved.setup.records_dir, key) if key else None
        if record is not None:
            for row in rows_of(record):
                rows.append(_row(resolved, trial_id, key, sampled, row, record))
            continue
        reported_any = "trial_key" in metrics  # Tune fills in its own keys in any case
        if metrics.get("finished"):
            status, error = "failed", (
                f"finished on {metrics.get('hostname', 'another node')} but its done record "
                f"is not in {resolved.setup.records_dir}: on a cluster --out must be on "
                "storage that every node shares")
        else:
            status = "failed" if error else "stopped" if reported_any else "not run"
        reported = {k.split("/")[0]: {"mean": v} for k, v in metrics.items()
                    if k.endswith("/mean")}
        rows.append(_row(resolved, trial_id, key, sampled,
                         {"steps": metrics.get("step") if reported_any else None,
                          "status": status, "n_diverged": metrics.get("diverged"),
                          "metrics": reported}, None, error))
    # Finished work that Tune no longer knows of (killed before its state reached storage,
    # then other trials were asked for): still this search's results, so still in the table.
    seen = {r["trial_key"] for r in rows}
    for path in sorted(Path(resolved.setup.records_dir).glob("*.json")):
        record = read_record(path.parent, path.stem)
        if record and record.get("search_hash") == resolved.hash and record["key"] not in seen:
            for row in rows_of(record):
                rows.append(_row(resolved, record.get("trial", "?"), record["key"],
                                 record["sampled"], row, record))
    # by trial key (a hash of what the trial computes), not by Tune's random trial id: the same
    # search gives the same table order, and so the same tie-breaks in selection
    rows.sort(key=lambda r: (str(r["trial_key"]), r["steps"] or 0))
    keys = train_env_keys([{"metrics": r["_metrics"]} for r in rows])
    rule = SELECTION_RULES[resolved.setup.selection]
    for r in rows:
        score = rule.score({"metrics": r["_metrics"]}, keys) if r["status"] == "ok" else None
        r["score"] = score
    return rows


def _row(resolved: Resolved, trial_id, key, sampled, row, record, error=None) -> dict:
    setup = resolved.setup
    try:
        cfg = setup.config(sampled).to_dict()
    except ConfigError:
        cfg = dict(setup.base)
    result = (record or {}).get("result", {})
    out = {"search": resolved.hash, "trial": trial_id, "trial_key": key,
           "status": row["status"], "steps": row["steps"], "selection": setup.selection,
           "score": None, "n_seeds": len(setup.seeds),
           "seeds": ",".join(map(str, setup.seeds)), "n_diverged": row["n_diverged"]}
    for name, stat in sorted(row["metrics"].items()):
        out[f"{name}.mean"] = stat.get("mean")
        out[f"{name}.std"] = stat.get("std")
    for k, v in cfg.items():
        out[f"config.{k}"] = json.dumps(v) if isinstance(v, list) else v
    if record is not None:  # a finished run length; otherwise steps is where it stopped
        out["config.steps"] = row["steps"]
    runtime, node = result.get("runtime", {}), (record or {}).get("node", {})
    data = result.get("data", {})
    out.update({"searched": json.dumps(sampled, sort_keys=True),
                "wall_s": runtime.get("wall_s"), "device": runtime.get("device"),
                "dtype": runtime.get("dtype"), "dtype_requested": runtime.get("dtype_requested"),
                "dtype_reason": runtime.get("dtype_reason"),
                "formulation": runtime.get("formulation"), "cpu": runtime.get("cpu"),
                "cpu_capability": runtime.get("cpu_capability"), "node_id": node.get("node_id"),
                "node_ip": node.get("node_ip"), "hostname": node.get("hostname"),
                "data_source": data.get("source"), "data_reduced": data.get("reduced"),
                "data_sha256": setup.data_sha256, "git": runtime.get("git"),
                "versions": json.dumps(result.get("versions", {}), sort_keys=True),
                "error": error, "_metrics": row["metrics"]})
    return out


def write_outputs(resolved: Resolved, rows: list[dict]) -> dict | None:
    import pandas as pd

    out = resolved.out
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "_metrics"} for r in rows])
    frame.to_parquet(out / "trials.parquet", index=False)
    frame.to_csv(out / "trials.csv", index=False)
    records = [{"status": r["status"], "metrics": r["_metrics"]} for r in rows]
    best = None
    try:
        if not any(r["status"] == "ok" for r in rows):
            raise ConfigError("no trial finished without diverging or failing")
        chosen = select(records, resolved.setup.selection)
    except ConfigError as exc:
        rule = resolved.setup.selection  # what the evaluation and the report need to say so
        best = {"selection": rule, "uses_test_data": SELECTION_RULES[rule].uses_test_data,
                "selected": None, "reason": str(exc), "search": resolved.hash,
                "seeds": list(resolved.setup.seeds), "dataset": resolved.spec.dataset,
                "method": resolved.spec.method}
    else:
        row = rows[chosen.index]
        record = read_record(resolved.setup.records_dir, row["trial_key"])
        searched = json.loads(row["searched"])
        # the config of the selected run length: train it with `train --set` to reproduce
        config = make_config(None, **{**resolved.setup.config(searched).to_dict(),
                                      "steps": row["steps"]}).to_dict()
        best = {"selection": chosen.rule, "uses_test_data": chosen.uses_test_data,
                "score": chosen.score, "search": resolved.hash, "trial": row["trial"],
                "trial_key": row["trial_key"], "steps": row["steps"], "searched": searched,
                "config": config,
                "seeds": list(resolved.setup.seeds), "metrics": row["_metrics"],
                "data": (record or {}).get("result", {}).get("data"),
                "versions": library_versions()}
    (out / "best.json").write_text(json.dumps(best, indent=1, default=str) + "\n")
    return best


def summary(resolved: Resolved, rows: list[dict], best: dict | None) -> str:
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    lines = [f"search {resolved.hash} done: " + ", ".join(f"{n} {s}" for s, n in
                                                          sorted(statuses.items())),
             f"wrote {resolved.out}/trials.parquet, trials.csv, best.json; Optuna study "
             f"{resolved.study_name!r} in {resolved.storage}"]
    rule = SELECTION_RULES[resolved.setup.selection]
    if best and best.get("selected", True) is not None and "score" in best:
        test = best["metrics"].get("test_acc", {}).get("mean")
        lines.append(
            f"selected by {best['selection']}"
            f"{' (USES TEST DATA)' if rule.uses_test_data else ''}: score {best['score']:.4f}"
            + (f", test {100 * test:.1f}%" if test is not None else "")
            + f"; {json.dumps(best['searched'])}, steps {best['steps']}")
    elif best:
        lines.append(f"no trial could be selected: {best.get('reason')}")
    return "\n".join(lines)


# -- params.yaml -------------------------------------------------------------------------------

PARAM_KEYS = {"sampler": "sampler", "trials": "trials", "seeds": "seeds", "seed": "search_seed",
              "selection": "selection", "set": "fixed",
              "envs_dir": "envs_dir", "address": "address", "storage": "storage",
              "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial",
              "max_concurrent": "max_concurrent", "max_failures": "max_failures",
              "report_every": "report_every", "asha_grace": "asha_grace",
              "asha_reduction": "asha_reduction"}


# Numbers in the search section, checked (and YAML strings like "8" converted) up front, so a
# wrong type fails with the key's name instead of deep inside a comparison.
NUMERIC_FIELDS = {"trials": int, "search_seed": int, "cpus_per_trial": float,
                  "gpus_per_trial": float, "max_concurrent": int, "max_failures": int,
                  "report_every": int, "asha_grace": int, "asha_reduction": float}


def seeds_from(value) -> list[int]:
    """``3`` -> [0, 1, 2]; a list is taken as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return list(range(value))
    if isinstance(value, list | tuple) and all(isinstance(s, int) for s in value):
        return list(value)
    raise ConfigError(f"seeds = {value!r}: give a count (3 = seeds 0..2) or a list of seeds")


def spec_from_params(section: dict | None, **overrides) -> SearchSpec:
    """A search from params.yaml's ``search`` section; ``overrides`` (not None) win.

    The spaces come from params.yaml's ``search_spaces`` (``spaces=``): kept out of ``search``
    so that DVC re-runs a method's searches only when that method's space changes. The DVC
    stage and the CLI both come through here, so they run the same search.
    """
    section = dict(section or {})
    unknown = set(section) - set(PARAM_KEYS)
    if unknown:
        raise ConfigError(unknown_name_message("key in params.yaml 'search'", sorted(unknown)[0],
                                               PARAM_KEYS))
    values = {PARAM_KEYS[k]: v for k, v in section.items() if v is not None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "seeds" in values:
        values["seeds"] = seeds_from(values["seeds"])
    names = {field: key for key, field in PARAM_KEYS.items()}
    for field_name, kind in NUMERIC_FIELDS.items():
        if values.get(field_name) is not None:
            values[field_name] = as_number(names[field_name], values[field_name], kind)
    for field_name in ("sampler", "selection"):
        if field_name in values and not isinstance(values[field_name], str):
            raise ConfigError(f"{field_name} = {values[field_name]!r} must be a name")
    if "fixed" in values:
        from pipeline.config import coerce

        if not isinstance(values["fixed"], dict):
            raise ConfigError(f"set = {values['fixed']!r} must be a mapping of config keys "
                              "to values, e.g. {dtype: bf16}")
        values["fixed"] = {k: coerce(k, v) for k, v in values["fixed"].items()}
    values.setdefault("spaces", {})
    missing = [k for k in ("dataset", "method", "out") if k not in values]
    if missing:
        raise ConfigError(f"a search needs {', '.join(missing)}")
    return SearchSpec(**values)
