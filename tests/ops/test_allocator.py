import numpy as np
import pytest

from cnnrun.ops.allocator import APART, PAGE, empty_apart, keep_freed_memory


def test_keep_freed_memory_takes_effect_under_glibc():
    import ctypes.util
    import platform
    if platform.libc_ver()[0] != "glibc" or not ctypes.util.find_library("c"):
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True  # every mallopt call was accepted


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


def test_blocks_above_the_mmap_ceiling_come_from_the_heap():
    """glibc's mmap threshold stops at 32 MB; with mmap switched off a 40 MB array (VGG-11's
    first-stage activations are 33.5 MB) is not mapped afresh, so its pages are reused."""
    import ctypes
    import ctypes.util

    if not keep_freed_memory():
        pytest.skip("not glibc")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                                                   "hblkhd", "usmblks", "fsmblks",
                                                   "uordblks", "fordblks", "keepcost")]
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd  # bytes in mmapped blocks
    big = np.empty(40 << 20, dtype=np.uint8)
    assert libc.mallinfo2().hblkhd == before
    del big
