"""The one training loop: K seeds of one configuration trained together as a stacked model.

Faithful to IRM's ``main.py`` by default: full batch, BCE with one logit, L2 over all parameters,
the penalty weight ``before`` the anneal, the loss divided by lambda when lambda > 1, Adam never
reset, and final metrics from the forward pass of the last step (before its update).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.augment import random_affine
from pipeline.config import TrainConfig
from pipeline.environments import Environment, EnvSet, draw_seed, load_envs, redraw_envs
from pipeline.errors import ConfigError
from pipeline.methods import METHODS, MethodContext, StepBatch, accuracy, bce
from pipeline.models import MODELS, StackedMLP, build_stacked, squared_weight_norm
from pipeline.precision import machine_info, resolve_formulation, resolve_precision
from pipeline.seeds import check_seeds, derive_seed
from pipeline.versions import git_revision, library_versions

ProgressFn = Callable[[dict], None]
CHECKPOINT_VERSION = 1


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(device)


@dataclass
class TrainResult:
    """Everything a run produced, JSON-ready: config, seeds, per-seed and aggregate metrics."""

    config: dict
    seeds: list[int]
    members: list[dict]
    metrics: dict
    curves: dict
    data: dict
    runtime: dict
    versions: dict = field(default_factory=library_versions)
    # metrics of shorter runs read off this one: {"101": {"members": [...], "metrics": {...}}}
    at_steps: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": self.config, "seeds": self.seeds, "metrics": self.metrics,
                "members": self.members, "at_steps": self.at_steps, "data": self.data,
                "runtime": self.runtime, "versions": self.versions, "curves": self.curves}


def computed_dtype(result: dict) -> str:
    """The precision a result was computed in: ``auto`` as resolved (runtime), else the config's
    (results written before the precision policy recorded only the config)."""
    return result.get("runtime", {}).get("dtype") or result["config"].get("dtype", "fp32")


def aggregate(members: list[dict]) -> dict:
    """Mean and std (ddof = 0, as in the published tables) over the members that did not diverge."""
    ok = [m for m in members if m["status"] == "ok"]
    names = sorted({k for m in ok for k in m["metrics"]})
    out = {}
    for name in names:
        values = torch.tensor([m["metrics"][name] for m in ok], dtype=torch.float64)
        out[name] = {"mean": values.mean().item(), "std": values.std(unbiased=False).item(),
                     "n": len(ok), "n_diverged": len(members) - len(ok)}
    return out


class _Data:
    """The environments as device tensors, prepared once per run.

    With ``holdout_fraction`` > 0 the last fraction of each training environment (the
    environments are already shuffled) becomes a validation environment ``NAME_val``, evaluated
    with the test environments: the data of training-domain validation.
    """

    def __init__(self, envset: EnvSet, device: torch.device, holdout_fraction: float = 0.0):
        task = envset.manifest.get("task", "binary_classification")
        if task != "binary_classification":
            raise ConfigError(f"dataset {envset.manifest.get('dataset')!r} is a {task} task; "
                              "the trainer handles binary classification (image datasets)")
        if not envset.train:
            raise ConfigError(f"dataset at {envset.path} has no training environments")
        self.train_envs, val_envs = [], []
        for env in envset.train:
            n_val = round(len(env) * holdout_fraction)
            if holdout_fraction and not 0 < n_val < len(env):
                raise ConfigError(f"holdout_fraction = {holdout_fraction} leaves no training or "
                                  f"no validation examples in {env.name} ({len(env)} examples)")
            keep = len(env) - n_val
            self.train_envs.append(_slice(env, 0, keep, env.name, "train"))
            if n_val:
                val_envs.append(_slice(env, keep, len(env), f"{env.name}_val", "val"))
        self.eval_envs = val_envs + envset.test
        self.sizes = [len(e) for e in self.train_envs]
        # full batch: one forward over every environment; the per-environment views share it
        self.x_all = torch.cat([envset.inputs(e) for e in self.train_envs]).to(device)
        self.x = list(self.x_all.split(self.sizes))
        self.y = [e.y.float().to(device) for e in self.train_envs]
        self.eval_x = [envset.inputs(e).to(device) for e in self.eval_envs]
        self.eval_y = [e.y.float().to(device) for e in self.eval_envs]
        self.input_shape = list(envset.manifest["input_shape"])
        self.shared = True  # every member sees these tensors; per member: (K, N, ...)

    @classmethod
    def per_member(cls, datas: list[_Data]) -> _Data:
        """Each member's own draw (``data_draw = per_seed``), stacked member-first: inputs
        (K, N, ...) and labels (K, N), the same environments and sizes in every draw."""
        first = datas[0]
        if any(d.sizes != first.sizes or [len(e) for e in d.eval_envs]
               != [len(e) for e in first.eval_envs] for d in datas):
            raise ConfigError("per-seed draws differ in their environments' sizes")
        out = cls.__new__(cls)
        out.train_envs, out.eval_envs, out.sizes = first.train_envs, first.eval_envs, first.sizes
        out.input_shape, out.shared = first.input_shape, False
        out.x_all = torch.stack([d.x_all for d in datas])
        out.x = list(out.x_all.split(out.sizes, dim=1))
        out.y = [torch.stack(ys) for ys in zip(*(d.y for d in datas), strict=True)]
        out.eval_x = [torch.stack(xs) for xs in zip(*(d.eval_x for d in datas), strict=True)]
        out.eval_y = [torch.stack(ys) for ys in zip(*(d.eval_y for d in datas), strict=True)]
        return out


def step_control(cfg: TrainConfig, schedule, step: int) -> tuple[float, bool]:
    """What a step depends on beyond the state it starts from: the penalty weight, and whether
    Adam is re-created first. Runs that agree on every other key and on the controls of steps
    0..t have the same state after step t, bit for bit (pipeline.shared_prefix)."""
    lam = schedule(step) if METHODS[cfg.method].has_penalty else 0.0
    reset = cfg.jump_rule == "reset_adam" and step > 0 and step in schedule.jump_steps()
    return lam, reset


def eval_steps(cfg: TrainConfig, record_at: Sequence[int] = ()) -> list[int]:
    """The steps where a run evaluates (before that step's update): every ``eval_every``, the
    last step, and the last step of every shorter run read off it (``record_at``)."""
    return sorted({*range(0, cfg.steps, cfg.eval_every), cfg.steps - 1,
                   *(n - 1 for n in record_at)})


def _check_record_at(record_at: Sequence[int], steps: int) -> list[int]:
    out = sorted({int(s) for s in record_at})
    if out and not 1 <= out[0] <= out[-1] <= steps:
        raise ConfigError(f"record_at = {out}: every run length must be in 1..steps ({steps})")
    return out


def _grown(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with NaN rows appended up to ``rows`` (a fork may run longer than its parent)."""
    if len(t) >= rows:
        return t
    return torch.cat([t, t.new_full((rows - len(t), *t.shape[1:]), math.nan)])


def _slice(env: Environment, start: int, stop: int, name: str, role: str) -> Environment:
    return Environment(name, role, env.x[start:stop], env.y[start:stop], env.params,
                       {k: v[start:stop] for k, v in env.extra.items()})


class Trainer:
    """Trains ``len(seeds)`` members of ``cfg`` together and returns a :class:`TrainResult`.

    ``record_at`` lists shorter run lengths (in steps) whose final metrics are read off this
    run: training is the same up to there, so a run of 501 steps also gives the runs of 101,
    201, ... steps (the IRM search's exhaustive ``steps``), bit for bit.
    """

    def __init__(self, cfg: TrainConfig, seeds: Sequence[int], envset: EnvSet | None = None,
                 progress: ProgressFn | None = None, record_at: Sequence[int] = ()):
        self.cfg, self.seeds, self.progress = cfg, check_seeds(seeds), progress
        self.record_at = _check_record_at(record_at, cfg.steps)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.envset = envset if envset is not None else load_envs(
            Path(cfg.envs_dir) / cfg.dataset)
        self.draw_seeds = None  # data_draw = shared: every member trains on the saved draw
        if cfg.data_draw == "per_seed":  # each member its own draw, as a restart draws it
            pool, data_seed = self.envset.pool(), int(self.envset.manifest["data_seed"])
            self.draw_seeds = [draw_seed(data_seed, s) for s in self.seeds]
            self.data = _Data.per_member([
                _Data(redraw_envs(self.envset, d, pool), self.device, cfg.holdout_fraction)
                for d in self.draw_seeds])
        else:
            self.data = _Data(self.envset, self.device, cfg.holdout_fraction)
        self.schedule = cfg.schedule_obj()
        # the first layer's matmul: the shape class that calibrates the precision and the
        # formulation where they are auto (pipeline.precision)
        rows = sum(self.data.sizes) if not cfg.batch_size else cfg.batch_size * len(
            self.data.sizes)
        shape = (rows, math.prod(self.data.input_shape), cfg.hidden_dim)
        self.precision = resolve_precision(cfg.dtype, self.device, shape)
        if MODELS[cfg.model].stacked is StackedMLP:
            self.formulation, self.formulation_reason = resolve_formulation(
                cfg.formulation, self.device, self.precision, shape)
        else:
            self.formulation, self.formulation_reason = "vmap", "the model is stacked by vmap"
        self.model = build_stacked(cfg.model, self.data.input_shape, cfg.hidden_dim, self.seeds,
                                   "auto" if self.formulation == "vmap" else self.formulation
                                   ).to(self.device)
        if cfg.augment != "none" and len(self.data.input_shape) != 3:
            raise ConfigError(f"augment = {cfg.augment!r} needs an image dataset (C, H, W); "
                              f"{cfg.dataset} has input shape {self.data.input_shape}")
        with torch.no_grad():  # the representation's width, for methods that act on it
            probe = self.data.x_all[:1] if self.data.shared else self.data.x_all[:, :1]
            feature_dim = self.model(probe, shared=self.data.shared)[1].shape[-1]
        self.method = METHODS[cfg.method](cfg, MethodContext(
            seeds=tuple(self.seeds), n_envs=len(self.data.train_envs), feature_dim=feature_dim,
            device=self.device))
        self.git = git_revision()  # the code that runs: read now, not when the run ends
        self.progress_interval_s = 30.0  # progress at every evaluation and at least this often
        self.samplers = [torch.Generator().manual_seed(derive_seed(s, "minibatch"))
                         for s in self.seeds]
        self.augmenters = [torch.Generator().manual_seed(derive_seed(s, "augment"))
                           for s in self.seeds]
        self._start()

    def _autocast(self):
        return self.precision.autocast(self.device)

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [*self.model.parameters(), *self.method.parameters()]
        return torch.optim.Adam(params, lr=self.cfg.lr)

    def _model_forward(self, x: torch.Tensor, shared: bool = True):
        """The stacked model under the run's autocast: logits (K, N) in fp32 and features."""
        with self._autocast():
            logits, feats = self.model(x, shared=shared)
        return logits.float(), feats

    def _forward_train(self, step: int = 0) -> StepBatch:
        """Logits of every member on every training environment (full batch or minibatch)."""
        data, b, k = self.data, self.cfg.batch_size, len(self.seeds)
        if b == 0:
            x, labels, sizes = data.x_all, data.y, data.sizes
        else:
            idx = [torch.stack([torch.randint(n, (b,), generator=g) for g in self.samplers])
                   .to(self.device) for n in data.sizes]  # (K, b): each member its own rows
            if data.shared:
                x = torch.cat([xe[i] for xe, i in zip(data.x, idx, strict=True)], dim=1)
                labels = [ye[i] for ye, i in zip(data.y, idx, strict=True)]
            else:  # member k's rows of member k's draw
                members = torch.arange(k, device=self.device)[:, None]
                x = torch.cat([xe[members, i] for xe, i in zip(data.x, idx, strict=True)],
                              dim=1)
                labels = [ye[members, i] for ye, i in zip(data.y, idx, strict=True)]
            sizes = [b] * len(data.sizes)
        shared = b == 0 and data.shared
        if self.cfg.augment != "none":  # every member sees its own random transforms
            if shared:
                x = x.unsqueeze(0).expand(k, *x.shape)
            x, shared = random_affine(x, self.cfg, self.augmenters), False
        logits, feats = self._model_forward(x, shared)
        feats_env = list(feats.split(sizes, dim=1))
        logits_env = [self.method.predict(lg, ft) for lg, ft in
                      zip(logits.split(sizes, dim=1), feats_env, strict=True)]
        inputs = list(x.split(sizes, dim=0 if shared else 1))
        risks = torch.stack([bce(lg, y) for lg, y in zip(logits_env, labels, strict=True)], 1)
        return StepBatch(logits_env, labels, feats_env, risks, inputs=inputs,
                         shared_inputs=shared, forward=self._model_forward, step=step)

    def _predict(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """The method's prediction (K, N) in fp32: the model's logit unless the method
        predicts otherwise (IRM-Game's ensemble of environment heads). The model runs under
        the run's autocast (the caller's) and the method's prediction outside it, as in
        training (:meth:`_forward_train`)."""
        logits, feats = self.model(x, shared=shared)
        with torch.autocast(self.device.type, enabled=False):
            return self.method.predict(logits.float(), feats)

    @torch.no_grad()
    def _evaluate(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> list[torch.Tensor]:
        """Accuracy (K,) of every member on each of the given environments."""
        out, shared = [], self.data.shared
        chunk = MODELS[self.cfg.model].eval_chunk  # examples per member and forward
        with self._autocast():
            for x, y in zip(xs, ys, strict=True):
                if chunk is None:  # the whole environment in one forward (no copy)
                    logits = self._predict(x, shared)
                else:
                    logits = torch.cat([self._predict(p, shared)
                                        for p in x.split(chunk, dim=0 if shared else 1)], dim=-1)
                out.append(accuracy(logits, y))
        return out

    # -- the loop: resumable (advance) and forkable (fork), so that runs which agree on every
    # -- step's update up to some step can share those steps (pipeline.shared_prefix)

    def eval_steps(self) -> list[int]:
        return eval_steps(self.cfg, self.record_at)

    def control(self, step: int) -> tuple[float, bool]:
        return step_control(self.cfg, self.schedule, step)

    def _start(self) -> None:
        k, dev = len(self.seeds), self.device
        curve_names = ["objective", "nll", "penalty",
                       *[f"{e.name}_acc" for e in self.data.train_envs]]
        self.optimizer = self._optimizer()
        self.curves = {n: torch.full((self.cfg.steps, k), math.nan, device=dev)
                       for n in curve_names}
        self.evals: dict[int, list[torch.Tensor]] = {}  # step -> accuracy (K,) per eval env
        self.train_evals: dict[int, torch.Tensor] = {}  # minibatches: step -> (E, K) full data
        self.extra_eval_steps: set[int] = set()  # evaluated for runs forked from this one
        self.diverged_at = torch.full((k,), -1, dtype=torch.long, device=dev)
        self.next_step, self.finished, self.wall = 0, False, 0.0
        self.shared_steps = 0  # steps this run took over from the run it was forked from
        self.wall_at_fork = 0.0  # the wall time of those steps
        self.steps_trained = 0  # steps this trainer object ran itself
        self._last_report = -math.inf

    def advance(self, until: int, stop_when_diverged: bool = True) -> None:
        """Run steps ``next_step .. until - 1`` (each: forward, records, evaluation, update).

        The last step of the run has no update: its forward gives the final metrics. With
        ``stop_when_diverged`` the run ends at its first evaluation where every member has
        diverged; a run that is to be forked trains on (its forks stop where they would).
        """
        cfg, data = self.cfg, self.data
        own_evals, evals = set(self.eval_steps()), set(self.eval_steps()) | self.extra_eval_steps
        start = time.perf_counter()
        for step in range(self.next_step, min(until, cfg.steps)):
            lam, reset = self.control(step)
            self.steps_trained += 1
            if reset:
                self.optimizer = self._optimizer()  # DomainBed: Adam dislikes the jump in scale
            batch = self._forward_train(step)
            nll = self.method.risk(batch.risks)
            penalty = self.method.penalty(batch)
            objective = (nll + cfg.l2_weight * squared_weight_norm(self.model) + lam * penalty
                         + self.method.regularizer(batch))
            if cfg.jump_rule == "divide_loss" and lam > 1.0:
                objective = objective / lam  # IRM: "keep gradients in a reasonable range"
            with torch.no_grad():
                train_acc = torch.stack([accuracy(lg, y) for lg, y in
                                         zip(batch.logits, batch.labels, strict=True)])
                if cfg.batch_size and step in evals:  # minibatches: the whole environments
                    self.train_evals[step] = torch.stack(self._evaluate(data.x, data.y))
                    if step in own_evals:  # (a fork takes its own from train_evals)
                        train_acc = self.train_evals[step]
                for name, value in zip(self.curves, [objective, nll, penalty, *train_acc],
                                       strict=True):
                    self.curves[name][step] = value.detach()
                newly = ~torch.isfinite(objective) & (self.diverged_at < 0)
                self.diverged_at = torch.where(newly, step, self.diverged_at)
            if step in evals:
                self.evals[step] = self._evaluate(data.eval_x, data.eval_y)
            self.next_step = step + 1
            stop = (stop_when_diverged and step in own_evals
                    and bool((self.diverged_at >= 0).all()))
            now = time.perf_counter()
            if step in evals or now - self._last_report >= self.progress_interval_s:
                self._last_report = now  # test accuracy shown: that of the latest evaluation
                self._report(step, self.wall + now - start, lam)
            if stop or step == cfg.steps - 1:
                self.finished = True  # the last step's metrics are those before its update
                break
            self.optimizer.zero_grad(set_to_none=True)
            self.method.backward(objective, batch, [*self.model.member_parameters(),
                                                    *self.method.parameters()])
            self.optimizer.step()
        self.wall += time.perf_counter() - start

    def fork(self, cfg: TrainConfig, record_at: Sequence[int] = ()) -> Trainer:
        """A trainer for ``cfg`` that continues from this one's state (model, optimizer,
        method state, random generators, records): ``cfg`` may differ from this run's only in
        the schedule's keys and ``steps``, and the caller forks where the two runs' controls
        (:meth:`control`) have agreed so far. This trainer is left as it was."""
        new = copy.copy(self)  # shares the data and the environments (read only)
        new.cfg, new.schedule = cfg, cfg.schedule_obj()
        new.record_at = _check_record_at(record_at, cfg.steps)
        new.model, new.method, new.samplers, new.augmenters = copy.deepcopy(
            (self.model, self.method, self.samplers, self.augmenters))
        new.method.cfg = cfg
        new.optimizer = new._optimizer()
        new.optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        rows = max(cfg.steps, self.cfg.steps)
        new.curves = {n: _grown(c, rows)[: cfg.steps].clone() for n, c in self.curves.items()}
        new.evals = dict(self.evals)  # their tensors are never written in place
        new.train_evals = dict(self.train_evals)
        # minibatches: the fork records the whole environments' accuracy at its own
        # evaluation steps so far (this run may have recorded a minibatch's there)
        train_names = [f"{e.name}_acc" for e in self.data.train_envs]
        for step in eval_steps(cfg, new.record_at):
            if step < self.next_step and step in self.train_evals:
                for name, acc in zip(train_names, self.train_evals[step], strict=True):
                    new.curves[name][step] = acc
        new.extra_eval_steps = set()
        new.diverged_at = self.diverged_at.clone()
        new.shared_steps, new.steps_trained = self.next_step, 0
        new.wall_at_fork = self.wall
        return new

    def run(self, checkpoint_every: int = 0,
            on_checkpoint: Callable[[Trainer], None] | None = None) -> TrainResult:
        """Train to the end; with ``checkpoint_every``, call ``on_checkpoint`` every that many
        steps (after the update of step ``n * checkpoint_every - 1``) while steps remain."""
        with self.precision.active(self.device):  # TF32 on or off for this run alone
            while not self.finished:
                until = self.cfg.steps
                if checkpoint_every:
                    until = min(until, (self.next_step // checkpoint_every + 1)
                                * checkpoint_every)
                self.advance(until)
                if not self.finished and on_checkpoint is not None:
                    on_checkpoint(self)
            return self.result()

    # -- checkpoints: the whole state of a run between two steps, so that a run resumed from
    # -- one continues bit for bit as if it had never stopped

    def state_dict(self) -> dict:
        """Everything the remaining steps depend on (the data and config are rebuilt)."""
        return {"version": CHECKPOINT_VERSION, "config": self.cfg.to_dict(),
                "seeds": list(self.seeds), "record_at": list(self.record_at),
                "next_step": self.next_step, "finished": self.finished,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "method": self.method, "samplers": self.samplers,
                "augmenters": self.augmenters, "curves": self.curves, "evals": self.evals,
                "train_evals": self.train_evals, "extra_eval_steps": self.extra_eval_steps,
                "diverged_at": self.diverged_at, "wall": self.wall,
                "steps_trained": self.steps_trained, "shared_steps": self.shared_steps,
                "wall_at_fork": self.wall_at_fork,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": (torch.cuda.get_rng_state_all() if self.device.type == "cuda"
                             else None)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` of a run of the same config and seeds."""
        mine = {"config": self.cfg.to_dict(), "seeds": list(self.seeds),
                "record_at": list(self.record_at)}
        theirs = {k: state.get(k) for k in mine}
        if state.get("version") != CHECKPOINT_VERSION or _drop_envs_dir(theirs) != \
                _drop_envs_dir(mine):
            raise ConfigError("the checkpoint is not this run's (another config, seeds or "
                              "checkpoint version); it cannot be resumed")
        self.model.load_state_dict(state["model"])
        self.method = state["method"]
        self.method.cfg = self.cfg
        self.optimizer = self._optimizer()  # over the restored method's parameters
        self.optimizer.load_state_dict(state["optimizer"])
        for key in ("samplers", "augmenters", "curves", "evals", "train_evals",
                    "extra_eval_steps", "diverged_at", "next_step", "finished", "wall",
                    "steps_trained", "shared_steps", "wall_at_fork"):
            setattr(self, key, state[key])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def result(self) -> TrainResult:
        """The finished run's result."""
        if not self.finished:
            raise RuntimeError("result() before the run finished (advance to cfg.steps)")
        return self._result()

    def _report(self, step: int, elapsed: float, lam: float) -> None:
        if self.progress is None:
            return
        alive = self.diverged_at < 0
        evaluated_at = max(s for s in self.evals if s <= step)
        eval_names = [e.name for e in self.data.eval_envs]
        train_names = [e.name for e in self.data.train_envs]

        def mean_alive(t: torch.Tensor) -> float:
            return t[alive].mean().item() if alive.any() else math.nan

        def stat(t: torch.Tensor) -> dict:
            values = t[alive].double()
            if not len(values):
                return {"mean": math.nan, "std": math.nan}
            return {"mean": values.mean().item(), "std": values.std(unbiased=False).item()}

        per_env = {f"{n}_acc": self.curves[f"{n}_acc"][step] for n in train_names}
        train = torch.stack(list(per_env.values())).mean(0)
        evals = {f"{n}_acc": acc for n, acc in
                 zip(eval_names, self.evals[evaluated_at], strict=True)}
        val = [v for k, v in evals.items() if k.endswith("_val_acc")]
        metrics = {**per_env, "train_acc": train, **evals,
                   **({"val_acc": torch.stack(val).mean(0)} if val else {})}
        self.progress({"step": step, "steps": self.cfg.steps, "elapsed_s": elapsed,
                       "evaluated_at": evaluated_at,
                       "eta_s": (elapsed - self.wall_at_fork)
                       / max(1, step + 1 - self.shared_steps) * (self.cfg.steps - step - 1),
                       "penalty_weight": lam, "train_acc": mean_alive(train),
                       **{f"{k}": mean_alive(v) for k, v in evals.items()},
                       "diverged": int((~alive).sum()),
                       # mean and std (ddof = 0) over the members that have not diverged
                       "metrics": {k: stat(v) for k, v in metrics.items()}})

    def _last_step(self, diverged_at: list[int], eval_steps: list[int]) -> int:
        """The run's last step: its last, or its first evaluation with every member diverged."""
        if all(d >= 0 for d in diverged_at):
            return next(s for s in eval_steps if s >= max(diverged_at))
        return self.cfg.steps - 1

    def _result(self) -> TrainResult:
        train_names = [e.name for e in self.data.train_envs]
        eval_names = [e.name for e in self.data.eval_envs]
        eval_steps = self.eval_steps()
        curves = {n: c.cpu() for n, c in self.curves.items()}
        diverged_at = self.diverged_at.cpu().tolist()
        last_step = self._last_step(diverged_at, eval_steps)
        missing = torch.full((len(self.seeds),), math.nan)  # after the run stopped
        eval_curve = {n: torch.stack([self.evals[s][j].cpu() if s in self.evals else missing
                                      for s in eval_steps]) for j, n in enumerate(eval_names)}
        rows = {step: row for row, step in enumerate(eval_steps)}

        def members_at(step: int) -> list[dict]:
            """Per-seed final metrics of a run that ends after ``step + 1`` steps."""
            out = []
            for i, seed in enumerate(self.seeds):
                if 0 <= diverged_at[i] <= step or step > last_step:
                    out.append({"seed": seed, "status": "diverged",
                                "diverged_step": diverged_at[i], "metrics": {}})
                    continue
                env_acc = {f"{n}_acc": curves[f"{n}_acc"][step, i].item() for n in train_names}
                eval_acc = {f"{n}_acc": eval_curve[n][rows[step], i].item()
                            for n in eval_names}
                val_acc = [v for k, v in eval_acc.items() if k.endswith("_val_acc")]
                metrics = {**env_acc,
                           "train_acc": sum(env_acc.values()) / len(env_acc),
                           **eval_acc,
                           **({"val_acc": sum(val_acc) / len(val_acc)} if val_acc else {}),
                           "nll": curves["nll"][step, i].item(),
                           "penalty": curves["penalty"][step, i].item()}
                out.append({"seed": seed, "status": "ok", "diverged_step": None,
                            "metrics": metrics})
            return out

        members = members_at(last_step)
        at_steps = {}
        for n in self.record_at:
            at = members_at(n - 1)
            at_steps[str(n)] = {"members": at, "metrics": aggregate(at)}

        def per_member(t: torch.Tensor, steps_of_rows: list[int]) -> list[list[float | None]]:
            cols = []
            for i in range(len(self.seeds)):
                col = []
                for row, step in enumerate(steps_of_rows):
                    dead = 0 <= diverged_at[i] <= step or step > last_step
                    col.append(None if dead else t[row, i].item())
                cols.append(col)
            return cols

        steps_run = list(range(last_step + 1))
        weights = [self.control(t)[0] for t in steps_run]
        curve_out = {"step": steps_run,  # JSON has no inf
                     "penalty_weight": [w if math.isfinite(w) else None for w in weights],
                     **{n: per_member(c[: last_step + 1], steps_run) for n, c in curves.items()},
                     "eval_step": eval_steps,
                     **{f"{n}_acc": per_member(c, eval_steps) for n, c in eval_curve.items()}}
        manifest = self.envset.manifest
        data = {"dataset": manifest.get("dataset"), "path": str(self.envset.path),
                "manifest_sha256": self.envset.manifest_sha256, "source": manifest.get("source"),
                "reduced": bool(manifest.get("reduced")), "data_seed": manifest.get("data_seed"),
                "draw": self.cfg.data_draw,
                **({"draw_seeds": self.draw_seeds,
                    "pool_sha256": manifest["pool"]["sha256"]} if self.draw_seeds else {})}
        machine = machine_info()
        wall = self.wall
        runtime = {"device": str(self.device), **self.precision.to_dict(),
                   "tf32": self.precision.dtype == "tf32",
                   "formulation": self.formulation,
                   "formulation_reason": self.formulation_reason,
                   "cpu": machine["cpu"], "cpu_capability": machine["cpu_capability"],
                   "cpu_native_bf16": machine["cpu_native_bf16"],
                   **({"cuda_device": machine["cuda_device"]} if "cuda_device" in machine
                      else {}),
                   "threads": torch.get_num_threads(), "wall_s": wall,
                   "steps_run": last_step + 1,
                   "ms_per_step": 1000 * wall / (last_step + 1),
                   "ms_per_step_per_seed": 1000 * wall / (last_step + 1) / len(self.seeds),
                   # steps trained once for several runs (pipeline.shared_prefix); the wall
                   # time counts them in each run that shares them
                   **({"shared_steps": self.shared_steps} if self.shared_steps else {}),
                   "git": self.git}
        return TrainResult(self.cfg.to_dict(), self.seeds, members, aggregate(members),
                           curve_out, data, runtime, at_steps=at_steps)


def _drop_envs_dir(run: dict) -> dict:
    """Where the data lies is not part of a run's identity (its sha256 is checked apart)."""
    return {**run, "config": {k: v for k, v in (run["config"] or {}).items()
                              if k != "envs_dir"}}


def save_checkpoint(trainer: Trainer, path: Path | str) -> Path:
    """The trainer's state, written atomically (a reader sees all of it or nothing)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(trainer.state_dict(), tmp)
    tmp.replace(path)
    return path


def load_checkpoint(trainer: Trainer, path: Path | str) -> None:
    # weights_only=False: the state holds the method object and the random generators; a
    # checkpoint is the run's own file, never one from elsewhere
    trainer.load_state_dict(torch.load(path, map_location=trainer.device, weights_only=False))


def train(cfg: TrainConfig, seeds: Sequence[int], envset: EnvSet | None = None,
          progress: ProgressFn | None = None, record_at: Sequence[int] = ()) -> TrainResult:
    """Train one configuration for every seed in ``seeds`` as one batched model."""
    return Trainer(cfg, seeds, envset, progress, record_at).run()
