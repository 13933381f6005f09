"""Inputs that used to give a wrong result with exit 0: test image folders numbered on
their own, labels outside the network's outputs, a validation split that leaves nothing
to train on, `eval --data` on a synthetic run, Ctrl-C during the last evaluation."""

import io

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.cli import ROOT
from cnnrun.cli import app
from cnnrun.config import load_config
from cnnrun.config.schema import DataConfig
from cnnrun.data.sources import load_split
from cnnrun.errors import Interrupted, UserError
from cnnrun.train.progress import PlainReporter
from cnnrun.train.trainer import Trainer

TINY = """\
model:
  input_shape: [1, 8, 8]
  layers: [{type: flatten}, {type: linear, name: fc, out_features: 10}]
data:
  dataset: synthetic
  synthetic: {shape: [1, 8, 8], num_classes: 10, train_size: 64, test_size: 16}
train: {epochs: 1, batch_size: 16, processes: 1}
"""


def config(tmp_path, *overrides):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return load_config(p, list(overrides))


def folder(root, split, classes):
    from PIL import Image
    for c in classes:
        (root / split / c).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / split / c / "0.png")


def test_a_test_folder_keeps_the_training_splits_class_numbers(tmp_path):
    pytest.importorskip("PIL")
    folder(tmp_path, "train", ["a", "b"])
    folder(tmp_path, "test", ["b"])
    cfg = DataConfig.model_validate({"dataset": "image_folder", "root": str(tmp_path)})
    test = load_split(cfg, "test")
    assert test.classes == ["a", "b"] and test.labels.tolist() == [1]  # b is 1, as in train
    folder(tmp_path, "test", ["c"])
    with pytest.raises(UserError, match="class folders c are not among the training split's"):
        load_split(cfg, "test")


def test_labels_outside_the_networks_outputs_are_an_error(tmp_path):
    cfg = config(tmp_path, "data.synthetic.num_classes=12")
    with pytest.raises(UserError, match=r"synthetic data, train split: label 1[01] at index \d+ "
                                        r"is outside 0…9"):
        Trainer(cfg, tmp_path / "r", None)


@pytest.mark.parametrize("split", ["64", "0.9999"])
def test_a_validation_split_that_leaves_nothing_to_train_on_is_an_error(tmp_path, split):
    with pytest.raises(UserError, match=r"data.val_split: .* leaving none to train on"):
        Trainer(config(tmp_path, f"data.val_split={split}"), tmp_path / "r", None)


def test_eval_data_on_a_synthetic_run_is_refused(tmp_path):
    t = Trainer(config(tmp_path), tmp_path / "r", PlainReporter(stream=io.StringIO()))
    t.run()
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "r/checkpoints/last.safetensors"),
                                 "--data", str(tmp_path / "no-such-dir")])
    assert r.exit_code == 2 and "synthetic data" in r.output and "Traceback" not in r.output


def test_ctrl_c_during_the_last_evaluation_is_not_ignored(tmp_path, monkeypatch):
    import cnnrun.train.trainer as trainer_module
    t = Trainer(config(tmp_path), tmp_path / "r", PlainReporter(stream=io.StringIO()))
    real = trainer_module.evaluate

    def evaluate_then_ctrl_c(*args, **kwargs):
        t.interrupted = 2  # SIGINT arrives while the last epoch is being evaluated
        return real(*args, **kwargs)
    monkeypatch.setattr(trainer_module, "evaluate", evaluate_then_ctrl_c)
    with pytest.raises(Interrupted, match="interrupted after epoch 1") as e:
        t.run()
    assert e.value.exit_code == 130
    assert (tmp_path / "r/checkpoints/last.safetensors").exists()


def test_a_validation_split_too_large_points_at_the_keys_line(tmp_path):
    (tmp_path / "c.yaml").write_text(f"extends: {ROOT / 'configs' / 'lenet5.yaml'}\n"
                                     f"data:\n  val_split: 9000\n")
    r = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2, r.output
    assert f"{tmp_path / 'c.yaml'}:3:3 data.val_split: 9000 sets aside 9000 of the 8000" in \
        r.output.replace("\n", "")
    assert not (tmp_path / "r").exists()  # nothing written for a refused run
