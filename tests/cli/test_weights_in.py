"""Weights from elsewhere: any safetensors file of weights (a PyTorch state_dict) loads with
--init-weights, and eval, predict and export take it beside --config; names match strictly
(num_batches_tracked aside) with every problem in one message; a pickle is never read."""

import json
import pickle

import numpy as np
import pytest

from cnnrun.train import checkpoint
from cnnrun.train.trainer import Trainer
from cnnrun.config import load_config
from helpers.cli import ROOT, best, invoke

LENET = ROOT / "configs" / "lenet5.yaml"


@pytest.fixture
def plain(run, tmp_path):
    """The run's weights as PyTorch saves a state_dict: no cnnrun record, one counter more."""
    from safetensors.numpy import save_file
    w = checkpoint.load(best(run))[0]
    path = tmp_path / "state_dict.safetensors"
    save_file({**w, "bn.num_batches_tracked": np.array(7)}, path)
    return path, w


def test_a_weights_only_file_is_refused_without_a_config_saying_what_to_do(plain):
    r = invoke("eval", plain[0])
    assert r.exit_code == 2 and "--init-weights" in r.output and "--config" in r.output


def test_eval_predict_and_export_take_a_weights_only_file_beside_its_config(run, plain, tmp_path):
    path, _ = plain
    config = run / "config.yaml"  # the run's own, resolved: the same network and data
    own = json.loads(invoke("eval", best(run), "--json").output)
    with_config = json.loads(invoke("eval", best(run), "--config", config, "--json").output)
    assert (with_config["accuracy"], with_config["count"]) == (own["accuracy"], own["count"])
    r = invoke("eval", path, "--config", config, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["count"] == own["count"], r.output
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    assert invoke("predict", path, tmp_path / "x.npy", "--config", LENET, "--json").exit_code == 0
    r = invoke("export", path, "--config", LENET, "-o", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output


def test_init_weights_loads_a_state_dict_exactly(plain, tmp_path):
    path, w = plain
    t = Trainer(load_config(LENET, ["data.train_limit=64", "data.test_limit=16"]),
                tmp_path / "ft", None, init_weights=path)
    for name, arr in w.items():
        np.testing.assert_array_equal(np.asarray(t.flat[name]), arr.astype(t.dtype), err_msg=name)


def test_every_missing_unexpected_or_misshapen_tensor_is_named_at_once(plain, tmp_path):
    from safetensors.numpy import save_file
    _, w = plain
    names = sorted(w)
    broken = {k: v for k, v in w.items() if k != names[0]}  # one missing
    broken["head.extra"] = np.zeros(3, np.float32)  # one unexpected
    broken[names[1]] = np.zeros((1, 1), np.float32)  # one of another shape
    path = tmp_path / "broken.safetensors"
    save_file(broken, path)
    r = invoke("eval", path, "--config", LENET)
    assert r.exit_code == 2
    assert f"1 missing: {names[0]}" in r.output and "1 unexpected: head.extra" in r.output
    assert f"1 of another shape: {names[1]} (1, 1) vs model" in r.output


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch EVIL_RAN",))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_a_pickle_is_refused_with_the_command_that_converts_it_and_never_run(tmp_path, suffix,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    for args in (["eval", path], ["eval", path, "--config", LENET], ["train", LENET,
                                                                     "--init-weights", path]):
        r = invoke(*args)
        assert r.exit_code == 2 and "never unpickles" in r.output
        assert "weights_only=True" in r.output and "st.save_file" in r.output
    assert not (tmp_path / "EVIL_RAN").exists()
