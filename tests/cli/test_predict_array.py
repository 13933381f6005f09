"""`cnnrun predict CHECKPOINT X.npy`: an array taken as the input as it is, the network's
final outputs per sample under "outputs", and every wrong array refused with exit 2."""

import json

import numpy as np
import pytest

from cnnrun.train.trained import load_trained
from helpers.cli import best, invoke


def test_outputs_are_the_networks_on_the_array_as_it_is(run, tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = invoke("predict", best(run), tmp_path / "x.npy", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    tr = load_trained(best(run))
    expected = tr.model.predict(tr.state, x)  # no preprocessing, no normalisation
    np.testing.assert_allclose(np.array(out["outputs"]), expected, rtol=1e-6, atol=1e-6)
    assert out["shape"] == [3, 1, 28, 28]
    assert [p["top"][0]["index"] for p in out["predictions"]] == list(expected.argmax(axis=1))


def test_one_sample_without_a_batch_axis(run, tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((1, 28, 28)))
    r = invoke("predict", best(run), tmp_path / "one.npy", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)["outputs"]) == 1


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p, np.zeros((2, 3))), "does not fit the network's input (1, 28, 28)"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
     "not a readable .npy array"),
    (lambda p: np.save(p, np.zeros((1, 28, 28), dtype="U1")), "the network takes numbers"),
    (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not a readable .npy array"),
    (lambda p: p.mkdir(), "not a regular file"),
])
def test_a_wrong_array_is_refused_in_one_paragraph(run, tmp_path, make, words):
    path = tmp_path / "bad.npy"
    make(path)
    r = invoke("predict", best(run), path)
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, r.output
