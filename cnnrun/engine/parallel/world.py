"""Data parallelism across machines: the MPI processes (ranks) of one training.

``mpiexec -n K cnnrun train CONFIG`` starts K ranks. Each takes its contiguous share of
every global batch (``replicas.shares``), computes its forward and backward passes (cut
further over local processes where ``train.processes`` says so), and the ranks meet at
three places per step, all through buffer-based collectives on contiguous arrays (never
mpi4py's pickling lower-case calls):

- batch norm's sums, through ``Context.shares`` (``RankSums``): the same interface the
  local workers' sums use, so a layer cannot tell local shares from remote ones;
- the outputs, gathered so that every rank's loss reads the whole batch (``gather_batch``):
  the loss, its gradient and the accuracy are then one process's, bit for bit;
- the gradients, added up in a few contiguous buckets (``reduce_gradients``), the one
  place a step reduces them (Horovod's tensor fusion, PyTorch DDP's buckets).

Detection follows ChainerMN, Horovod and Lightning: the world is MPI's when mpi4py is
installed and an MPI launcher started this process (its environment says so); otherwise
``World()`` is one process, and nothing imports mpi4py.
"""

from __future__ import annotations

import os

import numpy as np

from .pipes import ShareSums
from .replicas import shares

# Set by MPI launchers: MPICH's Hydra (PMI_*), Open MPI (OMPI_*), PMIx, Slurm's srun.
LAUNCHER_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
BUCKET_BYTES = 32 << 20  # gradients are reduced in contiguous buckets of about this size


def launched_by_mpi(env=os.environ) -> bool:
    return any(key in env for key in LAUNCHER_ENV)


class World:
    """The ranks of one training; one process (rank 0 of 1) without MPI."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self._buffers: dict[int, np.ndarray] = {}  # reduce_gradients' host buckets, kept
        self._blas = None  # the BLAS thread limit while this world lasts

    @classmethod
    def detect(cls) -> "World":
        if not launched_by_mpi():
            return cls()
        try:
            from mpi4py import MPI
        except ImportError:
            return cls()  # launched by mpiexec without the [mpi] extra: one process each
        comm = MPI.COMM_WORLD
        if comm.Get_size() == 1:
            return cls()
        world = cls(comm)
        world._blas = _limit_blas_to_share()
        return world

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """This rank's samples lo … hi−1 of a batch of n (the first ranks one more where n
        does not divide: 64 over 3 ranks is 22, 21, 21)."""
        return shares(n, self.size)[self.rank]

    def sums(self, n: int, batch: int):
        """The sums across the ranks' shares of a batch (``Context.shares``), or None."""
        return RankSums(self, n, batch) if self.size > 1 else None

    # ---- collectives ----------------------------------------------------------
    def allreduce(self, a: np.ndarray) -> np.ndarray:
        """Σ over ranks of a contiguous host array, the same on every rank."""
        if self.size == 1:
            return a
        from mpi4py import MPI
        out = np.empty_like(a)
        self.comm.Allreduce(np.ascontiguousarray(a), out, op=MPI.SUM)
        return out

    def gather_batch(self, part: np.ndarray, batch: int) -> np.ndarray:
        """The whole batch's (…, batch) array on every rank, from each rank's (…, n) share."""
        if self.size == 1:
            return part
        rows = np.ascontiguousarray(np.moveaxis(part, -1, 0))  # (…, n) -> (n, …): a block each
        per = int(np.prod(rows.shape[1:]))
        counts = [(hi - lo) * per for lo, hi in shares(batch, self.size)]
        whole = np.empty((batch, *rows.shape[1:]), dtype=rows.dtype)
        self.comm.Allgatherv(rows, [whole, counts])
        return np.moveaxis(whole, 0, -1)  # (batch, …) -> (…, batch)

    def reduce_gradients(self, grads: dict) -> dict:
        """Σ over ranks of every gradient, in place, packed into contiguous buckets whose
        host buffers are kept from step to step (a fresh megabyte each step cost more page
        faults than the reduction itself)."""
        if self.size == 1:
            return grads
        from mpi4py import MPI

        from ...ops.backend import get_array_module, to_device, to_numpy
        for i, bucket in enumerate(_buckets(list(grads.items()), BUCKET_BYTES)):
            buf = self._bucket_buffer(i, bucket)
            at = 0
            for _, g in bucket:  # on a GPU, staged: pip's MPI builds are not CUDA-aware
                buf[at:at + g.size] = to_numpy(g).ravel()
                at += g.size
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            at = 0
            for _, g in bucket:
                g[...] = to_device(buf[at:at + g.size].reshape(g.shape), get_array_module(g))
                at += g.size
        return grads

    def _bucket_buffer(self, i: int, bucket) -> np.ndarray:
        size, dtype = sum(g.size for _, g in bucket), bucket[0][1].dtype
        buf = self._buffers.get(i)
        if buf is None or buf.size != size or buf.dtype != dtype:
            buf = self._buffers[i] = np.empty(size, dtype=dtype)
        return buf

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's string on every rank (a run directory's path), as bytes."""
        if self.size == 1:
            return text
        data = np.frombuffer((text or "").encode(), dtype=np.uint8)
        n = np.array([data.size if self.is_root else 0], dtype=np.int64)
        self.comm.Bcast(n, root=0)
        buf = data.copy() if self.is_root else np.empty(int(n[0]), dtype=np.uint8)
        self.comm.Bcast(buf, root=0)
        return buf.tobytes().decode()

    def abort(self, code: int) -> None:
        """End every rank now (a failure on one must not leave the others waiting)."""
        if self.size > 1:
            self.comm.Abort(code)


def _limit_blas_to_share():
    """BLAS's own threads to this rank's share of the machine's cores (``num_workers``):
    two ranks on two cores, each with a two-thread BLAS, took 25 times longer a LeNet-5
    step. The limit lasts as long as the world."""
    from ...ops.parallel import blas_controller, num_workers
    ctl = blas_controller()
    return ctl.limit(limits=num_workers(), user_api="blas") if ctl is not None else None


class RankSums(ShareSums):
    """The sums across the ranks' shares of a batch, for batch norm (``Context.shares``)."""

    def __init__(self, world: World, n: int, batch: int):
        super().__init__(n, batch)
        self.world = world

    def total(self, partial):
        from ...ops.backend import get_array_module, to_device, to_numpy
        xp = get_array_module(partial)
        return to_device(self.world.allreduce(to_numpy(partial)), xp)  # via the host on a GPU


def _buckets(items, limit: int):
    """Consecutive groups of (name, array) of about ``limit`` bytes, same dtype in each."""
    bucket, size = [], 0
    for name, g in items:
        if bucket and (size + g.nbytes > limit or g.dtype != bucket[0][1].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append((name, g))
        size += g.nbytes
    if bucket:
        yield bucket
