"""The receptive-field rule equals the support of the input gradient of one output unit."""

import numpy as np
import pytest

from cnnrun.layers import RF, Context
from cnnrun.ops.layout import to_engine
from conftest import EXAMPLES, build

NO_POSITIONS = {"conv_transpose2d", "upsample2d", "adaptive_avgpool2d"}  # fractional jumps
DRAWS = 24  # max-pool routes to one winner: the union over draws covers the window


def spatial_examples():
    return [p for p in EXAMPLES if len(p.values[2]) >= 2]


def supports(layer, shape, seed):
    """For every output position: the input positions its gradient reaches (union of draws)."""
    rng = np.random.default_rng(seed)
    in_sp = shape[1:]
    out_shape = layer.output_shape(shape)
    units = [()] if len(out_shape) == 1 and layer.type != "flatten" else \
        list(np.ndindex(*(out_shape[1:] if len(out_shape) > 1 else (out_shape[0],))))
    reach = np.zeros((len(units), *in_sp), dtype=bool)
    for _ in range(DRAWS):
        state = layer.init_state(shape, rng)
        x = np.repeat(np.abs(rng.normal(size=(1, *shape))) + 0.1, len(units), axis=0)
        y, cache = layer.forward(state, to_engine(x), Context(train=False))
        gy = np.zeros_like(y)  # sample n asks for output unit n, all channels
        for n, u in enumerate(units):
            gy[(slice(None), *u, n) if len(out_shape) > 1 else (u or slice(None), n)] = 1.0
        gx, _ = layer.backward(state, cache, gy)
        gx = np.moveaxis(np.asarray(gx), -1, 0)  # (N, C, *spatial)
        reach |= np.abs(gx).sum(axis=1) > 0
    return units, reach


@pytest.mark.parametrize("type_name,cfg,shape", spatial_examples())
def test_receptive_field_equals_gradient_support(type_name, cfg, shape):
    layer = build(type_name, cfg)
    in_sp = shape[1:]
    rf = layer.receptive_field(RF.of_input(in_sp), shape)
    units, reach = supports(layer, shape, seed=7)
    extents = []
    for n, u in enumerate(units):
        idx = np.nonzero(reach[n])
        if not idx[0].size:
            continue  # e.g. an inserted zero of upsample2d reads nothing
        lo, hi = [i.min() for i in idx], [i.max() for i in idx]
        extents.append(tuple(h - l + 1 for l, h in zip(lo, hi)))
        if type_name in NO_POSITIONS or type_name == "flatten" or not u:
            continue
        centre = [rf.start[a] + u[a] * rf.jump[a] for a in range(len(in_sp))]
        half = [(rf.size[a] - 1) / 2 for a in range(len(in_sp))]
        inside = all(c - h >= 0 and c + h <= n_ - 1 for c, h, n_ in zip(centre, half, in_sp))
        if inside:  # unclipped: the support is exactly the predicted window
            assert lo == [c - h for c, h in zip(centre, half)], (u, lo, centre)
            assert tuple(h - l + 1 for l, h in zip(lo, hi)) == rf.size
    clipped = tuple(min(r, n) for r, n in zip(rf.size, in_sp))  # the image bounds any field
    assert max(extents) == clipped, f"largest support {max(extents)} vs rule {rf.size}"


def test_receptive_field_through_a_small_net():
    """conv3 → pool2 → conv3: 3, then 4 (jump 2), then 4 + 2·2 = 8 pixels."""
    seq = build("sequential", {"layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3}]})
    rf = seq.receptive_field(RF.of_input((16, 16)), (1, 16, 16))
    assert rf.size == (8, 8) and rf.jump == (2, 2) and rf.start == (3.5, 3.5)
