"""Keep freed memory in the process between batches instead of giving it back to the OS (glibc only).

A forward pass allocates and frees tensors of tens of MB (at batch 64 x 3 crops on the tiny backbone each
activation is ~40 MB). glibc serves blocks above its mmap threshold (at most 32 MB by default) with a fresh
``mmap`` and returns freed memory at the top of its heap to the OS, so every batch faults its working set in
again page by page: measured on `mmpiqa eval` of 400 JPEGs, 9.7 million page faults and 20 s of system time
out of 63 s. Raising both thresholds to 1 GiB makes later batches reuse the same memory (faults: ~0). The cost:
up to 1 GiB of freed memory stays with the process until it exits (or until ``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_LIMIT = 2**30
_state = {"done": False}


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds to 1 GiB, once per process; False where there is no glibc."""
    if _state["done"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _state["done"] = bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))
    return _state["done"]
