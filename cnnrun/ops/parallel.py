"""Run the independent bands of one operation on every core, BLAS single-threaded meanwhile.

A convolution's matrix products are skinny (6 to 64 output rows against
thousands of columns): OpenBLAS splits each one over its threads, but the
im2col copies that feed them run on one core. Splitting the work into bands of
output rows and giving each core whole bands (copy, then product, while the
band is still in cache) uses both cores for both halves, the way a threaded
direct convolution would. NumPy releases the GIL inside copies and matmul, so
Python threads suffice. On CuPy everything runs as one band: the GPU is its
own parallel machine.

The number of workers is ``CNNRUN_NUM_THREADS`` if set, else the cores this
process may use; a data-parallel run with one process per core sets it to 1.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


@functools.cache
def num_workers() -> int:
    env = os.environ.get("CNNRUN_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(num_workers(), thread_name_prefix="cnnrun")


@functools.cache
def _blas_controller():
    """threadpoolctl's handle on the loaded BLAS, or None where it is unavailable."""
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - first use only
        return ThreadpoolController()
    except Exception:  # missing, or a BLAS it cannot drive
        return None


def map_bands(work, bands, buffers, xp=np) -> list:
    """``work(bands_subset, buffer)`` for each worker's share of ``bands``; their results.

    ``buffers(k)`` makes k scratch buffers in the calling thread (so each worker
    reuses memory from the main heap). Bands are dealt round-robin, which keeps
    the shares equal when the last band is short.
    """
    k = min(num_workers(), len(bands)) if xp is np else 1
    bufs = buffers(k)
    if k == 1:
        return [work(bands, bufs[0])]
    shares = [bands[i::k] for i in range(k)]
    ctl = _blas_controller()
    if ctl is None:
        return [work(b, buf) for b, buf in zip(shares, bufs)]
    with ctl.limit(limits=1, user_api="blas"):
        return list(_pool().map(work, shares, bufs))
