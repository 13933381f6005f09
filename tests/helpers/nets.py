"""Reference networks the tests share: LeNet-5 as a Model, and the small inputs the
ImageNet configs are tested at."""

from pydantic import TypeAdapter

from cnnrun.engine.model import Model
from cnnrun.layers import AnyLayer

LENET = [
    {"type": "conv2d", "name": "conv1", "out_channels": 6, "kernel_size": 5, "padding": 2},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "name": "conv2", "out_channels": 16, "kernel_size": 5},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "name": "fc1", "out_features": 120}, {"type": "relu"},
    {"type": "linear", "name": "fc2", "out_features": 84}, {"type": "relu"},
    {"type": "linear", "name": "fc3", "out_features": 10},
]


def lenet():
    return Model(TypeAdapter(list[AnyLayer]).validate_python(LENET), (1, 28, 28))


# The 224×224 zoo configs, tested at inputs small enough for CI (their shapes still fold).
SMALL_INPUT = {"alexnet": [3, 64, 64], "vgg11": [3, 32, 32], "vgg13": [3, 32, 32],
               "vgg16": [3, 32, 32], "vgg19": [3, 32, 32], "resnet18": [3, 64, 64],
               "resnet34": [3, 64, 64], "resnet50": [3, 64, 64], "densenet121": [3, 64, 64]}


# A small training with every random stream in play (augmentation, dropout, a momentum and a
# schedule): the trainer's tests and, with batch norm added, the MPI ones train it.
TINY = """\
model:
  input_shape: [1, 28, 28]
  layers:
    - {type: conv2d, name: conv1, out_channels: 4, kernel_size: 5, stride: 2}
    - {type: relu}
    - {type: maxpool2d, kernel_size: 2}
    - {type: flatten}
    - {type: dropout, p: 0.3}
    - {type: linear, name: fc, out_features: 10}
data:
  train_limit: 200
  test_limit: 50
  val_split: 40
  augment: {random_crop_padding: 2, affine: {rotation: 10}}
train:
  epochs: 2
  batch_size: 32
  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
  schedule: {type: cosine}
  seed: 3
"""
