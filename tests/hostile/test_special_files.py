"""Hostile files where a config, an `extends` or a checkpoint is expected: special files
(a FIFO would block `open` for ever, /dev/zero would read until memory runs out), alias
bombs, self-reference, deep nesting, duplicate keys, bytes that are not text. Each ends
in exit 2 with one paragraph naming the file (and line), no traceback, within seconds."""

import os
import time

import pytest
from typer.testing import CliRunner

from cnnrun.cli import app

GOOD = "model: {input_shape: [1, 28, 28], layers: [{type: flatten}, {type: linear, out_features: 10}]}\n"


def run(*args):
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert time.perf_counter() - t0 < 10, "took too long: it must refuse, not work through it"
    return r


def assert_refused(r, *words):
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error: ") and "Traceback" not in text and "\n\n" not in text
    for w in words:
        assert w in text, text


def bomb(levels=7, width=10):
    lines = ['a0: &a0 ["x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n" + GOOD


CASES = {
    "an alias bomb": (bomb(), ["expands to more than 200,000 values"]),
    "a value that contains itself": ("x: &x [1, *x]\n" + GOOD, ["contains itself"]),
    "500 nested lists": ("x: " + "[" * 500 + "]" * 500 + "\n" + GOOD, ["nests deeper than 100"]),
    "a duplicate key": ("train: {epochs: 1, epochs: 500}\n" + GOOD,
                        ["1:20", "'epochs' is given twice", "also at line 1"]),
    "duplicate top-level keys": (GOOD + "model: {input_shape: [1, 2, 2], layers: []}\n",
                                 ["2:1", "'model' is given twice"]),
}


@pytest.mark.parametrize("text, words", CASES.values(), ids=CASES.keys())
def test_a_hostile_config_text_is_refused_at_its_line(tmp_path, text, words):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert_refused(run("validate", p), str(p), *words)


def test_bytes_that_are_not_utf8_are_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"model: \xff\xfe\n")
    assert_refused(run("validate", p), "not UTF-8")


def test_a_config_larger_than_a_megabyte_is_refused_before_reading(tmp_path):
    p = tmp_path / "c.yaml"
    with open(p, "wb") as f:
        f.truncate(5 << 20)  # sparse: 5 MB of nothing
    assert_refused(run("validate", p), "5.0 MB", "more than a config file can be")


@pytest.mark.parametrize("kind", ["fifo", "dir", "dev-zero"])
@pytest.mark.parametrize("where", ["config", "extends", "checkpoint"])
def test_a_special_file_is_refused_without_blocking(tmp_path, kind, where):
    special = {"fifo": tmp_path / "special", "dir": tmp_path / "special", "dev-zero": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(special)
    elif kind == "dir":
        os.mkdir(special)
    if where == "config":
        r = run("validate", special)
    elif where == "extends":
        p = tmp_path / "c.yaml"
        p.write_text(f"extends: {special}\n" + GOOD)
        r = run("validate", p)
    else:
        r = run("eval", special)
    words = {"fifo": "a pipe", "dir": "a directory", "dev-zero": "a device or special file"}
    assert_refused(r, str(special), words[kind])
