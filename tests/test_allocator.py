import numpy as np
import pytest

from cnnrun.allocator import APART, PAGE, empty_apart, keep_freed_memory


def test_keep_freed_memory_is_idempotent_and_reports_a_bool():
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() is first


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_apart_starts_half_a_page_from_its_source(dtype):
    """The destination of a copy never lands just after its source modulo a page (4K aliasing)."""
    for n in (1, 1000, 1 << 20):
        like = np.ones((2, n), dtype=dtype)
        out = empty_apart((3, n, 2), like)
        assert out.shape == (3, n, 2) and out.dtype == like.dtype and out.flags.c_contiguous
        assert (out.ctypes.data - like.ctypes.data) % PAGE == APART
        out[...] = 7  # writable, and all of it belongs to this array
        assert (like == 1).all() and (out == 7).all()
