"""The machine's speed today, to quote other timings against: GFLOP/s of a 2048 x 2048
float32 matrix product (torch, its default threads).

    python benchmarks/sgemm_reference.py

This 2-core machine has given 110-126 GFLOP/s on a slow day, about 184 on a fast one and 383
on 2026-12-03, when its CPU reported AVX512; a wall time measured on one day is worth (its
day's figure / another day's) on the other. The CPU's vector capability is printed too: kernels
for different capabilities round differently, so the same seed repeats exactly only on the same
kind of CPU with the same thread count.
"""

from __future__ import annotations

import argparse
import time

import torch


def sgemm_gflops(size: int = 2048, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):  # warm-up: thread pool, caches
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    print(f"sgemm_gflops={sgemm_gflops(args.size, args.repeats):.0f} (size {args.size}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()})")


if __name__ == "__main__":
    main()
