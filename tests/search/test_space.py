"""Search spaces: parsing, validation before anything runs, and draws through real Optuna."""

from __future__ import annotations

import optuna
import pytest

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.search.space import SHARED, compose, parse_space

BASE = make_config(None, method="irm").to_dict()

PAPER = {"hidden_dim": {"log_int": [64, 512]}, "l2_weight": {"log_uniform": [1e-5, 1e-2]},
         "lr": {"log_uniform": [3.1623e-4, 3.1623e-3]}, "anneal_iters": {"int": [50, 249]},
         "penalty_weight": {"log_uniform": [1e2, 1e6]},
         "steps": {"choice": [101, 201, 301, 401, 501]}}

SCHEDULES = {"schedule": {"choice": {
    "constant": {},
    "polynomial": {"poly_k": {"log_uniform": [1e-2, 1e2]}, "poly_power": {"uniform": [1, 3]}},
}}}


def draw(space, n=40, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return out


def test_paper_space_draws_stay_in_their_ranges():
    space = parse_space(PAPER, BASE, {})
    assert space.steps == (101, 201, 301, 401, 501)  # never sampled: read off one run
    for values in draw(space):
        assert "steps" not in values
        assert 64 <= values["hidden_dim"] <= 512 and isinstance(values["hidden_dim"], int)
        assert 50 <= values["anneal_iters"] <= 249
        assert 1e2 <= values["penalty_weight"] <= 1e6
        make_config(None, **{**BASE, **values})  # every draw is a valid config


def test_schedule_family_brings_only_its_own_parameters():
    draws = draw(parse_space(SCHEDULES, BASE, {}), n=60)
    families = {d["schedule"] for d in draws}
    assert families == {"constant", "polynomial"}
    for d in draws:
        has_poly = {"poly_k", "poly_power"} <= set(d)
        assert has_poly == (d["schedule"] == "polynomial")


def test_fixed_keys_leave_the_space():
    space = parse_space(PAPER, BASE, {"lr": 0.01, "steps": 60})
    assert {d.key for d in space.dims} == {"hidden_dim", "l2_weight", "anneal_iters",
                                          "penalty_weight"}
    assert space.steps == ()


@pytest.mark.parametrize("spec,message", [
    ({"lr": {"log_uniform": [1e-2, 1e-3]}}, "inverted"),
    ({"lr": {"uniform": [0.1, 0.1]}}, "empty"),
    ({"lr": {"log_uniform": [0.0, 1e-3]}}, "low > 0"),
    ({"lr": {"uniform": [-1.0, 1e-3]}}, "lr"),  # the trainer refuses lr <= 0
    ({"lr": {"normal": [0, 1]}}, "valid choices: choice, int, log_int, log_uniform, uniform"),
    ({"penalty_weigth": {"uniform": [1, 2]}}, "did you mean 'penalty_weight'"),
    ({"schedule": {"choice": ["constant", "cosine"]}}, "cosine"),
    ({"schedule": {"choice": {"exponential": {}}}}, "penalty_cap"),
    ({"steps": {"int": [100, 500]}}, "steps"),
    ({"hidden_dim": {"choice": []}}, "non-empty"),
    ({"step_milestones": {"choice": [[10, 20], [30, -5]]}}, "step_milestones"),
])
def test_bad_spaces_name_the_key_and_what_is_wrong(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(spec, BASE, {})


def test_list_valued_keys_are_chosen_as_names_and_build_their_lists():
    space = parse_space({"step_milestones": {"choice": [[10, 20], [30]]}}, BASE, {})
    (dim,) = space.dims
    assert dim.choices == ("10,20", "30")  # Optuna's categoricals are scalars
    cfg = make_config(None, **{**BASE, "step_milestones": dim.choices[0]})
    assert cfg.step_milestones == (10, 20)


def test_grid_needs_plain_choices():
    grid = parse_space({"lr": {"choice": [0.1, 0.01]}, "hidden_dim": {"choice": [8, 16, 32]}},
                       BASE, {})
    assert grid.grid_size() == 6
    with pytest.raises(ConfigError, match="grid.*'lr' is a log_uniform range"):
        parse_space({"lr": {"log_uniform": [1e-3, 1e-2]}}, BASE, {}).grid()
    with pytest.raises(ConfigError, match="per-option parameters"):
        parse_space(SCHEDULES, BASE, {}).grid()


def test_largest_value_of_a_key_covers_fixed_and_searched():
    cfg = make_config(None, **{**BASE, "anneal_iters": 10})
    assert parse_space(PAPER, BASE, {}).largest("anneal_iters", cfg) == 249
    assert parse_space({}, BASE, {}).largest("anneal_iters", cfg) == 10


def test_every_space_in_params_yaml_is_valid():
    from pathlib import Path

    import yaml

    from pipeline.methods import METHODS

    for profile in ("params.yaml", "profiles/paper.yaml"):
        spaces = yaml.safe_load(Path(profile).read_text())["search_spaces"]
        assert {"irm_schedules", *METHODS} <= set(spaces)  # a default space for every method
        _check_spaces(spaces)


def _check_spaces(spaces: dict) -> None:
    from pipeline.methods import METHODS

    for name in spaces:
        if name == SHARED:
            continue
        method = name if name in METHODS else "irm"
        base = make_config(None, method=method).to_dict()
        space = parse_space(compose(spaces, name), base, {})
        for values in draw(space, n=25):
            make_config(None, **{**base, **values})  # every draw is a valid config


def test_a_branch_is_checked_with_its_sibling_parameters_set():
    # exponential needs penalty_cap: valid because the branch draws one alongside exp_rate
    space = parse_space({"schedule": {"choice": {
        "exponential": {"exp_rate": {"uniform": [1.01, 1.1]},
                        "penalty_cap": {"log_uniform": [1e3, 1e6]}}}}}, BASE, {})
    assert all(1e3 <= d["penalty_cap"] <= 1e6 for d in draw(space, n=10))


def test_set_wins_inside_a_branch_too():
    space = parse_space({"schedule": {"choice": {
        "polynomial": {"poly_k": {"log_uniform": [1e-2, 1.0]},
                       "penalty_cap": {"log_uniform": [1e3, 1e6]}}}}}, BASE,
        {"penalty_cap": 1e4})
    assert all("penalty_cap" not in d for d in draw(space, n=10))


def test_whole_number_keys_refuse_float_ranges():
    with pytest.raises(ConfigError, match="anneal_iters is a whole number; use int or log_int"):
        parse_space({"anneal_iters": {"uniform": [50, 249]}}, BASE, {})


# ---------------------------------------------------------------- shared ranges and defaults

def test_a_space_is_the_shared_ranges_with_the_methods_own_on_top():
    spaces = {"shared": {"hidden_dim": {"log_int": [64, 128]}, "lr": {"uniform": [1e-4, 1e-3]},
                         "steps": {"choice": [101, 201]}},
              "irm": {"lr": {"uniform": [1e-3, 1e-2]}, "penalty_weight": "default",
                      "hidden_dim": None}}
    raw = compose(spaces, "irm")
    # lr replaced in place (the order dimensions are sampled in), hidden_dim left out
    assert list(raw) == ["lr", "steps", "penalty_weight"]
    assert raw["lr"] == {"uniform": [1e-3, 1e-2]}
    space = parse_space(raw, make_config(None, method="irm").to_dict(), {})
    assert space.describe()["penalty_weight"] == {"log_uniform": [1.0e2, 1.0e6]}  # declared
    assert space.steps == (101, 201)


def test_default_takes_the_distribution_declared_with_the_key():
    from pipeline.config import HPARAMS

    base = make_config(None, method="andmask").to_dict()
    space = parse_space({"andmask_tau": "default"}, base, {})
    assert space.describe()["andmask_tau"] == HPARAMS["andmask_tau"][1].search
    with pytest.raises(ConfigError, match="declares no search distribution for batch_size"):
        parse_space({"batch_size": "default"}, base, {})


def test_the_shared_part_is_not_a_space_and_unknown_spaces_are_named():
    spaces = {"shared": {}, "irm": {}}
    with pytest.raises(ConfigError, match="every space shares"):
        compose(spaces, SHARED)
    with pytest.raises(ConfigError, match="valid choices: irm"):
        compose(spaces, "vrexx")


def test_both_profiles_search_what_they_searched_before_the_shared_ranges():
    """Writing the spaces with `shared` and `default` changed no distribution and no sampling
    order (tests/data/spaces_f390c51.json: every space as parsed before the change)."""
    import json
    from pathlib import Path

    import yaml

    from pipeline.methods import METHODS

    root = Path(__file__).resolve().parents[2]
    before = json.loads((root / "tests" / "data" / "spaces_f390c51.json").read_text())
    for profile in ("params.yaml", "profiles/paper.yaml"):
        spaces = yaml.safe_load((root / profile).read_text())["search_spaces"]
        for name, described in before[profile].items():
            method = name if name in METHODS else "irm"
            space = parse_space(compose(spaces, name), make_config(None, method=method).to_dict(),
                                {})
            assert list(space.describe().items()) == list(described.items()), (profile, name)


def test_null_must_name_a_shared_key():
    with pytest.raises(ConfigError, match="hiden_dim.*did you mean 'hidden_dim'"):
        compose({"shared": {"hidden_dim": {"log_int": [8, 16]}}, "irm": {"hiden_dim": None}},
                "irm")
    with pytest.raises(ConfigError, match="search_spaces must be a mapping"):
        compose(["irm"], "irm")


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/paper.yaml"])
def test_domainbed_spaces_are_its_hparams_registry(profile):
    """DomainBed's SMALL_IMAGES draws (facebookresearch/DomainBed@b93c22a hparams_registry.py):
    lr 10**U(-4.5, -2.5), batch int(2**U(3, 9)), irm_lambda 10**U(-1, 5), anneal int(10**U(0, 4));
    nothing else searched (weight decay 0, the CNN has no width to search)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    spaces = yaml.safe_load((root / profile).read_text())["search_spaces"]
    base = make_config(None, method="irm", model="domainbed_cnn").to_dict()
    irm = parse_space(compose(spaces, "domainbed_irm"), base, {}).describe()
    assert irm.keys() == {"lr", "batch_size", "penalty_weight", "anneal_iters"}
    assert irm["lr"]["log_uniform"] == pytest.approx([10 ** -4.5, 10 ** -2.5], rel=1e-4)
    assert irm["batch_size"] == {"log_int": [2 ** 3, 2 ** 9 - 1]}
    assert irm["penalty_weight"]["log_uniform"] == pytest.approx([1e-1, 1e5])
    assert irm["anneal_iters"] == {"log_int": [1, 10 ** 4 - 1]}
    erm = parse_space(compose(spaces, "domainbed_erm"), {**base, "method": "erm"}, {}).describe()
    assert erm == {"lr": irm["lr"], "batch_size": irm["batch_size"]}
