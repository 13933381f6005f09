"""The pipes of ``replicas``: one worker process (``Worker``), and the sums across a
split pass's shares that its layers ask for in the middle of it (``CrossShares``).

Commands and replies are JSON lines (``replica_worker`` is the other end); arrays lie
in each worker's shared block. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ...errors import RunFailed
from .shared_block import SharedBlock


class ShareSums:
    """What both ends of the sums across a split pass's shares know: this share's n
    samples of the whole batch's, so a per-share count scales to the batch's."""

    def __init__(self, n: int, batch: int):
        self.n, self.batch = n, batch

    def count(self, m: int) -> int:
        """A count over this share (m per channel, from n samples) as the whole batch's."""
        return m // self.n * self.batch


class CrossShares(ShareSums):
    """This process's end of the sums across a split pass's shares (``Context.shares``):
    each worker reaches the same layer in the same order, writes its partial sum into its
    block and says so; this process adds them to its own in share order, so every process
    gets the same total, and hands it back. One round trip per sum (~40 µs): batch norm
    takes three per layer and step. Across machines this is an MPI allreduce."""

    def __init__(self, workers, n: int, batch: int, outer=None):
        super().__init__(n, batch)
        self.workers, self.outer = workers, outer  # outer: the sums across MPI ranks

    def total(self, partial):
        total = partial.copy()
        for w in self.workers:
            w.expect_sum()
            total += w.io.array("sum", partial.shape)
        if self.outer is not None:  # this machine's total, then every machine's
            total = self.outer.total(total)
        for w in self.workers:
            np.copyto(w.io.array("sum", partial.shape), total)
            w.send({"op": "sum"})
        return total


STOPPED_GRACE = 5  # seconds a stopped worker may stay stopped before the run ends


def _stopped(pid: int) -> bool:
    """Whether a process is stopped (state T, or t under a tracer), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("T", "t")


def shut_down(workers) -> None:
    for w in workers:
        w.close()
    workers.clear()


class Worker:
    """One worker process, its pipes and its shared block of shares and gradients."""

    def __init__(self):
        import cnnrun
        env = {**os.environ, "CNNRUN_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               # the same cnnrun as this process's, wherever it was imported from
               "PYTHONPATH": os.pathsep.join([str(Path(cnnrun.__file__).parent.parent),
                                              os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnrun.engine.parallel.worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.io: SharedBlock | None = None
        self.room, self.dtype = 0, None  # the largest share its block holds, and its dtype

    def fit(self, entries, room: int, dtype) -> None:
        """Give the worker a new block, laid out by entries, for shares up to ``room``."""
        if self.io is not None:
            self.io.close()
        self.io = SharedBlock.create(entries)
        self.room, self.dtype = room, dtype
        try:
            self.send({"op": "io", "block": self.io.describe()})
            self.reply()
        finally:
            self.io.unlink()

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RunFailed(self._gone()) from None

    def expect_sum(self) -> None:
        """Wait for the worker's partial sum (``CrossShares``), in the middle of a pass."""
        if "sum" not in self.reply():
            raise RunFailed("a worker process (train.processes) finished its share of a pass "
                            "where this process expected a sum across the shares from it: "
                            "the processes ran different layers. Set train.processes: 1.")

    def reply(self) -> dict:
        self._wait_readable()
        line = self.proc.stdout.readline()
        if not line:
            raise RunFailed(self._gone())
        answer = json.loads(line)
        if "error" in answer:
            raise RunFailed(f"a worker process (train.processes) failed: {answer['error']}. "
                            "Set train.processes: 1 to run in this process and see the "
                            "error where it happens.")
        return answer

    def _wait_readable(self) -> None:
        """Wait for the worker's next line, checking each second that it still runs: a worker
        stopped (SIGSTOP, a debugger) for STOPPED_GRACE seconds ends the run instead of
        hanging it. One line at most is ever pending (each command has one reply, and a
        worker waits for the total after sending its sum), so the pipe's buffer holds
        nothing select cannot see."""
        stopped_since = None
        while not select.select([self.proc.stdout], [], [], 1.0)[0]:
            if self.proc.poll() is not None:
                return  # readline gives '' and the caller reports the exit
            if not _stopped(self.proc.pid):
                stopped_since = None
                continue
            stopped_since = stopped_since or time.monotonic()
            if time.monotonic() - stopped_since > STOPPED_GRACE:
                raise RunFailed(f"worker process {self.proc.pid} (train.processes) has been "
                                f"stopped for {STOPPED_GRACE} s (SIGSTOP?) in the middle of a "
                                f"pass, so the run ends here; resume it from its last "
                                f"checkpoint, with train.processes: 1 if this recurs.")

    def _gone(self) -> str:
        code = self.proc.poll()
        return (f"a worker process (train.processes) exited with code {code} in the middle of "
                "a pass; its error, if any, is above. Set train.processes: 1 to run in this "
                "process alone.")

    def close(self) -> None:
        if self.proc.poll() is None and _stopped(self.proc.pid):
            self.proc.kill()  # a stopped worker would not read its end of input
            self.proc.wait()
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # end of input: the worker leaves its loop
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.io is not None:
            self.io.close()
            self.io = None
