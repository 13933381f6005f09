"""Real architectures' blocks, written in PyTorch as their papers and torchvision define them,
exported by torch.onnx at two opsets, imported, and compared with PyTorch's own output."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
nn = torch.nn

from cnnrun.tools.onnx_import import import_onnx  # noqa: E402
from cnnrun.train.trained import load_trained  # noqa: E402
from cnnrun.ops.layout import to_engine, to_external  # noqa: E402


def conv_bn(cin, cout, k, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=1e-3)]
    return nn.Sequential(*layers, *([act()] if act else []))


class Inception(nn.Module):  # GoogLeNet's block (torchvision's, 3×3 in the third branch)
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool):
        super().__init__()
        self.branch1 = conv_bn(cin, c1, 1)
        self.branch2 = nn.Sequential(conv_bn(cin, c3r, 1), conv_bn(c3r, c3, 3))
        self.branch3 = nn.Sequential(conv_bn(cin, c5r, 1), conv_bn(c5r, c5, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(cin, pool, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class Fire(nn.Module):  # SqueezeNet
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU())
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class ShuffleUnit(nn.Module):  # ShuffleNet (v1), stride 1: group conv, shuffle, depthwise
    def __init__(self, channels, groups):
        super().__init__()
        mid = channels // 4
        self.groups = groups
        self.gconv1 = conv_bn(channels, mid, 1, groups=groups)
        self.dwconv = conv_bn(mid, mid, 3, groups=mid, act=None)
        self.gconv2 = conv_bn(mid, channels, 1, groups=groups, act=None)

    def forward(self, x):
        y = self.gconv1(x)
        n, c, h, w = y.shape
        y = y.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        return torch.relu(x + self.gconv2(self.dwconv(y)))


class InvertedResidual(nn.Module):  # MobileNet-v2, stride 1 with the identity shortcut
    def __init__(self, channels, expand):
        super().__init__()
        hidden = channels * expand
        self.conv = nn.Sequential(conv_bn(channels, hidden, 1, act=nn.ReLU6),
                                  conv_bn(hidden, hidden, 3, groups=hidden, act=nn.ReLU6),
                                  conv_bn(hidden, channels, 1, act=None))

    def forward(self, x):
        return x + self.conv(x)


class DenseBlock(nn.Module):  # torchvision's: each layer reads the concatenation of all before
    def __init__(self, cin, layers, growth, bn_size=4):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(cin + i * growth), nn.ReLU(),
                          nn.Conv2d(cin + i * growth, bn_size * growth, 1, bias=False),
                          nn.BatchNorm2d(bn_size * growth), nn.ReLU(),
                          nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))
            for i in range(layers))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Bottleneck(nn.Module):  # ResNet-50's, with a strided projection shortcut
    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
        self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False),
                                        nn.BatchNorm2d(4 * width))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.downsample(x))


BLOCKS = {
    "inception": (lambda: Inception(16, 8, 6, 8, 4, 6, 6), (16, 12, 12), "concat"),
    "fire": (lambda: Fire(12, 6, 8, 8), (12, 10, 10), "concat"),
    "shufflenet": (lambda: ShuffleUnit(24, 3), (24, 8, 8), "channel_shuffle"),
    "mobilenet_v2": (lambda: InvertedResidual(8, 4), (8, 9, 9), "clip"),
    "densenet": (lambda: DenseBlock(8, 3, 4), (8, 7, 7), "dense"),
    "resnet_bottleneck": (lambda: Bottleneck(16, 8, 2), (16, 10, 10), "residual"),
}


def randomised(module):
    """Non-trivial batch-norm statistics, so a wrong fold or a dropped layer shows."""
    gen = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return module.eval()


@pytest.mark.parametrize("opset", [9, 17])
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_imports_and_matches_pytorch(block, opset, tmp_path):
    make, shape, kind = BLOCKS[block]
    torch.manual_seed(1)
    module = randomised(make())
    x = torch.randn(3, *shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, x[:1], buf, opset_version=opset, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    path = tmp_path / f"{block}.onnx"
    path.write_bytes(buf.getvalue())
    r = import_onnx(path, tmp_path, block)
    assert r["max_rel_error"] < 1e-5
    text = (tmp_path / f"{block}.yaml").read_text()
    assert f"type: {kind}" in text  # the graph became the block's own container
    trained = load_trained(tmp_path / f"{block}.safetensors")
    ours, _ = trained.model.forward(trained.state, to_engine(x.numpy()))
    with torch.no_grad():
        theirs = module(x).numpy()
    np.testing.assert_allclose(to_external(np.asarray(ours)), theirs, rtol=1e-4,
                               atol=1e-4 * float(np.abs(theirs).max()))


def test_the_readme_shows_the_inception_block_as_imported(tmp_path):
    """The README's example is this file's Inception block, imported at opset 17."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    shown = readme.split("<!-- imported-inception -->\n```yaml\n")[1].split("```")[0]
    torch.manual_seed(1)
    module = randomised(BLOCKS["inception"][0]())
    path = tmp_path / "inception.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(1, 16, 12, 12), path, opset_version=17,
                          dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    import_onnx(path, tmp_path, "inception", check=False)
    assert shown in (tmp_path / "inception.yaml").read_text()
