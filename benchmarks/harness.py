"""What every benchmark here shares: the machine banner, FLOP counts, and repeated timings.

A timing means nothing without the machine it ran on, so every script prints
:func:`machine_banner` first; and one number means little without its spread, so every
measurement is the median and range of ``repeats`` runs (:func:`repeat`).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.precision import machine_info  # noqa: E402


def machine_banner() -> str:
    """One line: CPU model, torch's CPU capability, native bf16, threads, ISA limits, GPU."""
    info = machine_info()
    parts = [f"CPU {info['cpu']}", f"torch CPU capability {info['cpu_capability']}",
             f"native bf16 {'yes' if info['cpu_native_bf16'] else 'no'}",
             f"{info['threads']} threads", f"torch {info['torch']}"]
    if info["isa_limits"]:
        limits = " ".join(f"{k}={v}" for k, v in info["isa_limits"].items())
        parts.append(f"ISA limited by {limits} (emulating an older CPU)")
    if "cuda_device" in info:
        parts.append(f"GPU {info['cuda_device']} (sm_{info['cuda_capability']})")
    return "machine: " + "; ".join(parts)


@dataclass(frozen=True)
class Timing:
    """Median and range of repeated measurements (seconds, or any unit)."""

    median: float
    low: float
    high: float

    def scaled(self, factor: float) -> Timing:
        return Timing(self.median * factor, self.low * factor, self.high * factor)

    def inverse(self, numerator: float) -> Timing:
        """``numerator / t``: a rate; the range flips (the slowest run is the lowest rate)."""
        return Timing(numerator / self.median, numerator / self.high, numerator / self.low)

    def __str__(self) -> str:
        return f"{self.median:.3g} [{self.low:.3g}, {self.high:.3g}]"


def repeat(measure: Callable[[], float], repeats: int = 3) -> Timing:
    """Call ``measure`` (which returns one measurement) ``repeats`` times."""
    values = [measure() for _ in range(repeats)]
    return Timing(statistics.median(values), min(values), max(values))


def seconds(fn: Callable[[], object], device: torch.device | None = None,
            inner: int = 1) -> float:
    """Wall seconds of ``inner`` calls of ``fn`` (CUDA synchronised), per call."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (
        lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    sync()
    return (time.perf_counter() - start) / inner


def mlp_layer_shapes(rows: int, in_features: int, hidden: int) -> list[tuple[int, int, int, str]]:
    """The GEMMs of one full-batch training step of IRM's MLP, per member: (M, K, N, role).

    Forward: x W1 (rows x in x hidden), h W2 (rows x hidden x hidden), h w3 (hidden x 1).
    Backward: every weight gradient (W^T-shaped products of the same size), and the input
    gradients of layers 2 and 3 (layer 1's input needs none). The 1-wide third layer is
    counted though its cost is tiny.
    """
    return [(rows, in_features, hidden, "fwd layer 1"),
            (rows, hidden, hidden, "fwd layer 2"),
            (rows, hidden, 1, "fwd layer 3"),
            (in_features, rows, hidden, "grad W1"),
            (hidden, rows, hidden, "grad W2"),
            (rows, hidden, hidden, "grad input 2"),
            (hidden, rows, 1, "grad w3"),
            (rows, 1, hidden, "grad input 3")]


def gemm_flops(shapes) -> int:
    return sum(2 * m * k * n for m, k, n, _ in shapes)


def mlp_eval_flops(rows: int, in_features: int, hidden: int) -> int:
    """FLOPs of one forward (evaluation) pass of the MLP over ``rows`` examples."""
    return 2 * rows * (in_features * hidden + hidden * hidden + hidden)
