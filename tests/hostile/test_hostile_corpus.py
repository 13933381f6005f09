"""A hostile corpus: values the schema might let through, broken data files, damaged
checkpoints, bad output paths, bad flags. Each case ends in exit 2 with one paragraph that
names the place (the key, the file) and no traceback or "internal error"; where a run was
started, nothing is left behind. (Special files, YAML bombs, sizes, kills: the other files
here; the fuzzer: test_fuzz.py.)"""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers.cli import invoke

BASE = """\
name: hostile
model:
  input_shape: [1, 8, 8]
  layers:
    - {type: conv2d, name: conv1, out_channels: 2, kernel_size: 3}
    - {type: relu}
    - {type: flatten}
    - {type: linear, name: fc, out_features: 3}
data:
  dataset: synthetic
  synthetic: {shape: [1, 8, 8], num_classes: 3, train_size: 16, test_size: 8}
train: {epochs: 1, batch_size: 8}
"""


def refused(r, *words):
    text = r.output.strip()
    assert r.exit_code == 2, text
    assert text.startswith("error: ") and "\n\n" not in text, text
    assert "Traceback" not in text and "internal error" not in text, text
    for w in words:
        assert w in text, text
    return text


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(BASE)
    return path


# --set KEY=VALUE that validate must refuse, with the words its message must hold
BAD_VALUES = [
    ("train.seed=-1", "train.seed"),
    ("train.optimizer={type: adam, lr: 0.001, betas: [1, 1]}", "betas"),
    ("train.optimizer={type: adam, lr: 0.001, betas: [0.9, -0.1]}", "betas"),
    ("train.schedule={type: poly, power: -1}", "power"),
    ("data.augment.affine={rotation: .inf}", "rotation"),
    ("train.optimizer.lr=.nan", "train.optimizer.lr"),
    ("train.optimizer.lr=.inf", "train.optimizer.lr"),
    ("train.optimizer.momentum=-0.5", "momentum"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=-1", "train.epochs"),
    ("train.processes=100000", "train.processes"),
    ("train.grad_clip_norm=-1", "grad_clip_norm"),
    ("train.dtype=float16", "train.dtype"),
    ("train.loss={type: nope}", "train.loss"),
    ("train.lr_mult={conv1: -1}", "lr_mult"),
    ("train.early_stopping={patience: 0}", "patience"),
    ("model.layers=[]", "model.layers"),
    ("model.input_shape=[]", "model.input_shape"),
    ("model.input_shape=[0, 8, 8]", "model.input_shape"),
    ("model.layers[0].out_channels=0", "out_channels"),
    ("model.layers[0].kernel_size=100", "conv1"),
    ("model.layers[0].stride=0", "stride"),
    ("model.layers[0].padding=-1", "padding"),
    ("model.layers[0].dilation=0", "dilation"),
    ("model.layers[0].groups=2", "groups"),
    ("model.layers[0].type=nope", "unknown type 'nope'"),
    ("model.layers[0].weights={weight: [[1.0]]}", "weights.weight"),
    ("model.layers[0].weights={gamma: [1.0]}", "weights.gamma"),
    ("model.layers[3].out_features=-3", "out_features"),
    ("data.val_split=-1", "data.val_split"),
    ("data.val_split=1.5", "data.val_split"),
    ("data.preprocess.scale=.nan", "data.preprocess.scale"),
    ("data.preprocess.normalize={mean: [0.1, 0.2], std: [0.3, 0.3]}", "normalize"),
    ("data.preprocess.normalize={mean: [0.1], std: [0.0]}", "std"),
    ("data.preprocess.resize=[0, 8]", "resize"),
    ("data.synthetic.num_classes=0", "num_classes"),
    ("data.dataset=imagenet", "data.dataset"),
    ("name=../escaped", "name"),
    ("name=a/b", "name"),
    ("log=[nope]", "log"),
]


@pytest.mark.parametrize("item, words", BAD_VALUES, ids=[i for i, _ in BAD_VALUES])
def test_a_bad_value_is_refused_by_validate_at_its_key(base, item, words):
    refused(invoke("validate", base, "--set", item), words)


# values that validate but meet the data or the machine at run time
RUNTIME = [
    (["data.synthetic.shape=[3, 8, 8]"], "input_shape"),
    (["data.synthetic.shape=[1, 9, 9]"], "input_shape"),
    (["data.preprocess.resize=[100000, 100000]", "model.input_shape=[1, 100000, 100000]",
      "data.synthetic.shape=[1, 8, 8]"], "memory"),
]


@pytest.mark.parametrize("items, words", RUNTIME, ids=[" ".join(i) for i, _ in RUNTIME])
def test_a_value_that_does_not_fit_the_data_is_refused_before_training(base, tmp_path, items,
                                                                       words):
    sets = [a for item in items for a in ("--set", item)]
    refused(invoke("train", base, *sets, "--out", tmp_path / "run"), words)
    assert not (tmp_path / "run").exists()


# ---- data files -------------------------------------------------------------------------
def mnist_dir(tmp_path, images: bytes, labels: bytes | None = None):
    d = tmp_path / "mnist"
    d.mkdir()
    for prefix in ("train", "t10k"):
        (d / f"{prefix}-images-idx3-ubyte.gz").write_bytes(images)
        lab = labels if labels is not None else gzip.compress(
            b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + bytes(4))
        (d / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(lab)
    return d


def idx_images(n=4, h=28, w=28):
    return b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + bytes(n * h * w)


DATA_FILES = {
    "a corrupt gzip": lambda t: mnist_dir(t, b"\x1f\x8b\x08\x00garbage"),
    "a truncated gzip": lambda t: mnist_dir(t, gzip.compress(idx_images())[:40]),
    "not gzip at all": lambda t: mnist_dir(t, b"hello, not an idx file"),
    "a wrong IDX magic": lambda t: mnist_dir(t, gzip.compress(b"\x00\x00\x09\x03" + bytes(12))),
    "IDX dims larger than the file": lambda t: mnist_dir(t, gzip.compress(idx_images()[:100])),
    "labels that do not match the images": lambda t: mnist_dir(
        t, gzip.compress(idx_images(n=4)), gzip.compress(b"\x00\x00\x08\x01" +
                                                         (3).to_bytes(4, "big") + bytes(3))),
}


@pytest.mark.parametrize("make", DATA_FILES.values(), ids=DATA_FILES.keys())
def test_a_broken_mnist_file_is_refused_naming_it(tmp_path, make):
    root = make(tmp_path)
    r = invoke("train", "configs/lenet5.yaml", "--set", f"data.root={root}",
               "--out", tmp_path / "run")
    refused(r, str(root))
    assert not (tmp_path / "run").exists()


def test_an_empty_cifar_file(tmp_path):
    d = tmp_path / "cifar"
    d.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (d / name).write_bytes(b"")
    r = invoke("train", "configs/resnet20-cifar10.yaml", "--set", f"data.root={d}",
               "--out", tmp_path / "run")
    refused(r, "data_batch_1.bin")


def image_folder(tmp_path, payload: bytes, name="x.png"):
    for split in ("train", "test"):
        (tmp_path / "img" / split / "a").mkdir(parents=True)
        (tmp_path / "img" / split / "a" / name).write_bytes(payload)
    return tmp_path / "img"


def png_header(width, height):
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk +
            struct.pack(">I", zlib.crc32(chunk)) + struct.pack(">I", 0) + b"IEND" +
            struct.pack(">I", zlib.crc32(b"IEND")))


IMAGES = {
    "a decompression bomb": png_header(100_000, 100_000),
    "bytes that are not an image": b"not a png at all",
    "an empty file": b"",
}


@pytest.mark.parametrize("payload", IMAGES.values(), ids=IMAGES.keys())
def test_a_hostile_image_in_an_image_folder(tmp_path, payload):
    pytest.importorskip("PIL")
    root = image_folder(tmp_path, payload)
    r = invoke("train", "configs/resnet18.yaml", "--set", f"data.root={root}",
               "--set", "model.input_shape=[3, 32, 32]", "--out", tmp_path / "run")
    refused(r, "x.png")


# ---- checkpoints ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-run")
    (d / "base.yaml").write_text(BASE)
    r = invoke("train", d / "base.yaml", "--out", d / "run", "--quiet")
    assert r.exit_code == 0, r.output
    return d / "run" / "checkpoints" / "last.safetensors"


def rewritten(src, dst, tensors=None, info=None):
    """A copy of a checkpoint with its tensors or its run record changed."""
    from safetensors.numpy import load_file, save_file
    from cnnrun.train.checkpoint import read_info
    t = load_file(str(src))
    t.update(tensors or {})
    meta = read_info(src)
    meta.update(info or {})
    save_file(t, str(dst), metadata={"cnnrun": json.dumps({k: v for k, v in meta.items()
                                                           if v is not ...})})
    return dst


CHECKPOINTS = {
    "no epoch in its record": ({}, {"epoch": ...}, "resume"),
    "bad data statistics": ({}, {"data_stats": {"mean": "x", "std": [1]}}, "eval"),
    "statistics of another channel count": ({}, {"data_stats": {"mean": [0, 0], "std": [1, 1]}},
                                            "eval"),
    "a stored config without a model": ({}, {"config": "name: x\n"}, "eval"),
    "a stored config that is not YAML": ({}, {"config": "model: [\n"}, "eval"),
    "classes that are not a list": ({}, {"classes": 5}, "eval"),
    "a weight of the wrong shape": ({"conv1.weight": np.zeros((1, 1), np.float32)}, {}, "eval"),
    "an optimizer slot of the wrong shape": (
        {"optimizer.conv1.weight.momentum_buffer": np.zeros((1,), np.float32)}, {}, "resume"),
}


@pytest.mark.parametrize("tensors, info, how", CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_a_damaged_checkpoint_is_refused_naming_it(trained, tmp_path, tensors, info, how):
    bad = rewritten(trained, tmp_path / "bad.safetensors", tensors, info)
    if how == "eval":
        r = invoke("eval", bad)
    else:
        r = invoke("train", trained.parent.parent / "config.yaml", "--resume", bad,
                   "--set", "train.epochs=3")
    refused(r, "bad.safetensors")


# ---- output paths and flags -------------------------------------------------------------
def test_output_paths_that_are_directories_or_unwritable(trained, tmp_path):
    refused(invoke("export", trained, "-o", tmp_path), str(tmp_path))
    refused(invoke("schema", "-o", tmp_path), str(tmp_path))
    refused(invoke("schema", "-o", tmp_path / "no" / "such" / "dir" / "s.json"), "s.json")
    refused(invoke("eval", trained, "--predictions", tmp_path), str(tmp_path))
    refused(invoke("train", trained.parent.parent / "config.yaml", "--out", "/proc/cnnrun-x"),
            "/proc/cnnrun-x")


def test_a_crop_pad_the_memory_cannot_hold(trained):
    refused(invoke("eval", trained, "--crops", "10", "--crop-pad", "100000"), "--crop-pad 100000",
            "memory")


@pytest.mark.parametrize("flag", [["--eps", "0"], ["--eps", "-1"], ["--eps", "nan"]])
def test_gradcheck_flags_out_of_range(base, flag):
    refused(invoke("gradcheck", base, *flag), "--eps")


@pytest.mark.parametrize("args", [["gradcheck", "--samples", "0"], ["hessian", "--iters", "1"],
                                  ["bench", "--steps", "0"], ["eval", "--crops", "7"],
                                  ["export", "--opset", "5"]])
def test_flags_out_of_range_are_usage_errors(trained, base, args):
    target = base if args[0] in ("gradcheck", "bench") else trained
    r = invoke(args[0], target, *args[1:])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "Invalid value" in r.output or r.output.startswith("error: "), r.output


def test_runs_lists_around_a_damaged_metrics_file(trained, tmp_path):
    run = trained.parent.parent
    (run / "metrics.jsonl").write_text('{"epoch": 1, "test_accuracy": 0.5}\n{not json\n\x00\x01')
    r = invoke("runs", run.parent)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output


def test_output_piped_into_head_ends_quietly():
    r = subprocess.run(f"{sys.executable} -m cnnrun layers | head -1", shell=True,
                       capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr


# ---- blocks that would expand without bound ---------------------------------------------
def block_config(block: str, use: str) -> str:
    return (f"blocks:\n  c: {block}\nmodel:\n  input_shape: [1, 8, 8]\n  layers:\n"
            f"    - {use}\n    - {{type: flatten}}\n")


BLOCKS = {
    "repeat 10^8": ("{params: {w: 1}, layer: {type: relu}}", "{use: c, repeat: 100000000}",
                    "repeat"),
    "repeat not a number": ("{params: {w: 1}, layer: {type: relu}}", "{use: c, repeat: x}",
                            "repeat"),
    "repeat zero": ("{params: {w: 1}, layer: {type: relu}}", "{use: c, repeat: 0}", "repeat"),
    "a list times 2·10^9": ("{params: {l: [1, 2]}, layer: {type: relu, name: '${l * 2000000000}'}}",
                           "{use: c}", "not a number"),
    "a string times 2·10^9": ("{params: {l: ab}, layer: {type: relu, name: '${l * 2000000000}'}}",
                             "{use: c}", "not a number"),
    "a number beyond any size": (
        "{params: {w: 1000000000}, layer: {type: conv2d, out_channels: '${w * w * w}', "
        "kernel_size: 1}}", "{use: c}", "beyond any size"),
    "a name pattern reaching attributes": (
        "{params: {w: 1}, layer: {type: relu}}", "{use: c, repeat: 2, names: '{i.__class__}'}",
        "names"),
    "a power operator": ("{params: {w: 2}, layer: {type: conv2d, out_channels: '${w ** 99}', "
                         "kernel_size: 1}}", "{use: c}", "+ − * / // %"),
}


@pytest.mark.parametrize("block, use, words", BLOCKS.values(), ids=BLOCKS.keys())
def test_a_block_that_would_expand_without_bound_is_refused(tmp_path, block, use, words):
    path = tmp_path / "c.yaml"
    path.write_text(block_config(block, use))
    refused(invoke("validate", path), words)


def test_a_fifo_among_images_and_as_a_predict_image(tmp_path, trained):
    import os
    pytest.importorskip("PIL")
    root = image_folder(tmp_path, b"")
    os.mkfifo(root / "train" / "a" / "pipe.png")
    r = invoke("train", "configs/resnet18.yaml", "--set", f"data.root={root}",
               "--set", "model.input_shape=[3, 32, 32]", "--out", tmp_path / "run")
    refused(r, "pipe.png")
    refused(invoke("predict", trained, root / "train" / "a" / "pipe.png"), "a pipe")
