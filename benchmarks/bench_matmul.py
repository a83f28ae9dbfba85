"""One matmul, per dtype: the GFLOP/s this machine gives a shape (median [range] of repeats).

The number that compares two CPUs for this project: its training steps are matmul-bound, so
the ratio of two machines' rates for the first layer's shape predicts the ratio of their
search and evaluation times.

    python benchmarks/bench_matmul.py                       # 27000x392 @ 392x390, fp32 and bf16
    python benchmarks/bench_matmul.py --shape 54000 392 390 --dtypes fp32
"""

from __future__ import annotations

import argparse

import torch
from harness import machine_banner, repeat, seconds

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[27000, 392, 390],
                        metavar=("M", "K", "N"), help="(M x K) @ (K x N)")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_banner())
    m, k, n = args.shape
    gen = torch.Generator().manual_seed(0)
    for name in args.dtypes.split(","):
        a = torch.randn(m, k, generator=gen).to(DTYPES[name])
        b = torch.randn(k, n, generator=gen).to(DTYPES[name])
        a @ b  # warm-up: kernel choice, page faults
        rate = repeat(lambda a=a, b=b: seconds(lambda: a @ b), args.repeats).inverse(
            2 * m * k * n / 1e9)
        print(f"{m}x{k} @ {k}x{n} {name}: {rate} GFLOP/s (median [range] of {args.repeats})",
              flush=True)


if __name__ == "__main__":
    main()
