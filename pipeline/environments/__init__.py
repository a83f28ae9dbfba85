"""Named environment datasets: build once with :func:`make_envs`, load with :func:`load_envs`."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.environments.cifar_mnist import CIFAR_MNIST_DEFAULTS, build_cifar_mnist
from pipeline.environments.colored import (
    COLORED_FASHION_DEFAULTS,
    COLORED_MNIST_DEFAULTS,
    COLORED_MNIST_DOMAINBED_DEFAULTS,
    build_colored_fashion_mnist,
    build_colored_mnist,
    build_colored_mnist_domainbed,
    redraw,
)
from pipeline.environments.sem import SEM_DEFAULTS, SEM_SETUPS, build_sem
from pipeline.environments.sem_appendix import SEM_APPENDIX_DEFAULTS, build_sem_appendix
from pipeline.environments.store import Environment, EnvSet, load_envset, save_envset
from pipeline.errors import ConfigError, lookup, unknown_name_message
from pipeline.locks import output_lock
from pipeline.seeds import derive_seed
from pipeline.versions import library_versions

DEFAULT_ENVS_DIR = Path("data/envs")
BUILDER_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    build: Callable[[dict, int], tuple[list[Environment], dict]]
    defaults: dict
    description: str
    # (pool, params, seed) -> the environments of another draw; None: cannot redraw per seed
    redraw: Callable[[dict, dict, int], list[Environment]] | None = None


DATASETS: dict[str, DatasetSpec] = {
    "colored_mnist": DatasetSpec(
        build_colored_mnist, COLORED_MNIST_DEFAULTS,
        "IRM paper protocol: MNIST train split, envs flip 0.2 / 0.1, test flip 0.9, 14x14",
        functools.partial(redraw, "colored_mnist")),
    "colored_fashion_mnist": DatasetSpec(
        build_colored_fashion_mnist, COLORED_FASHION_DEFAULTS,
        "Fashion-MNIST, footwear vs clothing (Bag dropped), IRM's colouring; offline-ready",
        functools.partial(redraw, "colored_fashion_mnist")),
    "sem": DatasetSpec(
        build_sem, SEM_DEFAULTS,
        f"IRM paper's linear SEM; setups from {', '.join(SEM_SETUPS)}, reps stacked"),
    "colored_mnist_domainbed": DatasetSpec(
        build_colored_mnist_domainbed, COLORED_MNIST_DOMAINBED_DEFAULTS,
        "DomainBed's ColoredMNIST: MNIST train+test (70k) dealt [i::3] to +90%/+80%/-90% "
        "(flips 0.1/0.2/0.9), 28x28; test_env picks the test role (default 2, -90%)"),
    "cifar_mnist": DatasetSpec(
        build_cifar_mnist, CIFAR_MNIST_DEFAULTS,
        "IRMBed's Cifar-MNIST: MNIST 0/1 digit stacked on CIFAR-10 automobile/truck, 3x64x32; "
        "label = CIFAR class (10% noise), digit agrees 99.9%/80% (train) and 10% (test)"),
    "sem_appendix": DatasetSpec(
        build_sem_appendix, SEM_APPENDIX_DEFAULTS,
        "IRM paper appendix's two-environment linear example (env 0.1 / 1.0, n 10000, d 2); "
        "regression, solved by pipeline.sem.appendix"),
}


def resolve_dataset_params(dataset: str, overrides: dict | None = None) -> dict:
    """The dataset's defaults updated with ``overrides``; an unknown key is an error."""
    spec = lookup(DATASETS, dataset, "dataset")
    params = copy.deepcopy(spec.defaults)
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ConfigError(unknown_name_message(f"parameter of dataset {dataset!r}:", key,
                                                   params))
        params[key] = value
    return params


def make_envs(dataset: str, seed: int = 0, out_dir: Path | str | None = None,
              params: dict | None = None) -> Path:
    """Build the named dataset's environments and save them with a manifest; returns the dir."""
    spec = lookup(DATASETS, dataset, "dataset")
    resolved = resolve_dataset_params(dataset, params)
    out = Path(out_dir) if out_dir is not None else DEFAULT_ENVS_DIR / dataset
    with output_lock(out, "--out"):  # two builds of one directory would mix their files
        envs, info = spec.build(resolved, seed)
        pool = info.pop("_pool", None)  # tensors: saved beside the environments, not the JSON
        manifest = {"dataset": dataset, "builder_version": BUILDER_VERSION, "data_seed": seed,
                    "params": resolved, **info,
                    "versions": {k: v for k, v in library_versions().items()
                                 if k in ("torch", "numpy", "pipeline")}}
        save_envset(envs, manifest, out, pool)
    return out


def load_envs(path: Path | str) -> EnvSet:
    """Load a saved environment set (a directory written by :func:`make_envs`)."""
    return load_envset(path)


def draw_seed(data_seed: int, member_seed: int) -> int:
    """The seed of a member's own draw: from (data seed, member seed), as a restart draws."""
    return derive_seed(data_seed, "draw", str(member_seed))


def redraw_envs(envset: EnvSet, seed: int, pool: dict | None = None) -> EnvSet:
    """Another draw of ``envset``'s environments from its pool, with ``seed`` (the same names,
    roles and sizes; ``seed`` = the data seed gives the saved environments)."""
    name = envset.manifest.get("dataset")
    spec = DATASETS.get(name)
    if spec is None or spec.redraw is None:
        can = ", ".join(n for n, s in DATASETS.items() if s.redraw is not None)
        raise ConfigError(f"data_draw = 'per_seed' needs a dataset that can redraw its "
                          f"environments ({can}); {name!r} cannot: use data_draw = 'shared'")
    envs = spec.redraw(pool if pool is not None else envset.pool(), envset.manifest["params"],
                       seed)
    return EnvSet(envs, envset.manifest, envset.manifest_sha256, envset.path)


__all__ = ["DATASETS", "DEFAULT_ENVS_DIR", "EnvSet", "Environment", "draw_seed", "load_envs",
           "make_envs", "redraw_envs", "resolve_dataset_params"]
