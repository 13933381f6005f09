"""Keep freed memory in the process so each training step does not page-fault afresh.

A training step allocates the same large arrays (im2col columns, activations)
every time. glibc returns blocks above its mmap threshold to the OS when they
are freed, so the next step maps and zero-faults them again, page by page.
Measured on LeNet-5 at batch 64 on a 2-core machine: 20 ms → 8.8 ms per step.
Raising the mmap and trim thresholds (glibc's documented ``mallopt`` knobs)
keeps those blocks on the heap for reuse. A no-op where glibc is absent.

The mmap threshold cannot rise above 32 MB, and blocks larger than that were
still mapped afresh at every allocation: VGG-11's first-stage activations at
batch 128 are 33.5 MB, and doubling one took 3.0 ms instead of 1.2. So mmap is
also switched off for allocations (``M_MMAP_MAX`` = 0; glibc still maps memory
where the heap cannot grow): VGG-11 trained 1.07× faster in 7 % less memory (4
interleaved rounds); LeNet-5 and ResNet-20, whose arrays are all smaller, were even.
"""

from __future__ import annotations

import functools
import math
import resource
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's thresholds once per process; True if it took effect."""
    import ctypes  # here, not at the top: `cnnrun summary` and `--help` never need it
    import ctypes.util
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_MAX, 0))



PAGE = 4096
APART = PAGE // 2  # bytes between a copy's source and its destination, modulo PAGE


def empty_apart(shape, like):
    """An uninitialised array of ``like``'s dtype and namespace whose data starts half a
    page (modulo 4096 bytes) away from ``like``'s: the destination of a strided copy
    from ``like``.

    glibc places consecutive large blocks 16 bytes apart modulo a page (its chunk
    header), so a fresh buffer usually lands just after the array it is filled from.
    The CPU then takes loads from the source for reloads of the stores just made to
    the destination (4K aliasing) and stalls: ResNet-20's im2col copies ran 2.7×
    slower so. Over-allocating by a page and choosing the offset costs 4 KB."""
    from .backend import get_array_module  # noqa: PLC0415 - keeps this module NumPy-free

    xp = get_array_module(like)
    size = math.prod(shape)
    if xp.__name__ != "numpy":  # device memory: no such stall
        return xp.empty(shape, dtype=like.dtype)
    itemsize = like.dtype.itemsize
    raw = xp.empty(size + PAGE // itemsize, dtype=like.dtype)
    shift = (like.ctypes.data + APART - raw.ctypes.data) % PAGE // itemsize
    return raw[shift:shift + size].reshape(shape)  # size elements, half a page from like


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
