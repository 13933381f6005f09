"""A worker process of ``replicas``: one share of each pass, on one core.

    python -m cnnrun.engine.parallel.worker      # started by replica_pipes.Worker, never by hand

Commands arrive as JSON lines on stdin and each gets one JSON line back on the
original stdout (stray prints are sent to stderr so they cannot break the protocol):
``init`` (the layers, the input shape and the shared state block), ``io`` (the block
of this worker's shares), ``forward`` and ``backward`` of its share, ``rss``. In the
middle of a pass a layer may need a sum over every share (batch norm's statistics):
the worker then writes its partial sum into its block, sends ``{"sum": …}`` and waits
for the ``sum`` command, after which the block holds the total (``SharesSum``). End of
input, as when the parent exits or dies, ends the process. Ctrl-C is the parent's to
handle: it closes its workers.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from ...ops.allocator import keep_freed_memory, peak_rss_mb
from .pipes import ShareSums


class SharesSum(ShareSums):
    """A worker's end of ``replica_pipes.CrossShares``: its partial sum out, the total back."""

    def __init__(self, io, commands, replies, n: int, batch: int):
        super().__init__(n, batch)
        self.io, self.commands, self.replies = io, commands, replies

    def total(self, partial):
        self.io.array("sum", partial.shape)[...] = partial
        _send(self.replies, {"sum": partial.size})
        line = self.commands.readline()
        if not line:
            raise SystemExit(0)  # the parent closed the pipe: the pass is abandoned
        if json.loads(line).get("op") != "sum":
            raise RuntimeError("expected the sum across the shares, got another command")
        return self.io.array("sum", partial.shape).copy()


class Replica:
    """The model, the state and the share buffers of one worker."""

    def __init__(self, message, commands, replies):
        from ...layers.containers import Sequential
        from ..model import Model, unflatten
        from .shared_block import SharedBlock
        self.commands, self.replies = commands, replies
        root = Sequential.model_validate(message["layers"])
        self.model = Model(root, tuple(message["input_shape"]))
        self.state_block = SharedBlock.attach(**message["state"])
        self.state = unflatten({n: self.state_block.array(n) for n in self.state_block.places})
        self.io, self.cache, self.n = None, None, 0

    def attach_io(self, message):
        from .shared_block import SharedBlock
        if self.io is not None:
            self.io.close()
        self.io = SharedBlock.attach(**message["block"])

    def forward(self, message):
        from ...layers import Context
        from ...layers.streams import SampleStreams
        self.n = n = message["n"]
        x = self.io.array("x", (*self.model.input_shape, n))
        self.cache = None  # the previous pass's, before this one's takes memory
        across = SharesSum(self.io, self.commands, self.replies, n, message["batch"])
        # freeze_stats: the running statistics are this process's parent's to update; here
        # they lie in the block every worker shares, rewritten before each pass
        streams = message.get("streams")
        rng = SampleStreams(*streams) if streams else None
        ctx = Context(train=message["train"], rng=rng, freeze_stats=True, shares=across)
        y, self.cache = self.model.root.forward(self.state, x, ctx)
        self.io.array("y", y.shape)[...] = y

    def backward(self, message):
        from ..model import flatten
        need_gx = message["need_gx"]
        gy = self.io.array("gy", (*self.model.output_shape, self.n))
        gx, grads = self.model.root.backward(self.state, self.cache, gy, need_gx)
        self.cache = None
        for name, g in flatten(grads).items():
            self.io.array("grad:" + name)[...] = g
        if need_gx:
            self.io.array("gx", gx.shape)[...] = gx


def _send(replies, message: dict) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def serve(commands, replies) -> None:
    """Answer commands until the input ends."""
    replica = None
    for line in iter(commands.readline, ""):  # readline: SharesSum reads the same stream
        message = json.loads(line)
        op = message["op"]
        try:
            if op == "init":
                replica = Replica(message, commands, replies)
            elif op == "io":
                replica.attach_io(message)
            elif op == "forward":
                replica.forward(message)
            elif op == "backward":
                replica.backward(message)
            elif op == "rss":
                _send(replies, {"peak_rss_mb": peak_rss_mb()})
                continue
            else:
                raise ValueError(f"unknown command {op!r}")
            answer = {}
        except (BrokenPipeError, ConnectionResetError):
            raise  # the parent is gone (see main)
        except Exception as e:  # reported to the parent, which raises it as a failed run
            answer = {"error": f"{op}: {type(e).__name__}: {e}"}
        _send(replies, answer)


def main() -> None:
    # as the parent (cli.py) does: without it each pass maps and page-faults its large
    # arrays afresh; ResNet-20's half-batch share took 450 ms a step instead of 340
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # print() and warnings now reach stderr, not the protocol
    try:
        serve(sys.stdin, replies)
    except (BrokenPipeError, ConnectionResetError):
        os._exit(0)  # the parent is gone: nobody to answer, nothing to report


if __name__ == "__main__":
    main()
