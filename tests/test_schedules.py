"""pipeline.schedules: values of each family, purity, jump steps and validation."""

from __future__ import annotations

import math

import pytest

from pipeline.errors import ConfigError
from pipeline.schedules import SCHEDULES, Schedule, curve

# ---------------------------------------------------------------- values of each family


def test_constant_uses_before_until_anneal_then_weight():
    s = Schedule(schedule="constant", penalty_weight=5.0, anneal_iters=10)
    assert s.weight_before_anneal == 1.0  # IRM's code keeps the weight at 1.0 before annealing
    assert [s(t) for t in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [s(t) for t in (10, 11, 1000)] == [5.0, 5.0, 5.0]


def test_constant_with_before_zero():
    s = Schedule(schedule="constant", penalty_weight=5.0, anneal_iters=3, weight_before_anneal=0)
    assert [s(t) for t in range(5)] == [0.0, 0.0, 0.0, 5.0, 5.0]


def test_constant_without_anneal_is_weight_from_step_zero():
    s = Schedule(schedule="constant", penalty_weight=91257.18613115903, anneal_iters=0)
    assert s(0) == 91257.18613115903


def test_step_values_at_milestones():
    s = Schedule(schedule="step", step_milestones=(100, 300), step_values=(1e4, 1e6))
    assert s(0) == 1.0  # ``before`` until the first milestone
    assert s(99) == 1.0
    assert s(100) == 1e4
    assert s(299) == 1e4
    assert s(300) == 1e6
    assert s(10_000) == 1e6


def test_step_before_zero_and_anneal_is_ignored():
    s = Schedule(schedule="step", step_milestones=(100, 300), step_values=(1e4, 1e6),
                 weight_before_anneal=0,
                 anneal_iters=200)
    # the milestones alone decide: anneal_iters does not hold ``before`` past milestone 100
    assert s(99) == 0.0
    assert s(150) == 1e4


def test_linear_ramp():
    s = Schedule(schedule="linear", penalty_weight=101.0, weight_before_anneal=1.0,
                 anneal_iters=10, ramp_iters=100)
    assert s(9) == 1.0
    assert s(10) == pytest.approx(2.0)  # 1 + 100 * 1/100
    assert s(59) == pytest.approx(51.0)  # half-way: 1 + 100 * 50/100
    assert s(108) == pytest.approx(100.0)
    assert s(109) == pytest.approx(101.0)  # end of the ramp
    assert s(500) == pytest.approx(101.0)  # stays at the weight


def test_polynomial_by_hand():
    s = Schedule(schedule="polynomial", poly_k=2.0, poly_power=1.6)
    # 2 * 1^1.6, 2 * 2^1.6, 2 * 10^1.6 (t counted from 1)
    assert s(0) == pytest.approx(2.0, rel=1e-9)
    assert s(1) == pytest.approx(6.062866266, rel=1e-6)
    assert s(9) == pytest.approx(79.62143411, rel=1e-6)


def test_polynomial_after_anneal_and_cap():
    s = Schedule(schedule="polynomial", poly_k=2.0, poly_power=1.6, anneal_iters=5,
                 weight_before_anneal=0.0, penalty_cap=50.0)
    assert s(4) == 0.0
    assert s(5) == pytest.approx(2.0)
    assert s(6) == pytest.approx(6.062866266, rel=1e-6)
    assert s(14) == 50.0  # 79.6 capped


def test_exponential_and_cap():
    s = Schedule(schedule="exponential", poly_k=3.0, exp_rate=2.0, penalty_cap=math.inf)
    assert [s(t) for t in range(5)] == [3.0, 6.0, 12.0, 24.0, 48.0]
    capped = Schedule(schedule="exponential", poly_k=3.0, exp_rate=2.0, penalty_cap=100.0)
    assert capped(5) == 96.0
    assert capped(6) == 100.0
    assert capped(1000) == 100.0  # cap applies even after overflow


def test_exponential_needs_an_explicit_cap():
    with pytest.raises(ConfigError, match="penalty_cap"):
        Schedule(schedule="exponential", poly_k=1.0, exp_rate=10.0)


def test_uncapped_exponential_overflows_to_inf_without_raising():
    s = Schedule(schedule="exponential", poly_k=1.0, exp_rate=10.0, penalty_cap=math.inf)
    assert s(400) == math.inf  # 10.0 ** 400 overflows a double
    assert math.isfinite(s(300))


# ---------------------------------------------------------------- curve and jump steps


def test_curve_length_values_and_purity():
    s = Schedule(schedule="linear", penalty_weight=11.0, anneal_iters=2, ramp_iters=4)
    first = curve(s, 10)
    assert len(first) == 10
    assert first == [s(t) for t in range(10)]
    assert first[:2] == [1.0, 1.0]
    assert first[-1] == pytest.approx(11.0)
    assert curve(s, 10) == first
    assert curve(s, 0) == []


def test_jump_steps():
    constant = Schedule(schedule="constant", penalty_weight=1e4, anneal_iters=190)
    assert constant.jump_steps() == (190,)
    step = Schedule(schedule="step", step_milestones=(100, 300), step_values=(1e4, 1e6))
    assert step.jump_steps() == (100, 300)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, key, allowed", [
    ({"penalty_weight": -1.0}, "penalty_weight", "[0, inf]"),
    ({"schedule": "polynomial", "poly_power": -0.5}, "poly_power", "[0, inf]"),
    ({"schedule": "polynomial", "poly_k": -1.0}, "poly_k", "[0, inf]"),
    ({"schedule": "exponential", "exp_rate": 0.0, "penalty_cap": 1.0}, "exp_rate", "(0, inf]"),
    ({"ramp_iters": 0}, "ramp_iters", "[1, inf]"),
    ({"anneal_iters": -1}, "anneal_iters", "[0, inf]"),
    ({"weight_before_anneal": -0.1}, "weight_before_anneal", "[0, inf]"),
    ({"penalty_cap": -1.0}, "penalty_cap", "[0, inf]"),
    ({"penalty_weight": math.nan}, "penalty_weight", "[0, inf]"),
])
def test_out_of_range_names_key_and_range(kwargs, key, allowed):
    with pytest.raises(ConfigError) as info:
        Schedule(**kwargs)
    message = str(info.value)
    assert key in message
    assert allowed in message


def test_unknown_family_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        Schedule(schedule="cosine")
    message = str(info.value)
    assert "cosine" in message
    for name in SCHEDULES:
        assert name in message
    assert "polynomial" in message


@pytest.mark.parametrize("milestones, values", [((100, 300), (1e4,)), ((), ())])
def test_step_needs_matching_milestones_and_values(milestones, values):
    with pytest.raises(ConfigError, match="step_milestones"):
        Schedule(schedule="step", step_milestones=milestones, step_values=values)


def test_step_milestones_must_increase():
    with pytest.raises(ConfigError, match="increasing"):
        Schedule(schedule="step", step_milestones=(300, 100), step_values=(1e4, 1e6))


def test_step_values_must_be_non_negative():
    with pytest.raises(ConfigError, match=r"step_values\[1\]"):
        Schedule(schedule="step", step_milestones=(1, 2), step_values=(1.0, -1.0))


def test_integer_inputs_are_coerced_to_float():
    s = Schedule(schedule="exponential", penalty_weight=3, poly_k=2, exp_rate=3, penalty_cap=10**9)
    assert isinstance(s.poly_k, float) and isinstance(s.exp_rate, float)
    assert isinstance(s(5), float)


# ---------------------------------------------------------------- contract over the registry

SENSIBLE = {
    "constant": {"penalty_weight": 1e4, "anneal_iters": 10},
    "step": {"step_milestones": (10, 30), "step_values": (1e2, 1e4)},
    "linear": {"penalty_weight": 1e3, "anneal_iters": 10, "ramp_iters": 20},
    "polynomial": {"poly_k": 2.0, "poly_power": 1.6, "anneal_iters": 5},
    "exponential": {"poly_k": 1.0, "exp_rate": 1.05, "anneal_iters": 5, "penalty_cap": 1e6},
}


@pytest.mark.parametrize("family", sorted(SCHEDULES))
def test_every_schedule_is_finite_non_negative_and_pure(family):
    params = SENSIBLE.get(family, {"penalty_weight": 10.0, "anneal_iters": 5})
    s = Schedule(schedule=family, **params)
    values = [s(t) for t in range(51)]
    for t, v in enumerate(values):
        assert isinstance(v, float), (family, t, v)
        assert math.isfinite(v) and v >= 0.0, (family, t, v)
    assert [s(t) for t in range(51)] == values
    assert [s(t) for t in reversed(range(51))] == values[::-1]  # no hidden state between calls
    assert Schedule(schedule=family, **params)(50) == values[50]
