"""The same layers written with torch.nn.functional, for parity tests (float64).

``ref(layer, p, x, train, gen)``: p is this layer's nested dict of torch
tensors, x is NCHW. Nothing here shares code with the engine.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


def _pad_then(fn, x, pads):
    flat = [v for axis in reversed(pads) for v in axis]  # F.pad wants last axis first
    return fn(F.pad(x, flat))


def conv(layer, p, x, train, gen):
    w = p["weight"]
    if layer.connections_table is not None:
        mask = torch.zeros(w.shape[:2] + (1,) * (w.dim() - 2), dtype=w.dtype)
        for j, row in enumerate(layer.connections_table):
            mask[j, row] = 1.0
        w = w * mask
    if layer.flip_kernel:
        w = w.flip(-1) if layer.nd == 1 else w.flip(-1, -2)
    fn = F.conv2d if layer.nd == 2 else F.conv1d
    return _pad_then(lambda xx: fn(xx, w, p.get("bias"), layer.strides(), 0, layer.dilations(),
                                   layer.groups), x, layer.pads())


def batchnorm(layer, p, x, train, gen):
    return F.batch_norm(x, p.get("running_mean"), p.get("running_var"), p.get("weight"),
                        p.get("bias"), train or not layer.track_running_stats, layer.momentum,
                        layer.eps)


def lp_pool(layer, p, x, train, gen):
    k, s, _ = layer.geometry()
    y = F.lp_pool2d(x, layer.norm_type, k, s, layer.ceil_mode)
    return y / math.prod(k) ** (1 / layer.norm_type) if layer.norm == "mean" else y


def dropout(layer, p, x, train, gen):
    if not train:
        return x
    engine_shape = (*x.shape[1:], x.shape[0])
    keep = gen.random(engine_shape, dtype=np.float64) >= layer.p
    mask = torch.from_numpy(np.moveaxis(keep, -1, 0).astype(np.float64) / (1 - layer.p))
    return x * mask


def upsample(layer, p, x, train, gen):
    s = layer.scale_factor if isinstance(layer.scale_factor, tuple) else (layer.scale_factor,) * 2
    if layer.mode == "nearest":
        return F.interpolate(x, scale_factor=s, mode="nearest")
    C = x.shape[1]
    return F.conv_transpose2d(x, torch.ones(C, 1, 1, 1, dtype=x.dtype), stride=s, groups=C)


def sequence(children, p, x, train, gen):
    for name, child in children:
        x = ref(child, p.get(name, {}), x, train, gen)
    return x


def residual(layer, p, x, train, gen):
    from cnnrun.layers.containers import named
    body = sequence(named(layer.body), p, x, train, gen)
    short = sequence(named(layer.shortcut), p.get(layer.shortcut_name, {}), x, train, gen)
    return sequence(named(layer.after), p.get("after", {}), body + short, train, gen)


def subsample(layer, p, x, train, gen):
    n = layer.kernel_size
    down = F.avg_pool2d(x, n, n) * n * n
    return down * p["weight"].view(1, -1, 1, 1) + p["bias"].view(1, -1, 1, 1)


def affine(layer, p, x, train, gen):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    y = x * p["weight"].view(shape)
    return y + p["bias"].view(shape) if layer.bias else y


def combine_maps(layer, p, x, train, gen):
    C, p_ = x.shape[1], layer.padding
    z = F.conv2d(x, p["kernel"], None, 1, p_, 1, C)
    alpha = torch.softmax(p["mix"], dim=1)
    y = torch.einsum("oc,nchw->nohw", alpha, z)
    return y + p["bias"].view(1, -1, 1, 1) if layer.bias else y


REFS = {
    "subsample2d": subsample,
    "combine_maps": combine_maps,
    "conv2d": conv,
    "conv1d": conv,
    "conv_transpose2d": lambda l, p, x, t, g: F.conv_transpose2d(
        x, p["weight"], p.get("bias"), l.stride, l.padding, l.output_padding, l.groups, l.dilation),
    "maxpool2d": lambda l, p, x, t, g: F.max_pool2d(x, l.kernel_size, l.stride, l.padding,
                                                    l.dilation, l.ceil_mode),
    "avgpool2d": lambda l, p, x, t, g: F.avg_pool2d(x, l.kernel_size, l.stride, l.padding,
                                                    l.ceil_mode, l.count_include_pad),
    "lp_pool2d": lp_pool,
    "global_avgpool": lambda l, p, x, t, g: x.mean(dim=tuple(range(2, x.dim()))),
    "adaptive_avgpool2d": lambda l, p, x, t, g: F.adaptive_avg_pool2d(x, l.output_size),
    "linear": lambda l, p, x, t, g: F.linear(x, p["weight"], p.get("bias")),
    "flatten": lambda l, p, x, t, g: x.flatten(1),
    "dropout": dropout,
    "batchnorm2d": batchnorm,
    "batchnorm1d": batchnorm,
    "local_response_norm": lambda l, p, x, t, g: F.local_response_norm(x, l.size, l.alpha,
                                                                       l.beta, l.k),
    "relu": lambda l, p, x, t, g: F.relu(x),
    "leaky_relu": lambda l, p, x, t, g: F.leaky_relu(x, l.negative_slope),
    "sigmoid": lambda l, p, x, t, g: torch.sigmoid(l.slope * x),
    "tanh": lambda l, p, x, t, g: torch.tanh(x),
    "scaled_tanh": lambda l, p, x, t, g: l.amplitude * torch.tanh(l.slope * x),
    "softmax": lambda l, p, x, t, g: F.softmax(x, dim=1),
    "upsample2d": upsample,
    "sequential": lambda l, p, x, t, g: sequence(l.children(), p, x, t, g),
    "residual": residual,
    "concat": lambda l, p, x, t, g: torch.cat([ref(c, p.get(n, {}), x, t, g)
                                               for n, c in l.children()], dim=1),
    "dense": lambda l, p, x, t, g: torch.cat([x, sequence(l.children(), p, x, t, g)], dim=1),
    "clip": lambda l, p, x, t, g: F.hardtanh(x, l.min_val, l.max_val),
    "log_softmax": lambda l, p, x, t, g: F.log_softmax(x, dim=1),
    "global_maxpool": lambda l, p, x, t, g: x.flatten(2).amax(dim=2),
    "prelu": lambda l, p, x, t, g: F.prelu(x, p["weight"]),
    "affine": affine,
    "channel_shuffle": lambda l, p, x, t, g: x.unflatten(1, (l.groups, -1)).transpose(1, 2)
    .flatten(1, 2),
    "pad": lambda l, p, x, t, g: F.pad(x, (*l.pads()[1], *l.pads()[0])),  # (left, right, top, bottom)
}


def ref(layer, p, x, train, gen):
    return REFS[layer.type](layer, p, x, train, gen)
