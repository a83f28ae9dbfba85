"""Which precision a run computes in, and how stacked members are multiplied, per machine.

``dtype`` (a config key) is one of

- ``fp32``: float32 everywhere; on CUDA with TF32 matmuls switched *off* (the library default);
- ``bf16``: bfloat16 autocast (matmuls in bf16, losses and optimiser state in fp32);
- ``tf32``: float32 storage with TensorFloat-32 matmuls and convolutions (CUDA only);
- ``auto``: bf16 only where the device multiplies bf16 natively *and* faster, else fp32.

``auto`` never guesses from the CPU's name. On CUDA it takes bf16 where the device supports it
natively (compute capability 8.0 and later). On a CPU it takes fp32 unless oneDNN reports
native bf16 (AVX-512 BF16 or AMX), and then only if a short calibration (a few matmuls of the
run's shape class, about a second) measures bf16 at least ``BF16_MARGIN`` times faster than
fp32. A CPU without native bf16 runs bf16 matmuls through a slow emulation: 1.9 GFLOP/s
against 60 in fp32 was measured on a 2-core AVX2 EPYC.

The same machinery chooses the stacked MLP's ``formulation`` when it is ``auto``: ``bmm`` (one
batched GEMM per layer) or ``linear`` (one GEMM per member) by timing both on the run's shape
class; ``linear`` must win by ``FORMULATION_MARGIN`` to be taken, so near-ties stay on ``bmm``.

Every decision is cached per machine (CPU model, torch version and CPU capability, threads),
device, dtype and shape class in ``$IRM_PIPELINE_CACHE/calibration.json`` (default
``~/.cache/irm-pipeline``), so the same machine decides the same way on every run and the
numbers stay bit-for-bit repeatable there. The decision and its reason are recorded in every
result (``runtime.dtype``, ``runtime.dtype_reason``, ``runtime.formulation_reason``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from pipeline.errors import ConfigError
from pipeline.outputs import write_atomic

BF16_MARGIN = 1.25  # auto takes bf16 on a CPU only when it is at least this much faster
# how a run computes: fp32 (TF32 off), bf16, tf32 (CUDA only) or auto (bf16 only where the
# device multiplies it natively and a calibration finds it faster)
DTYPES = ("fp32", "bf16", "tf32", "auto")
FORMULATION_MARGIN = 1.10  # auto takes ``linear`` only when it is at least this much faster
CALIBRATION_MEMBERS = 4  # the K at which the formulation is timed
CACHE_ENV = "IRM_PIPELINE_CACHE"


@dataclass(frozen=True)
class Precision:
    """What a run computes in (``dtype``: fp32 | bf16 | tf32), what was asked, and why."""

    requested: str
    dtype: str
    reason: str

    @contextlib.contextmanager
    def active(self, device: torch.device) -> Iterator[None]:
        """The matmul mode of this precision on ``device`` for the enclosed code (restored)."""
        if device.type != "cuda":
            yield
            return
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        tf32 = self.dtype == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def autocast(self, device: torch.device):
        if self.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "dtype_requested": self.requested,
                "dtype_reason": self.reason}


# --- the machine ----------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN multiplies bf16 natively here (AVX-512 BF16 or AMX); False if unknown.

    oneDNN honours ``ONEDNN_MAX_CPU_ISA``, so ``ONEDNN_MAX_CPU_ISA=AVX2`` makes a newer CPU
    answer as an AVX2 one (how this project's tests and measurements emulate such a machine).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine_info() -> dict:
    """What a timing depends on: printed beside every measured figure, stored in results."""
    info = {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "isa_limits": {k: os.environ[k] for k in
                           ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
                           if k in os.environ}}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return info


def machine_key(device: torch.device) -> str:
    """Identifies a machine for the calibration cache: decisions are per machine and device."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda|{torch.cuda.get_device_name(index)}|torch {torch.__version__}"
    info = machine_info()
    limits = ",".join(f"{k}={v}" for k, v in sorted(info["isa_limits"].items()))
    return (f"cpu|{info['cpu']}|{info['cpu_capability']}|bf16={info['cpu_native_bf16']}|"
            f"threads={info['threads']}|torch {torch.__version__}|{limits}")


def shape_class(rows: int, inner: int, cols: int) -> tuple[int, int, int]:
    """Shapes rounded up to powers of two: runs of similar size share one calibration."""
    return tuple(1 << max(0, math.ceil(math.log2(max(1, n)))) for n in (rows, inner, cols))


# --- the cache ------------------------------------------------------------------------------


def cache_path() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "irm-pipeline"
    return Path(root) / "calibration.json"


def _read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def cached(key: str, measure: Callable[[], dict]) -> dict:
    """The cached entry under ``key``, else ``measure()`` stored there.

    Processes that start together (the trials of a search) would each measure and could
    decide differently on a near-tie, so the first one measures under a file lock and the
    others wait for it and read its entry: one machine, one decision.
    """
    entry = _read_cache().get(key)
    if entry is not None:
        return {**entry, "cached": True}
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path.with_name(path.name + ".lock"), timeout=600)
        with lock:
            entry = _read_cache().get(key)  # measured while this process waited
            if entry is not None:
                return {**entry, "cached": True}
            entry = measure()
            data = {**_read_cache(), key: entry}
            write_atomic(path, json.dumps(data, indent=1, sort_keys=True))  # never half-written
    except (OSError, Timeout):
        # a read-only home, or a lock that never frees: decide without the cache this time
        entry = entry if entry is not None else measure()
    return {**entry, "cached": False}


def median_seconds(fn: Callable[[], object], repeats: int = 5, device=None) -> float:
    """Median wall time of ``fn`` after one warm-up call (synchronised on CUDA)."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (
        lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# --- dtype ----------------------------------------------------------------------------------

# calibrating a huge shape would cost more than it tells: rows are capped here
_CALIBRATION_ROWS = 8192


def _calibrate_bf16(shape: tuple[int, int, int]) -> dict:
    rows, inner, cols = min(shape[0], _CALIBRATION_ROWS), shape[1], shape[2]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=gen)
    b = torch.randn(inner, cols, generator=gen)
    fp32 = median_seconds(lambda: a @ b)
    a16, b16 = a.bfloat16(), b.bfloat16()
    bf16 = median_seconds(lambda: a16 @ b16)
    flops = 2 * rows * inner * cols
    return {"fp32_gflops": flops / fp32 / 1e9, "bf16_gflops": flops / bf16 / 1e9,
            "shape": [rows, inner, cols]}


def resolve_precision(requested: str, device: torch.device,
                      shape: tuple[int, int, int] = (8192, 512, 512)) -> Precision:
    """The precision a run on ``device`` computes in; ``shape`` is its largest matmul's class.

    Raises :class:`ConfigError` for an unknown name, or ``tf32`` without CUDA.
    """
    if requested not in DTYPES:
        raise ConfigError(f"dtype = {requested!r} is unknown; valid choices: "
                          f"{', '.join(DTYPES)}")
    cuda = device.type == "cuda"
    if requested == "tf32" and not cuda:
        raise ConfigError("dtype = 'tf32' needs a CUDA device (TF32 is a tensor-core mode); "
                          "valid choices on a CPU: fp32, bf16, auto")
    if requested == "fp32":
        return Precision("fp32", "fp32", "requested" + (" (TF32 matmuls off)" if cuda else ""))
    if requested == "tf32":
        return Precision("tf32", "tf32", "requested: fp32 storage, TF32 matmuls")
    if requested == "bf16":
        if not cuda and not cpu_has_native_bf16():
            return Precision("bf16", "bf16", "requested; this CPU has no native bf16 matmul "
                             f"({torch.backends.cpu.get_cpu_capability()}): expect it to be "
                             "several times slower than fp32 (dtype=auto would pick fp32)")
        return Precision("bf16", "bf16", "requested")
    if cuda:
        major, _ = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        if major >= 8 and torch.cuda.is_bf16_supported():
            return Precision("auto", "bf16", f"auto: {name} (sm_{major}x) multiplies bf16 "
                             "natively")
        return Precision("auto", "fp32", f"auto: {name} has no native bf16 (before sm_80)")
    capability = torch.backends.cpu.get_cpu_capability()
    if not cpu_has_native_bf16():
        return Precision("auto", "fp32", f"auto: this CPU has no native bf16 matmul "
                         f"({capability}; oneDNN reports no AVX-512 BF16 / AMX)")
    cls = shape_class(*shape)
    entry = cached(f"dtype|{machine_key(device)}|{cls}", lambda: _calibrate_bf16(cls))
    speedup = entry["bf16_gflops"] / entry["fp32_gflops"]
    measured = (f"bf16 {entry['bf16_gflops']:.0f} vs fp32 {entry['fp32_gflops']:.0f} GFLOP/s "
                f"on a {'x'.join(map(str, entry['shape']))} matmul"
                f"{' (cached calibration)' if entry['cached'] else ''}")
    if speedup >= BF16_MARGIN:
        return Precision("auto", "bf16", f"auto: native bf16 CPU ({capability}), {measured}")
    return Precision("auto", "fp32", f"auto: bf16 not at least {BF16_MARGIN}x faster here "
                     f"({capability}), {measured}")


# --- formulation of the stacked MLP ---------------------------------------------------------


def _calibrate_formulation(device: torch.device, precision: Precision, members: int,
                           shape: tuple[int, int, int]) -> dict:
    """Seconds of one forward + backward of a stacked layer, as ``bmm`` and as ``linear``."""
    import torch.nn.functional as F

    rows, inner, cols = min(shape[0], _CALIBRATION_ROWS), shape[1], shape[2]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inner, generator=gen).to(device)
    w = torch.randn(members, cols, inner, generator=gen).to(device).requires_grad_()
    b = torch.zeros(members, cols, device=device, requires_grad=True)

    def bmm():
        with precision.autocast(device):
            out = torch.baddbmm(b.unsqueeze(1), x.unsqueeze(0).expand(members, *x.shape),
                                w.transpose(1, 2))
        out.float().square().mean().backward()

    def linear():
        with precision.autocast(device):
            out = F.linear(x, w.reshape(members * cols, inner), b.reshape(-1))
        out.float().square().mean().backward()

    with precision.active(device):
        t_bmm = median_seconds(bmm, device=device)
        t_linear = median_seconds(linear, device=device)
    return {"bmm_ms": 1000 * t_bmm, "linear_ms": 1000 * t_linear, "members": members,
            "shape": [rows, inner, cols]}


def resolve_formulation(requested: str, device: torch.device, precision: Precision,
                        shape: tuple[int, int, int]) -> tuple[str, str]:
    """``bmm`` or ``linear`` for the stacked MLP, and why (``auto`` measures both here).

    The decision is timed at a fixed ``CALIBRATION_MEMBERS``, not at the run's K: runs of
    one configuration with K seeds and with one seed then use the same formulation, so a
    member of a batched run agrees with its seed run alone up to float rounding (a batched
    GEMM may still round differently from a single one: tests/test_training.py).
    """
    if requested != "auto":
        return requested, "requested"
    cls, members = shape_class(*shape), CALIBRATION_MEMBERS
    key = f"formulation|{machine_key(device)}|{precision.dtype}|K={members}|{cls}"
    entry = cached(key, lambda: _calibrate_formulation(device, precision, members, cls))
    timed = (f"bmm {entry['bmm_ms']:.2f} ms vs linear {entry['linear_ms']:.2f} ms per "
             f"forward+backward of a {'x'.join(map(str, entry['shape']))} layer, K={members}"
             f"{' (cached calibration)' if entry['cached'] else ''}")
    if entry["bmm_ms"] >= FORMULATION_MARGIN * entry["linear_ms"]:
        return "linear", f"auto: {timed}"
    return "bmm", f"auto: {timed}"
