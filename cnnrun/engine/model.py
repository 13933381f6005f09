"""A network: a root sequence of layers over a fixed per-sample input shape.

State (parameters and buffers) is a nested dict mirroring the containers;
``flatten`` gives the dotted-name view (``layer1.0.conv1.weight``) that
optimizers and checkpoints use, sharing the same arrays.
"""

from __future__ import annotations

import math

from ..errors import UserError
from ..safe_io import available_memory

from ..ops.backend import get_array_module, to_device
from ..layers import RF, Context, Layer
from ..layers.containers import Sequential
from ..ops.layout import to_engine, to_external
from ..ops.parallel import ThreadMode, engine_threads
from .state import flatten, leaves, map_tree, node_at, trainable_shapes, unflatten


def _sequence(layers: list) -> Sequential:
    """Validated layers are wrapped as they are; dicts (tests, scripts) are validated."""
    if all(isinstance(layer, Layer) for layer in layers):
        return Sequential.of(layers)
    return Sequential(layers=layers)


class Model:
    """Layers bound to an input shape. Construction checks every shape."""

    def __init__(self, layers: list[Layer] | Sequential, input_shape: tuple[int, ...]):
        self.root = layers if isinstance(layers, Sequential) else _sequence(list(layers))
        self.input_shape = tuple(input_shape)
        self.output_shape = self.root.output_shape(self.input_shape)
        self._trainable_names = None
        self._thread_modes: dict[int, ThreadMode] = {}  # per batch size
        self.runner = None  # a pass runner (parallel.replicas), injected

    # ---- rules --------------------------------------------------------------
    def param_shapes(self) -> dict:
        return self.root.param_shapes(self.input_shape)

    def buffer_shapes(self) -> dict:
        return self.root.buffer_shapes(self.input_shape)

    def n_params(self) -> int:
        return self.root.n_params(self.input_shape)

    def macs(self) -> int:
        return self.root.macs(self.input_shape)

    def receptive_field(self) -> RF:
        return self.root.receptive_field(RF.of_input(self.input_shape[1:]), self.input_shape)

    # ---- state ----------------------------------------------------------------
    def init(self, seed: int = 0, dtype="float32", xp=None) -> dict:
        """Draw parameters on the host from ``seed`` (float64), then cast and move once to
        ``xp`` (NumPy by default)."""
        import numpy as np  # lazily: see backend.py
        self.check_fits(np.dtype(dtype).itemsize)
        xp = np if xp is None else xp
        rng = np.random.default_rng(seed)
        host = self.root.init_state(self.input_shape, rng)
        return map_tree(host, lambda a: to_device(np.asarray(a, dtype=dtype), xp))

    def check_fits(self, itemsize: int) -> None:
        """Refuse, before allocating, a state that this machine's memory cannot hold: drawn
        in float64 on the host, then cast (a typo such as ``out_channels: 1000000000``, or a
        checkpoint whose stored config declares one)."""
        sizes = {**flatten(self.param_shapes()), **flatten(self.buffer_shapes())}
        counts = {n: math.prod(s) for n, s in sizes.items()}
        need = sum(counts.values()) * (8 + itemsize)
        free = available_memory()
        if need > free:
            largest = max(counts, key=counts.get)
            raise UserError(f"this network's state takes {need / 2**30:,.1f} GiB to set up "
                            f"({sum(counts.values()):,} values; the largest, {largest}, has "
                            f"{counts[largest]:,}), more than the {free / 2**30:,.1f} GiB this "
                            f"machine has free. Check the layer sizes in the config.")

    def trainable_names(self) -> frozenset[str]:
        """Dotted names of the parameters that receive gradients (computed once: the
        layers are frozen, so the answer never changes)."""
        if self._trainable_names is None:
            self._trainable_names = frozenset(flatten(self.grads_template()))
        return self._trainable_names

    def trainable_in(self, flat_state: dict) -> list[str]:
        """The trainable names, in the order of a flat state."""
        names = self.trainable_names()
        return [n for n in flat_state if n in names]

    def grads_template(self) -> dict:
        return trainable_shapes(self.root, self.input_shape)

    # ---- computation (engine layout) ------------------------------------------
    # Each pass runs inside engine_threads(), in the thread mode this model has learnt for
    # the batch size: band workers with BLAS on one thread, or BLAS's own threads (see
    # ops/parallel.py for why the two must not mix).
    def threads(self, batch: int):
        return engine_threads(self._thread_modes.setdefault(batch, ThreadMode()))

    def forward(self, state, x, train=False, rng=None, sums=None, keep_caches=True):
        """``sums``: where x is a share of a batch cut over machines (MPI ranks), the sums
        across the shares (``Context.shares``), through which batch norm sees the batch.
        ``keep_caches=False``: an inference pass that no backward follows; its caches are
        dropped as it goes (the cache returned is then of no use)."""
        if self.runner is not None and self.runner.takes(x, train, rng):
            return self.runner.forward(state, x, train, rng, sums)
        ctx = Context(train=train, rng=rng, shares=sums, keep_caches=keep_caches)
        with self.threads(x.shape[-1]):
            return self.root.forward(state, x, ctx)

    def backward(self, state, cache, gy, need_gx=False):
        if self.runner is not None and self.runner.owns(cache):
            return self.runner.backward(state, cache, gy, need_gx)
        with self.threads(gy.shape[-1]):
            return self.root.backward(state, cache, gy, need_gx)

    # ---- an injected pass runner --------------------------------------------------
    # ``runner`` may take a pass instead of the root layers: parallel.replicas.use_processes
    # installs one that cuts the batch over worker processes. The model knows only this
    # interface (takes/forward, owns/backward, close), so it never imports the processes.
    def close(self) -> None:
        """Stop the pass runner's resources (worker processes), if any."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    def hvp(self, state, x, labels, loss_fn, v: dict, gauss_newton: bool = False, rng=None,
            train: bool = True) -> dict:
        """H·v (or the Gauss–Newton G·v = Jᵀ·H_loss·J·v) for a flat direction v over the
        trainable parameters, on the batch x (engine layout), exactly (Pearlmutter's R-operator).

        Batch norm uses batch statistics when ``train`` (its running statistics are left
        alone)."""
        with self.threads(x.shape[-1]):
            return self._hvp(state, x, labels, loss_fn, v, gauss_newton,
                             Context(train=train, rng=rng, freeze_stats=True))

    def _hvp(self, state, x, labels, loss_fn, v, gauss_newton, ctx):
        y, cache = self.root.forward(state, x, ctx)  # dropout's mask is kept in the cache
        nested_v = unflatten(v)
        xp = get_array_module(x)
        ry, rcache = self.root.r_forward(state, nested_v, xp.zeros_like(x), cache, ctx)
        g = loss_fn.value_and_grad(y, labels)[1]
        rg = loss_fn.hessian_vector(y, labels, ry)
        if gauss_newton:
            return flatten(self.root.backward(state, cache, rg, need_gx=False)[1])
        return flatten(self.root.r_backward(state, nested_v, cache, rcache, g, rg)[1])

    def penalty(self, state) -> tuple[float, dict]:
        """Σ of the layers' penalties (e.g. combine_maps sparsity) and their flat gradients."""
        total, grads = 0.0, {}
        for name, layer, _ in leaves(self.root, self.input_shape):
            fn = getattr(layer, "penalty", None)
            node = node_at(state, name)
            result = fn(node) if fn is not None else None
            if result is not None:
                total += result[0]
                grads.update({f"{name}.{k}": v for k, v in result[1].items()})
        return total, grads

    # ---- convenience (PyTorch layout in and out) --------------------------------
    def predict(self, state, x_nchw, batch_size: int = 256):
        """Outputs (N, K) of an (N, C, H, W) batch in evaluation mode, in chunks."""
        xp = get_array_module(x_nchw)
        outs = []
        for i in range(0, x_nchw.shape[0], batch_size):
            y, _ = self.forward(state, to_engine(x_nchw[i:i + batch_size]), keep_caches=False)
            outs.append(to_external(y))
        return xp.concatenate(outs, axis=0)



__all__ = ["Model", "flatten", "unflatten", "leaves"]
