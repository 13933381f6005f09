"""A fuzzer over the two readers of untrusted bytes: the config loader (mutated YAML text,
mutated values through --set) and the checkpoint reader (mutated safetensors headers and
metadata). Whatever the input, the result is a config or a UserError (exit 2), never
another exception, within a time bound."""

import json
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnrun.config import load_config
from cnnrun.errors import UserError
from cnnrun.train import checkpoint
from cnnrun.train.trained import load_trained

BASE = """\
name: fuzz
model:
  input_shape: [1, 8, 8]
  layers:
    - {type: conv2d, out_channels: 2, kernel_size: 3, padding: 1}
    - {type: relu}
    - {type: maxpool2d, kernel_size: 2}
    - {type: flatten}
    - {type: linear, out_features: 10}
data: {dataset: synthetic, synthetic: {shape: [1, 8, 8]}}
train: {epochs: 1, batch_size: 8, optimizer: {type: sgd, lr: 0.1}}
"""
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Values hostile to a config: special floats, huge and negative numbers, wrong types,
# paths, YAML tags and anchors, deep and wide structures.
VALUES = st.one_of(
    st.sampled_from([".inf", "-.inf", ".nan", "-1", "0", "1e308", "1000000000000", "null",
                     "[]", "{}", "'../../x'", "!!python/object:os.system ls", "&a [*a]",
                     "[[[[[[[[[[1]]]]]]]]]]", "'\\0'", "true", "~", "\"\\uffff\""]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20).map(json.dumps),
)
KEYS = st.sampled_from([
    "name", "model.input_shape", "model.layers[0].out_channels", "model.layers[0].kernel_size",
    "model.layers[0].padding", "model.layers[2].kernel_size", "model.layers[4].out_features",
    "model.layers[1].type", "model.layers", "data.val_split", "data.train_limit",
    "data.synthetic.shape", "train.epochs", "train.batch_size", "train.optimizer.lr",
    "train.optimizer.type", "train.seed", "train.processes", "train.dtype", "train.schedule",
    "data.preprocess.normalize", "data.augment.affine.rotation", "log"])


def load_or_refuse(tmp_path, text, overrides=()):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    t0 = time.perf_counter()
    try:
        load_config(p, list(overrides))
    except UserError as e:
        assert str(e).strip() and "Traceback" not in str(e)
    assert time.perf_counter() - t0 < 5


@FUZZ
@given(key=KEYS, value=VALUES)
def test_any_set_override_gives_a_config_or_a_user_error(tmp_path, key, value):
    load_or_refuse(tmp_path, BASE, [f"{key}={value}"])


@FUZZ
@given(data=st.data())
def test_mutated_yaml_text_gives_a_config_or_a_user_error(tmp_path, data):
    lines = BASE.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "duplicate", "value", "indent", "chars"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":")[0] + ": " + data.draw(VALUES)
        elif op == "indent":
            lines[i] = " " * data.draw(st.integers(0, 6)) + lines[i].lstrip()
        else:
            at = data.draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + data.draw(st.text(max_size=5)) + lines[i][at:]
        if not lines:
            break
    load_or_refuse(tmp_path, "\n".join(lines) + "\n")


def _checkpoint_bytes(tmp_path):
    path = tmp_path / "ok.safetensors"
    checkpoint.save(path, {"w": np.ones((2, 3), np.float32)}, {}, {"config": BASE, "epoch": 1})
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_mutated_checkpoints_load_or_give_a_user_error(tmp_path, data):
    raw = bytearray(_checkpoint_bytes(tmp_path))
    n = struct.unpack("<Q", raw[:8])[0]
    kind = data.draw(st.sampled_from(["length", "header byte", "truncate", "metadata"]))
    if kind == "length":
        raw[:8] = struct.pack("<Q", data.draw(st.sampled_from([0, 1, n - 1, n + 1, 2**60,
                                                                2**64 - 1])))
    elif kind == "header byte":
        i = data.draw(st.integers(8, 8 + n - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    else:
        header = json.loads(raw[8:8 + n])
        header["__metadata__"]["cnnrun"] = data.draw(st.sampled_from(
            ["5", "null", "[]", '{"format": 1}', "not json", json.dumps({"config": "&a [*a]"}),
             json.dumps({"config": "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c]\n"
                                   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e]"})]))
        body = json.dumps(header).encode()
        raw = bytearray(struct.pack("<Q", len(body)) + body + raw[8 + n:])
    path = tmp_path / "c.safetensors"
    path.write_bytes(bytes(raw))
    try:  # the reader, and what eval, predict and export do with what it read
        load_trained(path)
    except UserError as e:
        assert str(path) in str(e)


@pytest.mark.parametrize("meta", ["5", "null", "[]", '"text"'])
def test_checkpoint_metadata_that_is_not_a_mapping_is_a_user_error(tmp_path, meta):
    raw = _checkpoint_bytes(tmp_path)
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["cnnrun"] = meta
    body = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n:])
    with pytest.raises(UserError, match="not a readable cnnrun checkpoint"):
        checkpoint.load(path)
