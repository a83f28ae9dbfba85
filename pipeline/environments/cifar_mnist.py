"""IRMBed's Cifar-MNIST: a CIFAR-10 image (invariant) stacked under an MNIST digit (spurious).

The construction follows IRMBed/IRMBed ``data/mnistcifar_utils.py`` (``get_binary_mnist``,
``get_binary_cifar``, ``combine_datasets_by_envs``, ``OneEnv``, ``EnvsConfigure``, ``_combine``):

- MNIST train + test, digits ``mnist_digits`` = (d0, d1) only, padded by 2 pixels to 32x32 and
  repeated to 3 channels; CIFAR-10 train + test, classes ``cifar_classes`` = (c0, c1) only.
- The label is the CIFAR class (c1 -> 1), flipped with ``label_noise`` (one Bernoulli draw per
  CIFAR image, before anything is paired). The images are then split into four pools: CIFAR
  label 1 / label 0, MNIST digit d1 / digit d0, each cut to the size of the smallest.
- Environment sizes: ``train_num // n_train_envs`` per training environment (IRMBed's equal
  ``train_envs_ratio``), ``test_num`` for the test environment. In an environment of size N with
  spurious correlation r: ``cp = N // 2`` label-1 and ``cn = N - cp`` label-0 examples, of which
  exactly ``int(cp * r)`` and ``int(cn * r)`` get the digit that agrees with the label (d1 for
  label 1, d0 for label 0), the rest the other digit. The counts are exact, not Bernoulli draws.
- Pools are dealt in order without replacement (IRMBed's ``DataCube``), environment after
  environment, in IRMBed's order (cp-agree, cn-agree, cp-disagree, cn-disagree); each image is the
  MNIST part on top of the CIFAR part: 3 x 64 x 32 (``np.concatenate(..., axis=1)`` on CHW).

Recorded differences: every random choice is seeded by the data seed (IRMBed's order of the
binary subsets comes from an unseeded-or-global ``np.random.permutation``; here each pool is
shuffled with its own seeded permutation), each environment is shuffled on its own (IRMBed
shuffles all environments together and splits them by index, the same thing per environment),
and images stay uint8 at 64x32 (IRMBed's loader resizes to 256 and crops 224 with ImageNet
normalisation, for its ImageNet-pretrained ResNets; that is a model-side transform).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.environments.sources import RawImages, RawSplit, load_cifar10, load_mnist
from pipeline.environments.store import Environment
from pipeline.errors import ConfigError, as_number, check_range

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# IRMBed's defaults: CifarMnistSpuriousDataset(cifar_classes=(1, 9)), get_mnist_cifar_env(
# mnist_classes=(0, 1)), run.py's train_num = 10000, test_num = 1800, and the README's
# "2 Env" setting (--cons_ratios 0.999_0.8_0.1, --label_noise_ratio 0.10).
CIFAR_MNIST_DEFAULTS = {
    "cifar_source": "torchvision", "mnist_source": "auto",
    "cifar_classes": [1, 9], "mnist_digits": [0, 1],
    "train_correlations": [0.999, 0.8], "test_correlation": 0.1, "label_noise": 0.1,
    "train_num": 10000, "test_num": 1800,
}


def _pair(params: dict, key: str, high: int) -> tuple[int, int]:
    value = params[key]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{key} = {value!r} must be two distinct integers in 0..{high} "
                          "(the first gets label 0, the second label 1)")
    pair = tuple(as_number(f"{key}[{i}]", v, int) for i, v in enumerate(value))
    for i, v in enumerate(pair):
        check_range(f"{key}[{i}]", v, 0, high)
    if pair[0] == pair[1]:
        raise ConfigError(f"{key} = {value!r}: the two entries must differ")
    params[key] = list(pair)
    return pair


def _validate(params: dict) -> None:
    _pair(params, "cifar_classes", 9)
    _pair(params, "mnist_digits", 9)
    corr = params["train_correlations"]
    if not isinstance(corr, list | tuple) or len(corr) < 1:
        raise ConfigError("train_correlations must be a list of spurious correlations, one per "
                          f"training environment (got {corr!r})")
    params["train_correlations"] = [as_number(f"train_correlations[{i}]", r)
                                    for i, r in enumerate(corr)]
    for i, r in enumerate(params["train_correlations"]):
        check_range(f"train_correlations[{i}]", r, 0.0, 1.0)
    for key in ("test_correlation", "label_noise"):
        params[key] = as_number(key, params[key])
        check_range(key, params[key], 0.0, 1.0)
    for key in ("train_num", "test_num"):
        params[key] = as_number(key, params[key], int)
    check_range("train_num", params["train_num"], 2 * len(params["train_correlations"]))
    check_range("test_num", params["test_num"], 2)


def env_counts(size: int, correlation: float) -> dict[str, int]:
    """IRMBed's ``OneEnv.assign``: label-1/label-0 halves, each split agree/disagree exactly."""
    cp = size // 2
    cn = size - cp
    cpmp, cnmn = int(cp * correlation), int(cn * correlation)
    return {"cpmp": cpmp, "cnmn": cnmn, "cpmn": cp - cpmp, "cnmp": cn - cnmn}


def mnist_as_cifar(images: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 digits -> (N, 3, 32, 32): 2 pixels of zero padding, 3 equal channels."""
    return F.pad(images, (2, 2, 2, 2)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


class _Pool:
    """A shuffled pool of images dealt in order, never twice (IRMBed's ``DataCube``)."""

    def __init__(self, images: torch.Tensor, ids: torch.Tensor, what: str):
        self.images, self.ids, self.what, self.index = images, ids, what, 0

    def send(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        stop = self.index + n
        assert stop <= len(self.ids), f"{self.what}: need {stop}, have {len(self.ids)}"
        out = self.images[self.index:stop], self.ids[self.index:stop]
        self.index = stop
        return out


def _binary(split: RawSplit, pair: tuple[int, int]) -> RawSplit:
    keep = torch.isin(split.labels, torch.tensor(pair))
    return RawSplit(split.images[keep], split.labels[keep])


def _concat(raw: RawImages, pair: tuple[int, int]) -> RawSplit:
    splits = [_binary(s, pair) for s in (raw.train, raw.test) if s is not None]
    return RawSplit(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))


def build_cifar_mnist(params: dict, seed: int) -> tuple[list[Environment], dict]:
    _validate(params)
    c0, c1 = params["cifar_classes"]
    d0, d1 = params["mnist_digits"]
    corrs = [*params["train_correlations"], params["test_correlation"]]
    n_train_envs = len(params["train_correlations"])
    sizes = [params["train_num"] // n_train_envs] * n_train_envs + [params["test_num"]]
    counts = [env_counts(n, r) for n, r in zip(sizes, corrs, strict=True)]

    cifar_raw = load_cifar10(str(params["cifar_source"]))
    mnist_raw = load_mnist(str(params["mnist_source"]))
    cifar, mnist = _concat(cifar_raw, (c0, c1)), _concat(mnist_raw, (d0, d1))
    notes = [*cifar_raw.notes, *mnist_raw.notes]
    notes.append(f"CIFAR-10 classes {c0} ({CIFAR10_CLASSES[c0]}) -> label 0 and {c1} "
                 f"({CIFAR10_CLASSES[c1]}) -> label 1, train + test splits: {len(cifar.labels)} "
                 f"images; MNIST digits {d0} (agrees with label 0) and {d1} (label 1), "
                 f"{'train + test' if mnist_raw.test is not None else 'the only split'}: "
                 f"{len(mnist.labels)} images")
    if mnist_raw.test is None:
        notes.append(f"REDUCED: {mnist_raw.source} has no MNIST test split")

    rng = np.random.RandomState(seed)  # one stream: label noise, then the four pool orders
    gen = torch.Generator().manual_seed(seed)
    noise = torch.from_numpy(rng.rand(len(cifar.labels)) < params["label_noise"])
    clean = (cifar.labels == c1).long()
    label = clean ^ noise.long()
    cifar_ids, mnist_ids = torch.arange(len(cifar.labels)), torch.arange(len(mnist.labels))
    groups = {"cp": cifar_ids[label == 1], "cn": cifar_ids[label == 0],
              "mp": mnist_ids[mnist.labels == d1], "mn": mnist_ids[mnist.labels == d0]}
    n = min(len(ids) for ids in groups.values())  # IRMBed cuts every pool to the smallest
    need = {"cp": sum(c["cpmp"] + c["cpmn"] for c in counts),
            "cn": sum(c["cnmn"] + c["cnmp"] for c in counts),
            "mp": sum(c["cpmp"] + c["cnmp"] for c in counts),
            "mn": sum(c["cnmn"] + c["cpmn"] for c in counts)}
    if max(need.values()) > n:
        have = ", ".join(f"{k} {len(v)}" for k, v in groups.items())
        raise ConfigError(
            f"train_num = {params['train_num']} and test_num = {params['test_num']} need "
            f"{max(need.values())} images of one pool, but each pool is cut to the smallest, "
            f"{n} (CIFAR label 1/0 = cp/cn, MNIST digit {d1}/{d0} = mp/mn: {have}); lower "
            "train_num or test_num")
    pools = {}
    for key, ids in groups.items():
        ids = ids[torch.from_numpy(rng.permutation(len(ids)))][:n]
        images = cifar.images[ids] if key[0] == "c" else mnist_as_cifar(mnist.images[ids])
        pools[key] = _Pool(images, ids, key)
    notes.append(f"label noise {params['label_noise']} on every CIFAR image, then the pools "
                 f"(cut to {n} each) shuffled with numpy RandomState({seed}); environments "
                 f"shuffled with torch.Generator seeded {seed}")

    envs = []
    names = [f"train{i}" for i in range(n_train_envs)] + ["test"]
    for name, size, corr, count in zip(names, sizes, corrs, counts, strict=True):
        parts = []  # IRMBed's order: cpmp, cnmn, cpmn, cnmp
        for key, cifar_key, mnist_key, y in (("cpmp", "cp", "mp", 1), ("cnmn", "cn", "mn", 0),
                                             ("cpmn", "cp", "mn", 1), ("cnmp", "cn", "mp", 0)):
            m_img, m_id = pools[mnist_key].send(count[key])
            c_img, c_id = pools[cifar_key].send(count[key])
            parts.append((torch.cat([m_img, c_img], dim=2), torch.full((count[key],), y),
                          cifar.labels[c_id], mnist.labels[m_id]))
        x, y, classes, digits = (torch.cat(p) for p in zip(*parts, strict=True))
        order = torch.randperm(size, generator=gen)
        x, y, classes, digits = x[order], y[order], classes[order], digits[order]
        spurious = (digits == d1).long() == y
        role = "test" if name == "test" else "train"
        envs.append(Environment(
            name, role, x, y.float(),
            {"spurious_correlation": corr, "label_noise": params["label_noise"], **count},
            {"class": classes, "digit": digits, "spurious_agrees": spurious.to(torch.uint8)}))
    reduced = cifar_raw.reduced or mnist_raw.reduced
    info = {"source": f"cifar:{cifar_raw.source}; mnist:{mnist_raw.source}",
            "source_files": {**cifar_raw.files, **mnist_raw.files},
            "reduced": reduced, "notes": notes,
            "label_rule": f"CIFAR class == {c1}, flipped with label_noise; MNIST digit {d1} / "
                          f"{d0} agrees with label 1 / 0 in exactly int(half * correlation)",
            "input_shape": [3, 64, 32], "pixel_scale": 255,
            "layout": "rows 0-31: MNIST digit (28x28 padded by 2, 3 equal channels); "
                      "rows 32-63: the CIFAR-10 image"}
    return envs, info
