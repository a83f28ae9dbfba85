"""A search, resolved: what it runs (``SearchSpec``), checked and derived (``resolve``).

``resolve`` validates the whole search without side effects (no Ray, no files written), so bad
input fails with an error naming the parameter before any work starts, and it derives what
every trial shares (``TrialSetup``) and the search's hash, which names its work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.config import coerce, make_config
from pipeline.environments import load_envs
from pipeline.errors import ConfigError, check_range, lookup, unknown_name_message
from pipeline.search.space import SearchSpace, compose, parse_space
from pipeline.search.trial import TrialSetup
from pipeline.seeds import check_seeds
from pipeline.selection import SELECTION_RULES
from pipeline.versions import git_revision, library_versions

# name -> (Optuna sampler class, its keyword arguments besides the seed); constant liar:
# concurrent TPE trials do not all ask for the same point
SAMPLERS: dict[str, tuple[str, dict]] = {
    "tpe": ("TPESampler", {"constant_liar": True}),
    "random": ("RandomSampler", {}),
    "grid": ("GridSampler", {}),  # plus the grid, from the space
}
PLANNABLE = ("random", "grid")  # samplers that do not learn from results: share_prefix
DEFAULT_HOLDOUT = 0.2  # DomainBed's holdout_fraction, for training-domain validation


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
    # sampler random or grid: ask every trial up front and train the trials that agree on
    # their first updates as prefix trees (pipeline.search.planned), not through Tune
    share_prefix: bool = False
    # a Tune checkpoint of each trial's whole state every this many steps (0: none): a retried
    # or restored trial goes on from its latest one, bit for bit; not part of the search's hash
    checkpoint_every: int = 0
    keep_checkpoints: bool = False  # False: a trial's checkpoints go once its record is written


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


def resolve(spec: SearchSpec) -> Resolved:
    """Validate the whole search without side effects; every error names its parameter."""
    if spec.sampler not in SAMPLERS:
        raise ConfigError(unknown_name_message("sampler (--sampler)", spec.sampler, SAMPLERS))
    lookup(SELECTION_RULES, spec.selection, "selection rule (--selection)")
    space_name = spec.space or spec.method
    raw_space = compose(spec.spaces, space_name)
    check_seeds(spec.seeds)
    check_range("cpus_per_trial", spec.cpus_per_trial, 0.0, low_open=True)
    check_range("gpus_per_trial", spec.gpus_per_trial, 0.0)
    check_range("max_failures", spec.max_failures, 0)
    check_range("report_every", spec.report_every, 1)
    check_range("checkpoint_every", spec.checkpoint_every, 0)
    if not isinstance(spec.keep_checkpoints, bool):
        raise ConfigError(f"keep_checkpoints = {spec.keep_checkpoints!r}: give true or false")
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
    space = parse_space(raw_space, base, fixed)
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

    _check_share_prefix(spec, leave_one_out)
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
                "asha": [spec.asha_grace, spec.asha_reduction] if spec.asha_grace else None,
                # the order trials are asked in may differ from Tune's (not their numbers)
                **({"share_prefix": True} if spec.share_prefix else {})}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode())
    search_hash = digest.hexdigest()[:12]
    out = Path(spec.out).resolve()
    setup = TrialSetup(records_dir=str(out / "trials"), search_hash=search_hash, **setup_fields)
    storage = spec.storage or f"sqlite:///{out / 'study.db'}"
    return Resolved(spec, space, setup, trials, search_hash, out, storage,
                    f"{spec.dataset}-{space_name}-{search_hash}")


def _check_share_prefix(spec: SearchSpec, leave_one_out: bool) -> None:
    if not spec.share_prefix:
        return
    if spec.sampler not in PLANNABLE:
        raise ConfigError(f"share_prefix needs a sampler that does not learn from results "
                          f"(random or grid), so that every trial is known up front; sampler "
                          f"is {spec.sampler!r}")
    if spec.asha_grace is not None:
        raise ConfigError("share_prefix runs without Tune's scheduler: no ASHA (asha_grace)")
    if leave_one_out:
        raise ConfigError("share_prefix cannot run a leave_one_env_out search (its retraining "
                          "without each environment is not shared)")


def _check_asha(spec: SearchSpec, space: SearchSpace, base: dict) -> None:
    if spec.asha_grace is None:
        return
    cfg = make_config(None, **base)
    anneal = space.largest("anneal_iters", cfg)
    families = {cfg.schedule} | {v for d in space.all_dims() if d.key == "schedule"
                                 for v in d.bounds()}
    if "linear" in families:  # the weight is still ramping up until anneal + ramp
        anneal += space.largest("ramp_iters", cfg)
    milestones = [max(coerce("step_milestones", m) or [0]) for d in space.all_dims()
                  if d.key == "step_milestones" for m in d.bounds()] + list(cfg.step_milestones)
    last_jump = max([anneal, *milestones])
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
