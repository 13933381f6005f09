"""ReLU's vector path (maximum against a broadcast run of zeros) equals max(x, 0) exactly."""

import numpy as np
import pytest

from cnnrun.layers import Context, activations
from cnnrun.layers.activations import ReLU, _zeros


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, run", [((16, 32, 32, 8), 16384), ((5, 7, 3, 256), 256),
                                        ((3, 4, 5, 2), None)],
                         ids=["run-16384", "run-256", "too-small"])
def test_relu_equals_maximum_with_zero(shape, run, dtype, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    x.flat[[3, 11]] = np.nan, -0.0
    runs = []
    monkeypatch.setattr(activations, "_zeros", lambda n, dt: runs.append(n) or _zeros(n, dt))
    y, _ = ReLU(type="relu").forward({}, x, Context())
    assert runs == ([] if run is None else [run])  # the vector path, with the longest run
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y, np.maximum(x, 0))  # NaN stays NaN


def test_a_strided_input_takes_the_plain_path():
    x = np.random.default_rng(1).normal(size=(8, 64, 64))[:, ::2]  # not contiguous
    out = np.empty(x.shape)
    ReLU(type="relu").f_into(np, x, out)
    np.testing.assert_array_equal(out, np.maximum(x, 0))


def test_the_shared_zeros_cannot_be_written():
    z = _zeros(256, "<f4")
    assert not z.flags.writeable and not z.any()
