"""Keep freed memory in the process so each training step does not page-fault afresh.

A training step allocates the same large arrays (im2col columns, activations)
every time. glibc returns blocks above its mmap threshold to the OS when they
are freed, so the next step maps and zero-faults them again, page by page.
Measured on LeNet-5 at batch 64 on a 2-core machine: 20 ms → 8.8 ms per step.
Raising the mmap and trim thresholds (glibc's documented ``mallopt`` knobs)
keeps those blocks on the heap for reuse. A no-op where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's thresholds once per process; True if it took effect."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
