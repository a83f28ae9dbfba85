"""IRM experiment library: environments, models, methods, schedules, the batched trainer."""

from pipeline.config import PRESETS, TrainConfig, make_config
from pipeline.environments import DATASETS, Environment, EnvSet, load_envs, make_envs
from pipeline.errors import ConfigError
from pipeline.methods import METHODS, Method, StepBatch
from pipeline.models import MODELS, build_stacked
from pipeline.schedules import SCHEDULES, Schedule
from pipeline.training import TrainResult, train

__all__ = [
    "DATASETS", "METHODS", "MODELS", "PRESETS", "SCHEDULES", "ConfigError", "EnvSet",
    "Environment", "Method", "Schedule", "StepBatch", "TrainConfig", "TrainResult",
    "build_stacked", "load_envs", "make_config", "make_envs", "train",
]
