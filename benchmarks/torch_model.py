"""The same network in PyTorch, built from a cnnrun config (parity and benchmarks only).

Module names follow cnnrun's, so the weights copy across by name.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def add_body(module: nn.Module, layers, in_shape) -> tuple[list[str], tuple]:
    """A container's body as the module's own children (the names cnnrun gives them, in the
    container's namespace, as torchvision does); (their names, the body's output shape)."""
    from cnnrun.layers.containers import named, sequence_shapes
    shapes = sequence_shapes(named(layers), in_shape)
    for (name, child), shape in zip(named(layers), shapes):
        module.add_module(name, build(child, shape))
    return [n for n, _ in named(layers)], shapes[-1]


def run_body(module: nn.Module, names, x):
    for n in names:
        x = getattr(module, n)(x)
    return x


class Residual(nn.Module):
    def __init__(self, layer, in_shape):
        super().__init__()
        self.body_names, out_shape = add_body(self, layer.body, in_shape)
        self.short_name = layer.shortcut_name
        self.add_module(layer.shortcut_name, sequential(layer.shortcut, in_shape))
        self.after = sequential(layer.after, out_shape)

    def forward(self, x):
        return self.after(run_body(self, self.body_names, x) + getattr(self, self.short_name)(x))


class Dense(nn.Module):
    """DenseNet's layer: cat(x, body(x)); the body's children in the block's namespace."""

    def __init__(self, layer, in_shape):
        super().__init__()
        self.body_names, _ = add_body(self, layer.body, in_shape)

    def forward(self, x):
        return torch.cat([x, run_body(self, self.body_names, x)], 1)


class Concat(nn.Module):
    """Inception-style branches joined on channels; branch i under the name "i"."""

    def __init__(self, layer, in_shape):
        super().__init__()
        self.branches = len(layer.branches)
        for i, branch in enumerate(layer.branches):
            self.add_module(str(i), sequential(branch, in_shape))

    def forward(self, x):
        return torch.cat([getattr(self, str(i))(x) for i in range(self.branches)], 1)


def sequential(layers, in_shape):
    from cnnrun.layers.containers import named
    mods, shape = OrderedDict(), tuple(in_shape)
    for name, child in named(layers):
        mods[name] = build(child, shape)
        shape = child.output_shape(shape)
    return nn.Sequential(mods)


def build(layer, in_shape) -> nn.Module:
    t = layer.type
    if t == "sequential":
        return sequential(layer.layers, in_shape)
    if t == "residual":
        return Residual(layer, in_shape)
    if t == "dense":
        return Dense(layer, in_shape)
    if t == "concat":
        return Concat(layer, in_shape)
    if t == "conv2d":
        pads = layer.pads()
        same = all(a == b for a, b in pads)
        conv = nn.Conv2d(in_shape[0], layer.out_channels, layer.kernel(), layer.strides(),
                         tuple(a for a, _ in pads) if same else 0, layer.dilations(), layer.groups,
                         layer.bias)
        return conv
    if t == "linear":
        return nn.Linear(in_shape[0], layer.out_features, layer.bias)
    if t == "batchnorm2d":
        return nn.BatchNorm2d(in_shape[0], layer.eps, layer.momentum, layer.affine)
    if t == "batchnorm1d":
        return nn.BatchNorm1d(in_shape[0], layer.eps, layer.momentum, layer.affine)
    if t == "maxpool2d":
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                            ceil_mode=layer.ceil_mode)
    if t == "avgpool2d":
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                            layer.count_include_pad)
    if t == "adaptive_avgpool2d":
        return nn.AdaptiveAvgPool2d(layer.output_size)
    if t == "global_avgpool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if t == "pad":
        (top, bottom), (left, right) = layer.pads()
        return nn.ZeroPad2d((left, right, top, bottom))
    simple = {"relu": nn.ReLU, "tanh": nn.Tanh, "flatten": nn.Flatten}
    if t in simple:
        return simple[t]()
    if t == "dropout":
        return nn.Dropout(layer.p)
    if t == "leaky_relu":
        return nn.LeakyReLU(layer.negative_slope)
    if t == "scaled_tanh":
        return Lambda(lambda x: layer.amplitude * torch.tanh(layer.slope * x))
    if t == "sigmoid":
        return Lambda(lambda x: torch.sigmoid(layer.slope * x))
    raise NotImplementedError(f"no PyTorch twin for {t} in the benchmark builder")


def copy_weights(module: nn.Module, flat_state: dict) -> None:
    """Load cnnrun's (name → array) state; every tensor must match by name and shape."""
    own = module.state_dict()
    tensors = {k: torch.from_numpy(v.copy()) for k, v in flat_state.items()}
    missing = [k for k in own if k not in tensors and not k.endswith("num_batches_tracked")]
    assert not missing, f"missing in cnnrun state: {missing[:5]}"
    module.load_state_dict(tensors, strict=False)


def training_twin(model, flat_state: dict, x, y):
    """The benchmark's PyTorch side on all cores: (net, step), step() one SGD step
    (momentum 0.9, cross-entropy) on the batch x, y (NumPy, batch first)."""
    import os
    torch.set_num_threads(os.cpu_count())
    net = build(model.root, model.input_shape)
    copy_weights(net, flat_state)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), yt).backward()
        opt.step()
    return net, step


__all__ = ["build", "copy_weights", "training_twin"]
