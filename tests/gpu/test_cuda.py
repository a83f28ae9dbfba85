"""The trainer on a CUDA device: batched equivalence, the precision policy, accuracy, Ray GPUs.

Every test here is marked ``gpu`` and is skipped on a machine without CUDA. Run them on a GPU
machine with ``benchmarks/gpu_check.sh`` (which also runs the trainer sweep and keeps a log),
or alone with ``python -m pytest -m gpu tests/gpu -q -rs``.
"""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch

from pipeline.config import make_config
from pipeline.precision import CACHE_ENV
from pipeline.training import Trainer, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device: run benchmarks/gpu_check.sh on a GPU machine"),
]


def _cfg(**overrides):
    """The CPU tests' small IRM run (tests/test_training.py), on CUDA in fp32."""
    base = {"method": "irm", "hidden_dim": 16, "steps": 12, "anneal_iters": 5,
            "penalty_weight": 100.0, "eval_every": 4, "lr": 1e-3, "l2_weight": 1e-3,
            "device": "cuda", "dtype": "fp32", "formulation": "bmm"}
    return make_config(None, **{**base, **overrides})


def _member_weights(trainer: Trainer, i: int) -> list[torch.Tensor]:
    return [p.detach()[i] for p in trainer.model.member_parameters()]


def _per_member_curves(curves: dict) -> list[str]:
    """The curves that hold one list per member (``step``, ``eval_step``... are shared)."""
    return sorted(n for n, v in curves.items() if v and isinstance(v[0], list))


@contextlib.contextmanager
def _tf32_flags(value: bool):
    """Both global TF32 flags set to ``value`` for the enclosed code, restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = value
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


# --- a. a member of a batched run is its seed trained alone -----------------------------------

EQUIVALENCE = [pytest.param(f, b, id=f"{f}-{'full' if b == 0 else f'batch{b}'}")
               for f in ("bmm", "linear") for b in (0, 64)]
_PAIRS: dict[tuple[str, int], tuple] = {}


def _pair(tiny_envs, formulation: str, batch_size: int):
    """Seeds [3, 5, 7] as one batched model and seed 5 alone, fp32 with TF32 off (run once)."""
    key = (formulation, batch_size)
    if key not in _PAIRS:
        cfg = _cfg(formulation=formulation, batch_size=batch_size)
        with _tf32_flags(True):  # the run itself must switch TF32 off (dtype=fp32)
            batched = Trainer(cfg, [3, 5, 7], envset=tiny_envs)
            batched_result = batched.run()
            single = Trainer(cfg, [5], envset=tiny_envs)
            single_result = single.run()
        _PAIRS[key] = (batched, batched_result, single, single_result)
    return _PAIRS[key]


@pytest.mark.parametrize("formulation,batch_size", EQUIVALENCE)
def test_member_of_batched_cuda_run_is_close_to_its_seed_alone(tiny_envs, formulation,
                                                               batch_size):
    """Member 1 of K = 3 trains like seed 5 alone, up to float rounding (the CPU test's bound).

    This must hold whatever kernels cuBLAS picks: a failure here is a bug in the stacking
    (wrong member, shared state, wrong minibatch stream), not a rounding difference.
    """
    batched, batched_result, single, single_result = _pair(tiny_envs, formulation, batch_size)
    for rt in (batched_result.runtime, single_result.runtime):
        assert rt["device"].startswith("cuda")
        assert (rt["dtype"], rt["tf32"], rt["formulation"]) == ("fp32", False, formulation)
    for a, b in zip(_member_weights(batched, 1), _member_weights(single, 0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert batched_result.curves["nll"][1] == pytest.approx(single_result.curves["nll"][0],
                                                            rel=1e-4)
    # and the members really are different models
    assert not torch.allclose(_member_weights(batched, 0)[0], _member_weights(batched, 1)[0])


def test_auto_dtype_on_cuda_resolves_by_compute_capability_and_records_why(tiny_envs,
                                                                          monkeypatch, tmp_path):
    """``dtype=auto``: bf16 on sm_80 and later (fp32 before), the device named in the reason.

    ``formulation=auto`` is timed here too (into a throw-away calibration cache).
    """
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    major, _ = torch.cuda.get_device_capability()
    name = torch.cuda.get_device_name()
    result = train(_cfg(dtype="auto", formulation="auto", steps=5), [0, 1], envset=tiny_envs)
    rt = result.runtime
    assert rt["device"].startswith("cuda")
    assert rt["dtype_requested"] == "auto"
    assert result.config["dtype"] == "auto"  # the config keeps the request, runtime the choice
    assert name in rt["dtype_reason"] and rt["dtype_reason"].startswith("auto: ")
    if major >= 8:
        assert rt["dtype"] == "bf16", rt["dtype_reason"]
        assert f"sm_{major}" in rt["dtype_reason"] and "natively" in rt["dtype_reason"]
    else:
        assert rt["dtype"] == "fp32", rt["dtype_reason"]
        assert "before sm_80" in rt["dtype_reason"]
    assert rt["tf32"] is False
    assert rt["formulation"] in ("bmm", "linear")
    assert rt["formulation_reason"].startswith("auto: ")
    assert (tmp_path / "calibration.json").is_file()
    assert all(m["status"] == "ok" for m in result.members)


def test_tf32_run_switches_tf32_on_for_the_run_only_and_restores_the_flags(tiny_envs):
    seen: list[tuple[bool, bool]] = []
    with _tf32_flags(False):
        result = train(_cfg(dtype="tf32", steps=9, eval_every=4), [0], envset=tiny_envs,
                       progress=lambda _: seen.append(_flags()))
        after = _flags()
    assert len(seen) >= 3  # the trainer reports at every evaluation (steps 0, 4, 8)
    assert set(seen) == {(True, True)}  # matmuls and convolutions in TF32 during the run
    assert after == (False, False)  # and the caller's flags are back
    rt = result.runtime
    assert rt["tf32"] is True
    assert (rt["dtype"], rt["dtype_requested"]) == ("tf32", "tf32")
    assert "TF32" in rt["dtype_reason"]


def test_fp32_run_switches_tf32_off_for_the_run_only_and_restores_the_flags(tiny_envs):
    seen: list[tuple[bool, bool]] = []
    with _tf32_flags(True):  # a caller (or a library) that switched TF32 on globally
        result = train(_cfg(dtype="fp32", steps=9, eval_every=4), [0], envset=tiny_envs,
                       progress=lambda _: seen.append(_flags()))
        after = _flags()
    assert len(seen) >= 3
    assert set(seen) == {(False, False)}  # true fp32 matmuls during the run
    assert after == (True, True)
    rt = result.runtime
    assert rt["tf32"] is False
    assert (rt["dtype"], rt["dtype_requested"]) == ("fp32", "fp32")
    assert "TF32 matmuls off" in rt["dtype_reason"]


# --- c. bf16 and tf32 learn what fp32 learns -------------------------------------------------


def test_bf16_and_tf32_train_to_the_accuracies_of_fp32_on_real_data(fashion_envs):
    """60 steps of irm_paper (hidden 64) on full Colored Fashion-MNIST, 3 seeds per dtype:
    nothing diverges, and mean train and test accuracies are within 3 points of fp32."""
    major, _ = torch.cuda.get_device_capability()
    results = {}
    for dtype in ("fp32", "bf16", "tf32"):
        cfg = make_config("irm_paper", hidden_dim=64, steps=60, eval_every=20, device="cuda",
                          dtype=dtype, formulation="bmm")
        results[dtype] = train(cfg, [0, 1, 2], envset=fashion_envs)
    fp32 = results["fp32"]
    for dtype, result in results.items():
        assert result.runtime["dtype"] == dtype
        assert result.runtime["device"].startswith("cuda")
        assert [m["status"] for m in result.members] == ["ok"] * 3, dtype
        for m in result.members:
            assert all(math.isfinite(v) for v in m["metrics"].values()), (dtype, m)
        assert all(v is not None and math.isfinite(v) for curve in result.curves["nll"]
                   for v in curve), dtype
        for name in ("train_acc", "test_acc"):
            assert result.metrics[name]["mean"] == pytest.approx(
                fp32.metrics[name]["mean"], abs=0.03), (dtype, name)
        assert result.metrics["nll"]["mean"] == pytest.approx(fp32.metrics["nll"]["mean"],
                                                              rel=0.05), dtype
    # the reduced precisions really ran (a 54,000 x 392 x 64 GEMM uses the tensor cores)
    assert results["bf16"].curves["nll"][0] != fp32.curves["nll"][0]
    if major >= 8:  # TF32 exists from Ampere on; before, the flag changes nothing
        assert results["tf32"].curves["nll"][0] != fp32.curves["nll"][0]


# --- d. a Ray search shares the GPU between trials --------------------------------------------


@pytest.fixture(scope="module")
def local_ray_gpu():
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    yield
    ray.shutdown()


def test_search_with_half_a_gpu_per_trial_runs_every_trial_on_cuda(local_ray_gpu, tmp_path,
                                                                   tiny_envs_dir):
    import pandas as pd

    from pipeline.params.search import spec_from_params
    from pipeline.search.ray_optuna import concurrent_trials
    from pipeline.search.runner import run_search

    section = {"sampler": "random", "trials": 4, "seeds": 2, "seed": 0,
               "cpus_per_trial": 1, "gpus_per_trial": 0.5, "report_every": 5,
               "set": {"hidden_dim": 16, "anneal_iters": 5, "dtype": "auto",
                       "formulation": "bmm"}}
    spaces = {"irm": {"lr": {"log_uniform": [1e-3, 1e-2]},
                      "penalty_weight": {"log_uniform": [10.0, 1000.0]},
                      "steps": {"choice": [10, 20]}}}
    spec = spec_from_params(section, dataset="colored_fashion_mnist", method="irm",
                            spaces=spaces, out=str(tmp_path / "search"),
                            envs_dir=str(tiny_envs_dir))
    assert spec.gpus_per_trial == 0.5
    assert concurrent_trials(spec) == 2  # one GPU, half each (2 CPUs, 1 each): two at once
    outcome = run_search(spec)
    table = pd.read_parquet(outcome.out / "trials.parquet")
    assert table["trial"].nunique() == 4
    assert (table["status"] == "ok").all()
    assert (table["config.device"] == "cuda").all()  # a GPU share: the trial's config says so
    assert table["device"].str.startswith("cuda", na=False).all()  # and it ran on CUDA
    major, _ = torch.cuda.get_device_capability()
    assert set(table["dtype"]) == {"bf16" if major >= 8 else "fp32"}  # auto, per trial
    for key in table["trial_key"].unique():
        record = json.loads((outcome.out / "trials" / f"{key}.json").read_text())
        runtime = record["result"]["runtime"]
        assert runtime["device"].startswith("cuda"), key
        assert runtime.get("cuda_device"), key
    best = json.loads((outcome.out / "best.json").read_text())
    assert best["config"]["device"] == "cuda"
