"""The one module that chooses between NumPy and CuPy.

Every other module asks the arrays it is handed for their namespace
(``xp = get_array_module(x)``), the idiom CuPy's own guide recommends, so no
global GPU flag exists and CuPy is imported nowhere else.

NumPy itself is imported by the functions that need it, here and in the layer
modules, not at module level: `cnnrun summary` and `--help` use only the shape
rules and never touch an array, and NumPy's import is a fifth of their time
(75 of 590 ms for `summary configs/vgg16.yaml`).
"""

from __future__ import annotations

import functools

BACKENDS = ("numpy", "cupy")


@functools.cache
def _cupy():
    """CuPy if it imports and sees a GPU, else None (checked once)."""
    try:
        import cupy  # noqa: PLC0415 - optional, and only ever imported here

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:  # ImportError, or CUDA present but no device/driver
        return None


def cupy_available() -> bool:
    return _cupy() is not None


def is_numpy(xp) -> bool:
    """Whether the namespace xp is NumPy (host memory), without importing NumPy."""
    return xp.__name__ == "numpy"


def get_array_module(*arrays):
    """The array namespace (numpy or cupy) of the given arrays."""
    cp = _cupy()
    if cp is not None:
        return cp.get_array_module(*arrays)
    import numpy  # lazily (a dictionary lookup once imported)
    return numpy


def get_backend(name: str = "numpy"):
    """The namespace for a backend name: 'numpy', 'cupy' or 'auto'."""
    import numpy as np  # lazily, as above
    if name == "numpy":
        return np
    if name in ("cupy", "auto"):
        cp = _cupy()
        if cp is not None:
            return cp
        if name == "auto":
            return np
        raise RuntimeError(
            "backend 'cupy' needs CuPy and an NVIDIA GPU; install the 'gpu' extra "
            "or set train.backend: numpy"
        )
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS} or 'auto'")


def to_numpy(a):
    """A host NumPy copy (or the array itself if it already is one)."""
    import numpy as np  # lazily, as above
    if isinstance(a, np.ndarray):
        return a
    return a.get() if hasattr(a, "get") else np.asarray(a)


def to_device(a, xp):
    """Move a host array to the namespace xp (no copy for NumPy to NumPy)."""
    if is_numpy(xp):
        return to_numpy(a)
    return xp.asarray(a)


def random_generator(xp, seed):
    """A seeded generator of namespace xp (NumPy's PCG64 or CuPy's)."""
    return xp.random.default_rng(seed)
