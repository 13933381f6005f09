"""What every layer declares, in one place.

A layer type is one class: a frozen pydantic model whose fields are its
config schema (PyTorch's argument names), and whose methods are its rules —
output shape, receptive field, parameter shapes and initialisation, MAC count,
forward and backward. The graph, ``summary``, the trainer and the tests all
call these same methods, so a reported shape can never disagree with the
engine.

Conventions:
- A per-sample shape is (C, H, W), (C, L) or (F,): no batch axis.
- Arrays inside the engine are batch-last: (C, H, W, N), (C, L, N), (F, N).
- ``forward(p, x, ctx) -> (y, cache)`` and ``backward(p, cache, gy, need_gx)
  -> (gx, grads)`` are pure: the cache is returned, never kept on the layer,
  so one layer object may run twice and evaluation keeps nothing alive.
  ``p`` is this layer's dict of parameters and buffers; batch norm updates
  its running statistics in it, as PyTorch's functional batch_norm does.
"""

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, PositiveInt, PrivateAttr

from ..ops.shapes import effective_kernel

from .init import InitName, init_bias, init_weight

if TYPE_CHECKING:
    import numpy as np

Shape = tuple[int, ...]
# A size per spatial axis, or one for all: ``kernel_size: 3`` or ``[3, 5]`` (see shapes.ntuple).
IntOrPair = Union[PositiveInt, tuple[PositiveInt, PositiveInt]]


class ShapeError(ValueError):
    """A layer cannot take the shape it is given; the message names both.

    ``path`` is the key path of the failing layer inside its containers, e.g.
    ('layers', 3, 'body', 0); containers prepend their part as it propagates.
    """

    path: tuple = ()

    def within(self, *prefix) -> "ShapeError":
        self.path = tuple(prefix) + tuple(self.path)
        return self


@dataclass(frozen=True)
class RF:
    """Receptive field of one unit, per spatial axis of the network input.

    size: extent in input pixels; jump: distance in input pixels between
    adjacent units; start: input coordinate (first pixel = 0) of the centre of
    the first unit's field (negative when it lies in the padding).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    grid: tuple[int, ...]  # the lattice of units here; flatten keeps it, linear reads it all

    @classmethod
    def of_input(cls, spatial: tuple[int, ...]) -> "RF":
        n = len(spatial)
        return cls((1,) * n, (1,) * n, (0.0,) * n, tuple(spatial))

    def whole_grid(self) -> "RF":
        """Every unit of the current grid read at once (linear, global pooling)."""
        return self.window(self.grid, self.grid, (0,) * len(self.grid), grid=(1,) * len(self.grid))

    def window(self, kernel, stride, pad_before, dilation=None, grid=None) -> "RF":
        """Compose with a sliding window (Araujo, Norris & Sim, Distill 2019)."""
        dilation = dilation or (1,) * len(kernel)
        size, jump, start = [], [], []
        for r, j, s, k, st, p, d in zip(self.size, self.jump, self.start, kernel, stride,
                                       pad_before, dilation):
            keff = effective_kernel(k, d)
            size.append(r + (keff - 1) * j)
            start.append(s + ((keff - 1) / 2 - p) * j)
            jump.append(j * st)
        return RF(tuple(size), tuple(jump), tuple(start), tuple(grid or self.grid))


@dataclass
class Context:
    """Per-call settings: training mode, dropout's random numbers (per-sample
    ``SampleStreams``, or one generator for the batch), and where the batch is cut over
    processes or machines the sum across its shares (``total(partial)`` adds a per-share
    array over every share, ``count(m)`` scales a per-share count to the whole batch's),
    through which batch norm takes the whole batch's statistics."""

    train: bool = False
    rng: Any = None
    freeze_stats: bool = False  # batch norm keeps its running statistics (extra passes)
    shares: Any = None
    keep_caches: bool = True  # False: a pass no backward follows drops each cache at once


class Layer(BaseModel):
    """Base of every layer declaration. Subclasses set ``type: Literal[...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str | None = None
    trainable: bool = True
    _memo: dict = PrivateAttr(default_factory=dict)  # see memo_by_shape

    # Small (config, input shape) cases; the test suite runs every check on each.
    examples: ClassVar[tuple[tuple[dict, Shape], ...]] = ()
    # Per-sample ranks this layer accepts (None: any).
    ranks: ClassVar[tuple[int, ...] | None] = None

    # ---- rules (pure arithmetic on per-sample shapes) -------------------
    def output_shape(self, in_shape: Shape) -> Shape:
        self.check_rank(in_shape)
        return tuple(in_shape)

    def receptive_field(self, rf: RF, in_shape: Shape) -> RF:
        return rf

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        return {}

    def buffer_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        return {}

    def macs(self, in_shape: Shape) -> int:
        """Multiply–accumulates per sample of the weighted layers (conv, linear); 0 for the
        rest, as torchvision's and fvcore's tables count. FLOPs = 2·MACs."""
        return 0

    def kept_elements(self, in_shape: Shape) -> int:
        """Elements per sample that the backward keeps besides the layers' outputs (a
        convolution's padded input), for ``cnnrun summary``'s memory estimate."""
        return 0

    def connections(self, in_shape: Shape) -> int:
        """LeCun's "connections" per sample: MACs plus one bias add per output unit."""
        bias = "bias" in self.param_shapes(in_shape)
        return self.macs(in_shape) + (math.prod(self.output_shape(in_shape)) if bias else 0)

    def init_state(self, in_shape: Shape, rng: "np.random.Generator") -> "dict[str, np.ndarray]":
        """Parameters and buffers, float64 on the host (the caller casts and moves)."""
        return {}

    # ---- computation -----------------------------------------------------
    def forward(self, p: dict, x, ctx: Context):
        raise NotImplementedError

    def to_onnx(self, g, x: str, p: dict, in_shape: Shape) -> str:
        """Emit this layer's inference form into an ``export.graph.Graph``: nodes reading
        tensor ``x`` (NCHW, batch first); returns the output tensor's name."""
        raise g.unsupported(self)

    def backward(self, p: dict, cache, gy, need_gx: bool = True):
        raise NotImplementedError

    # ---- R-operator (Pearlmutter 1994): exact Hessian-vector products ------------
    # r_forward gives R{y}, the derivative of y along a direction (v over this layer's
    # parameters, rx over its input); r_backward gives R{gx} and R{∂E/∂θ} from gy and R{gy}.
    # A parameter-free layer that is linear in x (pooling by averages, flatten, upsampling)
    # applies its own forward and backward to the R-quantities.
    linear_in_x: ClassVar[bool] = False

    def r_forward(self, p: dict, v: dict, rx, cache, ctx: "Context"):
        if self.linear_in_x:
            return self.forward(p, rx, ctx)[0], None
        raise NotImplementedError(f"{self.type} has no R-operator (Hessian-vector products) yet")

    def r_backward(self, p: dict, v: dict, cache, rcache, gy, rgy):
        if self.linear_in_x:
            return self.backward(p, cache, rgy)[0], {}
        raise NotImplementedError(f"{self.type} has no R-operator (Hessian-vector products) yet")

    # ---- helpers ----------------------------------------------------------
    def separable(self, train: bool) -> bool:
        """Whether, in this mode, each sample's output depends on that sample alone, so that
        a batch may be cut into shares computed apart (``replicas``). Batch statistics and
        dropout's draws are not; a container is separable where all its layers are."""
        children = getattr(self, "children", None)
        return all(c.separable(train) for _, c in children()) if children else True

    def draws(self, train: bool) -> bool:
        """Whether this mode draws random numbers (dropout in training): such a pass may be
        cut into shares only with per-sample streams (``layers/streams.py``)."""
        children = getattr(self, "children", None)
        return any(c.draws(train) for _, c in children()) if children else False

    def splittable(self, train: bool) -> bool:
        """Whether a batch may be cut into shares computed in separate processes
        (``replicas``) with the same result: separable layers, and those whose coupling is
        a sum the shares add up through ``Context.shares`` (batch statistics). A container
        is splittable where all its layers are."""
        children = getattr(self, "children", None)
        if children:
            return all(c.splittable(train) for _, c in children())
        return self.separable(train)

    def has_trainable(self) -> bool:
        """Whether backward yields parameter gradients (False also when frozen)."""
        return False

    def label(self) -> str:
        return self.name or self.type

    def check_rank(self, in_shape: Shape) -> None:
        if self.ranks is not None and len(in_shape) not in self.ranks:
            want = " or ".join(_rank_words[r] for r in self.ranks)
            raise ShapeError(f"{self.label()}: expects a {want} input, got shape "
                             f"{tuple(in_shape)}")

    def n_params(self, in_shape: Shape) -> int:
        """Free parameters; a layer whose weights are partly fixed at zero counts only the rest."""
        return sum(math.prod(s) for s in self.param_shapes(in_shape).values())

    def n_trainable(self, in_shape: Shape) -> int:
        return self.n_params(in_shape) if self.has_trainable() else 0


_rank_words = {1: "(features,)", 2: "(C, L)", 3: "(C, H, W)"}


class ParamLayer(Layer):
    """A layer with learned parameters: an init scheme and optional fixed values.

    ``weights`` gives parameter values in the YAML (nested lists in PyTorch's
    layout), e.g. a fixed Sobel filter; combine with ``trainable: false`` to
    keep them fixed during training.
    """

    init: InitName = "torch_default"
    weights: dict[str, Any] | None = None

    def has_trainable(self) -> bool:
        return self.trainable

    def init_state(self, in_shape, rng):
        shapes = self.param_shapes(in_shape)
        state = {}
        for pname, shape in shapes.items():
            if pname == "weight":
                state[pname] = init_weight(rng, shape, self.init)
            elif pname == "bias":
                state[pname] = init_bias(rng, shape, shapes.get("weight", shape), self.init)
            else:
                state[pname] = self.default_param(pname, shape, rng)
        state.update(self.given_weights(shapes))
        state.update({b: self.default_buffer(b, s) for b, s in self.buffer_shapes(in_shape).items()})
        return state

    def default_param(self, pname: str, shape: Shape, rng) -> "np.ndarray":
        import numpy as np  # lazily: see backend.py
        return np.zeros(shape)

    def default_buffer(self, bname: str, shape: Shape) -> "np.ndarray":
        import numpy as np  # lazily: see backend.py
        return np.zeros(shape)

    def given_weights(self, shapes: dict[str, Shape]) -> "dict[str, np.ndarray]":
        import numpy as np  # lazily: see backend.py
        given = {}
        for pname, value in (self.weights or {}).items():
            if pname not in shapes:
                raise ShapeError(f"{self.label()}: weights.{pname} is not a parameter of "
                                 f"{self.type} (its parameters: {', '.join(shapes)})")
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != tuple(shapes[pname]):
                raise ShapeError(f"{self.label()}: weights.{pname} has shape {arr.shape}, "
                                 f"expected {tuple(shapes[pname])}")
            given[pname] = arr
        return given


def memo_by_shape(method):
    """Remember a container rule's result per argument (a per-sample shape, an RF).

    Containers fold their children's rules, so without this a deep net recomputes
    the same shapes at every level. The layer is frozen, so results never go stale."""
    @functools.wraps(method)
    def wrapper(self, *args):
        key = (method.__name__,) + tuple(tuple(a) if isinstance(a, list) else a for a in args)
        memo = self._memo
        if key not in memo:
            memo[key] = method(self, *args)
        return memo[key]
    return wrapper

