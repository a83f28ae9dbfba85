"""The precision policy: dtype names, auto on CPUs with and without native bf16, the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from pipeline import precision
from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.precision import resolve_formulation, resolve_precision
from pipeline.training import train

CPU = torch.device("cpu")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))
    return tmp_path / "calibration.json"


def test_unknown_dtype_names_the_valid_choices():
    with pytest.raises(ConfigError, match="dtype .fp16.*valid choices: auto, bf16, fp32, tf32"):
        make_config(dtype="fp16")


def test_tf32_without_cuda_is_refused_with_the_cpu_choices(tiny_envs):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: tf32 is valid here")
    with pytest.raises(ConfigError, match="tf32.*CUDA.*fp32, bf16, auto"):
        train(make_config(dtype="tf32", steps=2, hidden_dim=8), [0], envset=tiny_envs)


def test_fp32_and_bf16_are_taken_as_requested():
    assert resolve_precision("fp32", CPU).dtype == "fp32"
    p = resolve_precision("bf16", CPU)
    assert (p.requested, p.dtype) == ("bf16", "bf16")


def test_bf16_on_a_cpu_without_native_bf16_warns_in_its_reason(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert "no native bf16" in resolve_precision("bf16", CPU).reason


def test_auto_without_native_bf16_is_fp32_and_measures_nothing(monkeypatch, fresh_cache):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(precision, "_calibrate_bf16", lambda shape: pytest.fail("measured"))
    p = resolve_precision("auto", CPU)
    assert (p.requested, p.dtype) == ("auto", "fp32")
    assert "no native bf16" in p.reason
    assert not fresh_cache.exists()


@pytest.mark.parametrize("bf16_gflops,expected", [(110.0, "fp32"), (124.0, "fp32"),
                                                  (126.0, "bf16"), (900.0, "bf16")])
def test_auto_on_a_native_bf16_cpu_takes_bf16_only_when_measured_faster(
        monkeypatch, fresh_cache, bf16_gflops, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "_calibrate_bf16", lambda shape: {
        "fp32_gflops": 100.0, "bf16_gflops": bf16_gflops, "shape": list(shape)})
    p = resolve_precision("auto", CPU, (10000, 392, 390))
    assert p.dtype == expected  # BF16_MARGIN = 1.25
    assert f"bf16 {bf16_gflops:.0f} vs fp32 100 GFLOP/s" in p.reason


def test_calibration_is_cached_per_machine_and_shape_class(monkeypatch, fresh_cache):
    calls = []

    def measure(shape):
        calls.append(shape)
        return {"fp32_gflops": 100.0, "bf16_gflops": 300.0, "shape": list(shape)}

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "_calibrate_bf16", measure)
    first = resolve_precision("auto", CPU, (10000, 392, 390))
    again = resolve_precision("auto", CPU, (9000, 400, 300))  # same class: 16384 x 512 x 512
    other = resolve_precision("auto", CPU, (100, 392, 390))
    assert len(calls) == 2
    assert "cached" not in first.reason and "cached calibration" in again.reason
    assert first.dtype == again.dtype == other.dtype == "bf16"
    entries = json.loads(fresh_cache.read_text())
    assert len(entries) == 2 and all(k.startswith("dtype|cpu|") for k in entries)


def test_formulation_auto_takes_linear_only_with_a_margin(monkeypatch, fresh_cache):
    timings = iter([{"bmm_ms": 10.0, "linear_ms": 9.5}, {"bmm_ms": 10.0, "linear_ms": 8.0}])
    monkeypatch.setattr(precision, "_calibrate_formulation",
                        lambda *a: {**next(timings), "members": 4, "shape": [1, 1, 1]})
    fp32 = resolve_precision("fp32", CPU)
    assert resolve_formulation("auto", CPU, fp32, (1000, 392, 64))[0] == "bmm"  # a near-tie
    assert resolve_formulation("auto", CPU, fp32, (1000, 392, 1024))[0] == "linear"
    assert resolve_formulation("bmm", CPU, fp32, (1, 1, 1)) == ("bmm", "requested")


def test_an_avx2_cpu_resolves_auto_to_fp32():
    """A real check: oneDNN limited to AVX2 reports no native bf16, and auto takes fp32."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = ("import torch; from pipeline.precision import resolve_precision as r; "
            "p = r('auto', torch.device('cpu')); print(p.dtype, '|', p.reason)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("fp32 |") and "no native bf16" in out


def test_a_run_records_what_auto_resolved_to_and_repeats_it_bit_for_bit(tiny_envs):
    cfg = make_config(method="irm", hidden_dim=16, steps=6, penalty_weight=10.0,
                      anneal_iters=2, dtype="auto", formulation="auto")
    auto = train(cfg, [0, 1], envset=tiny_envs)
    rt = auto.runtime
    assert rt["dtype_requested"] == "auto" and rt["dtype"] in ("fp32", "bf16")
    assert rt["dtype_reason"].startswith("auto:")
    assert rt["formulation"] in ("bmm", "linear") and rt["formulation_reason"].startswith("auto")
    assert auto.config["dtype"] == "auto"  # the config keeps what was asked
    explicit = train(make_config(**{**cfg.to_dict(), "dtype": rt["dtype"],
                                    "formulation": rt["formulation"]}), [0, 1], envset=tiny_envs)
    assert explicit.curves["objective"] == auto.curves["objective"]
    assert explicit.members == auto.members


def test_protocol_deviations_name_the_resolved_dtype():
    from pipeline.report.tables import protocol_deviations

    result = {"config": {"dtype": "auto"}, "runtime": {"dtype": "bf16"}, "seeds": list(range(10)),
              "provenance": {"kind": "preset"}}
    assert protocol_deviations(result) == ["dtype=bf16"]
    result["runtime"]["dtype"] = "fp32"
    assert protocol_deviations(result) == []


def test_processes_that_calibrate_together_measure_once_and_agree(tmp_path):
    """Trials of a search start together: one measures under the lock, the others read it."""
    code = f"""
import json, os, sys, time
from pipeline.precision import cached
def measure():
    with open({str(tmp_path / 'measured')!r}, 'a') as f:
        f.write(str(os.getpid()) + chr(10))
    time.sleep(1.0)  # long enough for the other process to arrive while this one measures
    return {{"value": os.getpid()}}
print(json.dumps(cached("k", measure)))
"""
    env = {**os.environ, precision.CACHE_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert len((tmp_path / "measured").read_text().split()) == 1
    assert len({o["value"] for o in outs}) == 1  # every process took the one measurement
    assert sorted(o["cached"] for o in outs) == [False, True, True]
