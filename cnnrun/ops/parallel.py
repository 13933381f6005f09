"""Run the independent bands of one operation on every core, BLAS single-threaded meanwhile.

A convolution's matrix products are skinny (6 to 64 output rows against
thousands of columns): OpenBLAS splits each one over its threads, but the
im2col copies that feed them run on one core. Splitting the work into bands of
output rows and giving each core whole bands (copy, then product, while the
band is still in cache) uses both cores for both halves, the way a threaded
direct convolution would. NumPy releases the GIL inside copies and BLAS calls, so
Python threads suffice (np.matmul only for results over 500 elements: ``product``).
On CuPy everything runs as one band: the GPU is its own parallel machine.

BLAS and the band workers must not share the cores. After each call,
OpenBLAS's own threads spin for a while (its THREAD_TIMEOUT) waiting for more
work, and on a 2-core machine they then take the cores from the band workers:
ResNet-20 at batch 128 trained 24 % slower per step that way. So a pass is in
one of two modes (``ThreadMode``), learnt on a model's first pass at each batch
size: if any operation works in bands, BLAS runs on one thread for the whole
pass and the engine's other large products are split over the same workers
(``matmul``); if none does (LeNet at batch 64: every matrix a few MB), nothing
is split and BLAS keeps its threads, whose spinning hand-offs are what make
such small products fast.

The number of workers is ``CNNRUN_NUM_THREADS`` if set, else the cores this
process may use; a data-parallel run with one process per core sets it to 1.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import TYPE_CHECKING

from .backend import get_array_module, is_numpy

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


@functools.cache
def machine_cores() -> int:
    """The cores this process may run on (its affinity), whatever shares them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def num_workers() -> int:
    """The cores this process may use: its share of the machine's when MPI started several
    ranks on it (``MPI_LOCALNRANKS``, set by MPICH's and Open MPI's launchers), so that K
    ranks on K cores each run on one instead of fighting over all of them."""
    env = os.environ.get("CNNRUN_NUM_THREADS")
    if env:
        return max(1, int(env))
    cores = machine_cores()
    local = os.environ.get("MPI_LOCALNRANKS", os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1"))
    return max(1, cores // max(1, int(local)))


@functools.cache
def _pool() -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # (with logging) ~8 ms; summary needs none
    return ThreadPoolExecutor(num_workers(), thread_name_prefix="cnnrun")


@functools.cache
def blas_controller():
    """threadpoolctl's handle on the loaded BLAS, or None where it is unavailable."""
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - first use only
        return ThreadpoolController()
    except Exception:  # missing, or a BLAS it cannot drive
        return None


class ThreadMode:
    """Whether a model's passes (at one batch size) work in bands: learnt, then kept."""

    def __init__(self):
        self.bands = False


class _Pass(threading.local):
    depth = 0  # engine_threads() nesting in this thread
    mode: ThreadMode | None = None
    limiter = None  # threadpoolctl's BLAS limit while one is held
    alone = False  # inside solo(): this thread is the pass's only worker


_PASS = _Pass()


@contextlib.contextmanager
def engine_threads(mode: ThreadMode | None = None):
    """One forward or backward pass (re-entrant). BLAS runs on one thread from the start
    if ``mode`` says the pass works in bands, else from its first band on."""
    outer = _PASS.depth == 0
    if outer:
        _PASS.mode = mode if mode is not None else ThreadMode()
        if _PASS.mode.bands:
            _limit_blas()
    _PASS.depth += 1
    try:
        yield
    finally:
        _PASS.depth -= 1
        if outer:
            _release_blas()
            _PASS.mode = None  # outside a pass, matmul is plain numpy


def workers() -> int:
    """The workers an operation may split over here: 1 inside ``solo``, else every one."""
    return 1 if _PASS.alone else num_workers()


@contextlib.contextmanager
def solo():
    """Passes on this thread alone, BLAS on one thread: one share of a batch cut over
    processes (``replicas``), whose other shares hold the other cores. Band workers or
    BLAS threads here would take those cores from them."""
    if _PASS.alone or _PASS.depth:
        raise RuntimeError("solo() must enclose whole passes, outside engine_threads()")
    _PASS.alone = True
    _limit_blas()
    try:
        yield
    finally:
        _release_blas()
        _PASS.alone = False


def _limit_blas():
    ctl = blas_controller()
    if _PASS.limiter is None and ctl is not None:
        _PASS.limiter = ctl.limit(limits=1, user_api="blas")


def _release_blas():
    if _PASS.limiter is not None:
        _PASS.limiter.restore_original_limits()
        _PASS.limiter = None


MATMUL_SPLIT_MACS = 1 << 24  # products this large are split over the workers


def matmul(a, b):
    """a @ b (2-D, or stacked with matching leading axes). In a pass that works in bands
    a large product has its result split over the workers, by rows where it has more
    rows than columns, else by columns (each worker then reads half of the larger
    operand and all of the smaller); otherwise it is one call, on BLAS's threads where
    the pass leaves them."""
    xp = get_array_module(a)
    k = workers() if is_numpy(xp) else 1
    rows, cols = a.shape[-2], b.shape[-1]
    banded = _PASS.mode is not None and _PASS.mode.bands
    if not banded or k == 1 or max(rows, cols) < 2 * k or \
            rows * a.shape[-1] * cols < MATMUL_SPLIT_MACS:
        return xp.matmul(a, b)
    out = xp.empty((*a.shape[:-1], cols), dtype=xp.result_type(a, b))
    by_rows = rows > cols
    n = rows if by_rows else cols
    step = -(-n // k)
    shares = [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def work(share, _buf):
        for sl in share:
            if by_rows:
                xp.matmul(a[..., sl, :], b, out=out[..., sl, :])
            else:
                xp.matmul(a, b[..., sl], out=out[..., sl])
    map_bands(work, shares, lambda n: [None] * n, xp)
    return out


def product(a, b):
    """a @ b in a worker thread: as np.dot where both are matrices, since np.matmul keeps
    the GIL while it computes a result of at most 500 elements (NumPy's threshold for
    releasing it) and so runs one worker at a time. LeNet-5's first weight gradient at
    batch 256, 6 × 25 outputs from bands of 35,840 columns, took 2.2 ms on two workers
    through np.matmul, as long as on one, and 1.4 ms through np.dot. (The forward's
    products write results of a whole band into place and keep np.matmul.)"""
    xp = get_array_module(a)
    if is_numpy(xp) and a.ndim == b.ndim == 2:
        return xp.dot(a, b)  # releases the GIL around the whole BLAS call
    return xp.matmul(a, b)


SPLIT_BYTES = 2 << 20  # element-wise work on arrays this large is split over the workers


def splits(a) -> bool:
    """Whether by_channels(…, a) runs on the workers: a large NumPy array with channels to
    share. Smaller ones cost less than handing them over (tens of µs)."""
    return a.nbytes >= SPLIT_BYTES and a.shape[0] > 1 and workers() > 1 and \
        is_numpy(get_array_module(a))


def by_channels(work, a) -> None:
    """work(s) for slices s of axis 0 covering a's channels: one share per worker where
    ``splits(a)``, else work(slice(None)) here.

    NumPy's element-wise loops run on one core; split by channels, a batch norm or a ReLU
    on ResNet-20's first stage (8 MB) runs on both (about 1.3× faster: the rest is memory
    bandwidth). The shares touch disjoint rows, so nothing is added across them."""
    if not splits(a):
        work(slice(None))
        return
    C, k = a.shape[0], workers()
    step = -(-C // k)  # channels per worker, rounded up
    shares = [slice(c, min(c + step, C)) for c in range(0, C, step)]
    map_bands(lambda mine, _buf: [work(s) for s in mine], shares, lambda n: [None] * n,
              get_array_module(a))


def map_bands(work, bands, buffers, xp=None) -> list:
    """``work(bands_subset, buffer)`` for each worker's share of ``bands``; their results.

    ``buffers(k)`` makes k scratch buffers in the calling thread (so each worker
    reuses memory from the main heap). Bands are dealt round-robin, which keeps
    the shares equal when the last band is short.
    """
    k = min(workers(), len(bands)) if xp is None or is_numpy(xp) else 1
    bufs = buffers(k)
    if k == 1:
        return [work(bands, bufs[0])]
    shares = [bands[i::k] for i in range(k)]
    if blas_controller() is None:  # BLAS threads cannot be limited: do not add ours
        return [work(b, buf) for b, buf in zip(shares, bufs)]
    with engine_threads():
        _PASS.mode.bands = True  # this model's later passes start with BLAS on one thread
        _limit_blas()
        return list(_pool().map(work, shares, bufs))
