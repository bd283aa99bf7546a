"""CPU-side performance settings that need no code change in the training loop."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system.

    An update allocates and frees activations of tens of megabytes (Cal-QL's critic sees
    31 actions per state). By default glibc serves such blocks with mmap and unmaps them on
    free, so every update pays page faults to fault the same memory back in: keeping it made
    Cal-QL's update 28% faster on the 2-core reference machine (2026-12-03,
    ``benchmarks/throughput.py --loss calql --compare allocator``). Once per process; returns
    False where the C library is not glibc (nothing changes there).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    ok &= mallopt(_M_TOP_PAD, 64 << 20) == 1
    return bool(ok)
