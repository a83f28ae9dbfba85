"""IRM experiment library: environments, models, methods, schedules, the batched trainer.

The names below load their module on first use (PEP 562), so ``import pipeline.environments``
does not import the trainer: each DVC stage then depends on exactly the modules it runs.
"""

import importlib

_EXPORTS = {
    "PRESETS": "config", "TrainConfig": "config", "make_config": "config",
    "DATASETS": "environments", "Environment": "environments", "EnvSet": "environments",
    "load_envs": "environments", "make_envs": "environments", "ConfigError": "errors",
    "METHODS": "methods", "Method": "methods", "StepBatch": "methods", "MODELS": "models",
    "build_stacked": "models", "SCHEDULES": "schedules", "Schedule": "schedules",
    "TrainResult": "training", "train": "training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.{_EXPORTS[name]}"), name)
