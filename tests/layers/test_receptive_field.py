"""The receptive-field rule equals the support of the input gradient of one output unit."""

import numpy as np
import pytest

from cnnrun.layers import RF
from helpers.checks import supports
from helpers.layers import EXAMPLES, build

NO_POSITIONS = {"conv_transpose2d", "upsample2d", "adaptive_avgpool2d"}  # fractional jumps


def spatial_examples():
    return [p for p in EXAMPLES if len(p.values[2]) >= 2]


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
