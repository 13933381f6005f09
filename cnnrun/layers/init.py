"""Weight initialisation schemes (He, Glorot, LeCun, PyTorch's default).

Fans follow PyTorch's tensor rule so that grouped and transposed
convolutions agree with it: fan_in = shape[1]·∏shape[2:], fan_out = shape[0]·∏shape[2:].
Everything is drawn on the host in float64 and cast once, so the same seed
gives the same weights whatever the dtype or backend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

InitName = Literal["he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
                   "lecun_normal", "lecun_uniform", "torch_default", "zeros", "ones"]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _draw(rng, shape, dist, std):
    if dist == "normal":
        return rng.normal(0.0, std, size=shape)
    bound = math.sqrt(3.0) * std  # a uniform on [-b, b] has std b/√3
    return rng.uniform(-bound, bound, size=shape)


def init_weight(rng: np.random.Generator, shape, scheme: str) -> np.ndarray:
    """A weight tensor drawn by ``scheme`` (float64, host)."""
    fan_in, fan_out = fans(tuple(shape))
    if scheme in ("zeros", "ones"):
        import numpy as np  # lazily: see backend.py
        return np.full(shape, 1.0 if scheme == "ones" else 0.0)
    if scheme == "torch_default":  # kaiming_uniform(a=√5) = U(±1/√fan_in)
        return _draw(rng, shape, "uniform", 1.0 / math.sqrt(3.0 * fan_in))
    family, dist = scheme.split("_")
    std = {"he": math.sqrt(2.0 / fan_in),
           "glorot": math.sqrt(2.0 / (fan_in + fan_out)),
           "lecun": math.sqrt(1.0 / fan_in)}[family]
    return _draw(rng, shape, dist, std)


def init_bias(rng: np.random.Generator, shape, weight_shape, scheme: str) -> np.ndarray:
    """Biases are zero, except under PyTorch's default, which draws U(±1/√fan_in)."""
    if scheme == "torch_default":
        fan_in, _ = fans(tuple(weight_shape))
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape)
    import numpy as np  # lazily: see backend.py
    return np.zeros(shape)
