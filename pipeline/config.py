"""The resolved configuration of a training run, its presets and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from pipeline.errors import ConfigError, as_number, check_range, unknown_name_message
from pipeline.schedules import Schedule

# how a run computes (pipeline.precision): auto = bf16 only where native and measured faster
DTYPES = ("fp32", "bf16", "tf32", "auto")
JUMP_RULES = ("divide_loss", "reset_adam", "none")
RISK_REDUCTIONS = ("mean", "sum")
IRM_ESTIMATORS = ("closed_form", "autograd", "two_half")
VREX_PENALTIES = ("variance", "squared_difference")
FISHR_REDUCTIONS = ("sum", "mean")
AUGMENTATIONS = ("none", "affine")


@dataclass
class TrainConfig:
    """Everything that determines a run's numbers (with the seeds). Defaults: IRM's ``main.py``."""

    dataset: str = "colored_mnist"
    envs_dir: str = "data/envs"
    model: str = "mlp"
    hidden_dim: int = 256
    method: str = "erm"
    irm_estimator: str = "closed_form"  # autograd = double backprop; two_half = unbiased product
    risk_reduction: str = "mean"  # of the environment risks; REx's code sums them
    vrex_penalty: str = "variance"  # DomainBed; squared_difference = REx/Fishr's (L1 - L2)^2
    # hyperparameters of the other methods (each method checks its own; see pipeline.methods)
    andmask_tau: float = 1.0  # AND-mask: keep where |mean sign| >= tau (DomainBed default 1)
    fishr_ema: float = 0.0  # Fishr: moving average of the variances (0 = none, the CMNIST code)
    fishr_reduction: str = "sum"  # the CMNIST script sums the squared distances; DomainBed: mean
    groupdro_eta: float = 0.01  # GroupDRO: step size of the exponentiated environment weights
    ib_weight: float = 0.0  # IB-IRM: weight of the feature variance (information bottleneck)
    ib_anneal_iters: int = 0  # IB-IRM: the IB term applies from this step on
    fgsm_epsilon: float = 0.1  # adversarial: the FGSM step in input units (pixels in [0, 1])
    dann_hidden: int = 256  # dann: hidden width of the environment adversary (0 = linear)
    birm_samples: int = 10  # BIRM: samples of each environment's variational classifier
    birm_prior_sd_coef: float = 1200.0  # BIRM: the classifier's sd is prior_sd_coef / data_num
    # data augmentation of the training inputs (image datasets): none | affine
    augment: str = "none"
    aug_degrees: float = 15.0  # affine: rotation drawn from U(-degrees, degrees)
    aug_shear: float = 10.0  # affine: shear (degrees) drawn from U(-shear, shear)
    aug_scale_min: float = 0.9  # affine: scale drawn from U(scale_min, scale_max)
    aug_scale_max: float = 1.1
    # penalty-weight schedule (see pipeline.schedules)
    schedule: str = "constant"
    penalty_weight: float = 0.0
    anneal_iters: int = 0
    weight_before_anneal: float = 1.0
    ramp_iters: int = 100
    poly_k: float = 1.0
    poly_power: float = 1.6
    exp_rate: float = 1.05
    penalty_cap: float | None = None
    step_milestones: list[int] = field(default_factory=list)
    step_values: list[float] = field(default_factory=list)
    jump_rule: str = "divide_loss"  # IRM: loss /= lambda when lambda > 1; DomainBed: reset Adam
    # optimisation
    lr: float = 1e-3
    l2_weight: float = 1e-3  # times the sum of squared parameters, biases included
    steps: int = 501
    batch_size: int = 0  # per environment; 0 = full batch (the IRM protocol)
    eval_every: int = 100  # test environments are evaluated here and at the last step
    holdout_fraction: float = 0.0  # of each training env, held out as NAME_val (0 = protocol)
    # execution (recorded; they may change the last bits of the numbers)
    device: str = "auto"
    dtype: str = "fp32"  # fp32 | bf16 | tf32 (CUDA) | auto; see pipeline.precision
    threads: int = 0  # 0 = torch's default for this machine
    formulation: str = "auto"  # bmm | linear | auto (timed per machine): stacked matmuls

    def schedule_obj(self) -> Schedule:
        return Schedule(
            family=self.schedule, weight=self.penalty_weight, anneal_iters=self.anneal_iters,
            before=self.weight_before_anneal, ramp_iters=self.ramp_iters, k=self.poly_k,
            power=self.poly_power, rate=self.exp_rate, cap=self.penalty_cap,
            milestones=tuple(self.step_milestones), values=tuple(self.step_values))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict] = {
    # facebookresearch/InvariantRiskMinimization@fc185d0:
    # code/colored_mnist/reproduce_paper_results.sh
    "irm_paper": {"method": "irm", "hidden_dim": 390, "l2_weight": 0.00110794568,
                  "lr": 0.0004898536566546834, "anneal_iters": 190,
                  "penalty_weight": 91257.18613115903, "steps": 501},
    "erm_paper": {"method": "erm", "hidden_dim": 256, "l2_weight": 0.001, "lr": 0.001,
                  "anneal_iters": 0, "penalty_weight": 0.0, "steps": 501},
    "gray_paper": {"method": "erm", "model": "mlp_gray", "hidden_dim": 83,
                   "l2_weight": 0.0008602868865288383, "lr": 0.0028171488133821726,
                   "anneal_iters": 0, "penalty_weight": 0.0, "steps": 101},
}

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def field_type(name: str):
    return typing.get_type_hints(TrainConfig)[name]


def coerce(key: str, value):
    """Convert ``value`` (a string from the CLI, or a YAML value) to the field's type."""
    if key not in _FIELDS:
        raise ConfigError(unknown_name_message("config key", key, _FIELDS))
    kind = field_type(key)
    optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if typing.get_origin(kind) is list:
            (inner,) = typing.get_args(kind)
            if isinstance(value, str):
                value = [v for v in value.strip("[]").split(",") if v.strip()]
            return [as_number(key, v, int) if inner is int else inner(v) for v in value]
        if kind is int:
            return as_number(key, value, int)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):  # int("inf") overflows
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{key} = {value!r} is not a valid {name}") from None
    return value


def parse_set(items: list[str] | None) -> dict:
    """``["lr=0.01", "steps=60"]`` -> ``{"lr": 0.01, "steps": 60}`` with types checked."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = coerce(key.strip(), value.strip())
    return out


def make_config(preset: str | None = None, **overrides) -> TrainConfig:
    """A validated config: defaults, then the preset, then the overrides."""
    values = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(unknown_name_message("preset", preset, PRESETS))
        values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(**{k: coerce(k, v) for k, v in values.items()})
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Check names against their registries and values against their ranges."""
    from pipeline.methods import METHODS
    from pipeline.models import FORMULATIONS, MODELS

    for key, registry in (("model", MODELS), ("method", METHODS)):
        if getattr(cfg, key) not in registry:
            raise ConfigError(unknown_name_message(key, getattr(cfg, key), registry))
    for key, valid in (("dtype", DTYPES), ("jump_rule", JUMP_RULES),
                       ("risk_reduction", RISK_REDUCTIONS), ("irm_estimator", IRM_ESTIMATORS),
                       ("vrex_penalty", VREX_PENALTIES),
                       ("fishr_reduction", FISHR_REDUCTIONS), ("augment", AUGMENTATIONS),
                       ("formulation", FORMULATIONS)):
        if getattr(cfg, key) not in valid:
            raise ConfigError(unknown_name_message(key, getattr(cfg, key), valid))
    check_range("hidden_dim", cfg.hidden_dim, 1)
    check_range("lr", cfg.lr, 0.0, low_open=True)
    check_range("l2_weight", cfg.l2_weight, 0.0)
    check_range("steps", cfg.steps, 1)
    check_range("batch_size", cfg.batch_size, 0)
    check_range("eval_every", cfg.eval_every, 1)
    check_range("holdout_fraction", cfg.holdout_fraction, 0.0, 0.9)
    check_range("threads", cfg.threads, 0)
    if not (cfg.device in ("auto", "cpu") or cfg.device.startswith("cuda")):
        raise ConfigError(f"device = {cfg.device!r}; valid choices: auto, cpu, cuda, cuda:N")
    if cfg.irm_estimator == "two_half" and cfg.batch_size == 1:
        raise ConfigError("irm_estimator = 'two_half' needs batch_size >= 2 (or 0 = full batch)")
    check_range("aug_degrees", cfg.aug_degrees, 0.0, 180.0)
    check_range("aug_shear", cfg.aug_shear, 0.0, 89.0)
    check_range("aug_scale_min", cfg.aug_scale_min, 0.0, low_open=True)
    check_range("aug_scale_max", cfg.aug_scale_max, cfg.aug_scale_min)
    METHODS[cfg.method].validate(cfg)
    cfg.schedule_obj()  # validates the schedule's family and parameters
