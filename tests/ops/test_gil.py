"""The band workers' matrix products release the GIL, so two of them really run at once.

np.matmul keeps the GIL while it computes a result of at most 500 elements; a
weight gradient with few outputs (LeNet-5's first: 6 × 25) then ran one worker
at a time. The check here is not a timing: with the interpreter's switch
interval set to minutes, a thread that holds the GIL keeps it until it ends or
calls code that releases it. So the main thread runs before a loop of products
ends if, and only if, the product releases the GIL.
"""

import sys
import threading
import time

import numpy as np
import pytest

from cnnrun.ops import conv as oc
from cnnrun.ops import parallel


def _released_gil(product, a, b, repeats=2000) -> bool:
    """Whether the main thread ran while another thread repeated product(a, b).

    The worker stops repeating as soon as the main thread has run, so a product that
    releases the GIL is seen however late the main thread wakes, within the repeats."""
    state = {"main_ran": False, "done": False}

    def run():
        for _ in range(repeats):
            if state["main_ran"]:
                break
            product(a, b)
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(300.0)  # no forced hand-over of the GIL during the test
    try:
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.001)  # lets the worker take the GIL; the main thread then waits for it
        done_when_main_ran = state["done"]
        state["main_ran"] = True
        worker.join()
    finally:
        sys.setswitchinterval(old)
    return not done_when_main_ran


@pytest.fixture
def small_result():
    """A 6 × 25 result from a long inner dimension (LeNet-5's first weight gradient)."""
    rng = np.random.default_rng(0)
    return (rng.random((6, 20_000), dtype=np.float32),
            rng.random((25, 20_000), dtype=np.float32).T)


def test_product_releases_the_gil_for_a_small_result(small_result):
    assert _released_gil(parallel.product, *small_result)


def test_the_check_sees_a_held_gil(small_result):
    """The check can fail: a product that keeps the GIL (pure Python, here) is caught."""
    def held(a, b):
        return sum(range(1000))  # bytecode only: the GIL is never released
    assert not _released_gil(held, *small_result)


def test_product_is_matmul():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 7)), rng.normal(size=(7, 3))
    np.testing.assert_array_equal(parallel.product(a, b), np.dot(a, b))
    a3, b3 = rng.normal(size=(2, 4, 7)), rng.normal(size=(2, 7, 3))  # stacked: per group
    np.testing.assert_allclose(parallel.product(a3, b3), a3 @ b3, rtol=1e-14)


def test_banded_weight_gradient_takes_its_products_through_product(monkeypatch):
    """The weight gradient's per-band products (on the workers) go through
    parallel.product, the GIL-releasing one."""
    monkeypatch.setattr(oc, "SHIFT_BYTES", 0)
    monkeypatch.setattr(oc, "WHOLE_BYTES", 0)
    monkeypatch.setattr(oc, "BAND_BYTES", 1)  # one output row per band
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    calls = []

    def spy(a, b):
        calls.append(a.shape[-2] * b.shape[-1])
        return parallel.product(a, b)
    monkeypatch.setattr(oc, "product", spy)
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(1, 8, 8, 3)), rng.normal(size=(2, 1, 3, 3))
    y, patches = oc.conv_forward(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1))
    gy = rng.normal(size=y.shape)
    gW = oc.conv_grad_weight(gy, patches, w.shape)
    assert calls == [2 * 9] * 6  # one product per band of one output row, 2 × 9 results
    ref = np.einsum("ohwn,chwnij->ocij", gy, np.stack(
        [np.stack([patches.xpad[:, i:i + 6, j:j + 6] for j in range(3)], -1)
         for i in range(3)], -2))
    np.testing.assert_allclose(gW, ref, rtol=1e-12)
