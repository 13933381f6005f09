"""A torchvision state_dict, saved with safetensors, loads into the matching zoo config
unchanged (through --init-weights and through eval/predict --config) and gives the logits of
the PyTorch model. The models here are hand-written twins of torchvision's definitions (the
torchvision wheel is built for CUDA torch and does not import beside the CPU build)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
from helpers.cli import ROOT, invoke  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from cnnrun.ops.layout import to_engine, to_external  # noqa: E402
from cnnrun.train.trained import load_trained  # noqa: E402

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):  # torchvision.models.vgg16
    def __init__(self, cfg=VGG16):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 1000))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNet(nn.Module):  # torchvision.models.alexnet
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(True),
                                        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
                                        nn.Linear(4096, 1000))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):  # torchvision.models.resnet18
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = [64, 128, 256, 512], 64
        for i, w in enumerate(widths, 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride),
                                                     BasicBlock(w, w, 1)))
            cin = w
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512, 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


TWINS = {"resnet18": ResNet18, "vgg16": VGG, "alexnet": AlexNet}


@pytest.fixture(scope="module", params=sorted(TWINS))
def saved(request, tmp_path_factory):
    torch.manual_seed(0)
    model = TWINS[request.param]().eval()
    for m in model.modules():  # statistics a wrong name or layout could not hide
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp(request.param) / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        logits = model(x).numpy()
    return request.param, path, x.numpy(), logits


def test_state_dict_loads_unchanged_and_gives_pytorch_logits(saved):
    name, path, x, logits = saved
    trained = load_trained(path, ROOT / "configs" / f"{name}.yaml")  # eval/predict --config
    ours, _ = trained.model.forward(trained.state, to_engine(x))
    np.testing.assert_allclose(to_external(np.asarray(ours)), logits, rtol=1e-5,
                               atol=1e-5 * float(np.abs(logits).max()))


def test_state_dict_is_accepted_by_init_weights(saved, tmp_path):
    """train --init-weights with a learning rate of 1e-30 (no float32 weight moves): the run's checkpoint holds the
    state_dict's parameters unchanged (batch norm's statistics move in training)."""
    from safetensors.numpy import load_file
    name, path, _, _ = saved
    r = invoke("train", ROOT / "configs" / f"{name}.yaml", "--init-weights", path, "--quiet",
               "--set", "data.dataset=synthetic", "--set", "data.synthetic.shape=[3,224,224]",
               "--set", "data.synthetic.train_size=2", "--set", "data.synthetic.test_size=2",
               "--set", "data.synthetic.num_classes=1000", "--set", "train.batch_size=2",
               "--set", "train.epochs=1", "--set", "train.optimizer.lr=1e-30",
               "--set", "train.optimizer.weight_decay=0", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    theirs = load_file(str(path))
    ours = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))
    for key, value in theirs.items():
        if "running" not in key and "num_batches" not in key:
            np.testing.assert_allclose(ours[key], value, rtol=1e-7, atol=1e-30, err_msg=key)
