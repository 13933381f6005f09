"""Training: determinism, exact resume, NaN, early stopping, fine-tuning, Ctrl-C, checkpoints."""

import io
import os

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.errors import RunFailed, UserError
from cnnrun.train import checkpoint
from cnnrun.train.progress import PlainReporter
from cnnrun.train.trainer import Interrupted, Trainer
from helpers.nets import TINY



def config(tmp_path, *overrides, text=TINY):
    p = tmp_path / "tiny.yaml"
    p.write_text(text)
    return load_config(p, list(overrides))


class Quiet(PlainReporter):
    def __init__(self, stop_at=None, trainer=None):
        super().__init__(stream=io.StringIO())
        self.stop_at, self.trainer, self.count = stop_at, trainer, 0

    def step(self, *args):
        self.count += 1
        if self.stop_at and self.count == self.stop_at:
            self.trainer.interrupted = True  # what Ctrl-C does


def train(cfg, run_dir, **kw):
    t = Trainer(cfg, run_dir, Quiet(), **kw)
    return t, t.run()


def weights(path):
    return checkpoint.load(path)[0]


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_same_seed_same_weights_bit_for_bit(tmp_path):
    train(config(tmp_path), tmp_path / "a")
    train(config(tmp_path), tmp_path / "b")
    assert_same(weights(tmp_path / "a/checkpoints/last.safetensors"),
                weights(tmp_path / "b/checkpoints/last.safetensors"))
    train(config(tmp_path, "train.seed=4"), tmp_path / "c")
    assert not np.array_equal(weights(tmp_path / "a/checkpoints/last.safetensors")["fc.weight"],
                              weights(tmp_path / "c/checkpoints/last.safetensors")["fc.weight"])


def test_resume_after_one_epoch_equals_two_epochs(tmp_path):
    train(config(tmp_path), tmp_path / "full")
    train(config(tmp_path, "train.epochs=1"), tmp_path / "half")
    _, result = train(config(tmp_path), tmp_path / "half",
                      resume=tmp_path / "half/checkpoints/last.safetensors")
    assert result["epochs"] == 2
    assert_same(weights(tmp_path / "full/checkpoints/last.safetensors"),
                weights(tmp_path / "half/checkpoints/last.safetensors"))
    full, _, info_full = checkpoint.load(tmp_path / "full/checkpoints/last.safetensors")
    _, opt_half, info_half = checkpoint.load(tmp_path / "half/checkpoints/last.safetensors")
    assert info_full["step"] == info_half["step"] == 2 * 5


def test_resume_mid_epoch_equals_uninterrupted(tmp_path):
    train(config(tmp_path), tmp_path / "full")
    cfg = config(tmp_path)
    t = Trainer(cfg, tmp_path / "cut", None)
    t.reporter = Quiet(stop_at=7, trainer=t)  # stop in the middle of epoch 2
    with pytest.raises(Interrupted, match="--resume"):
        t.run()
    info = checkpoint.load(tmp_path / "cut/checkpoints/last.safetensors")[2]
    assert (info["epoch"], info["batch"], info["step"]) == (1, 2, 7)
    train(config(tmp_path), tmp_path / "cut", resume=tmp_path / "cut/checkpoints/last.safetensors")
    assert_same(weights(tmp_path / "full/checkpoints/last.safetensors"),
                weights(tmp_path / "cut/checkpoints/last.safetensors"))
    rows = [l for l in (tmp_path / "full/metrics.csv").read_text().splitlines()]
    rows_cut = [l for l in (tmp_path / "cut/metrics.csv").read_text().splitlines()]
    strip = lambda r: r.rsplit(",", 1)[0]  # the last column is wall-clock seconds
    assert [strip(r) for r in rows] == [strip(r) for r in rows_cut]


@pytest.mark.filterwarnings("error")  # the user sees one message, not NumPy warnings
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(RunFailed, match="the loss became nan.*no checkpoint had been written yet"):
        train(config(tmp_path, "train.optimizer.lr=1e30", "train.epochs=3"), tmp_path / "r")
    # the epoch-end checkpoint, if any, holds finite weights; no NaN was ever saved
    for f in (tmp_path / "r/checkpoints").glob("*.safetensors"):
        for a in weights(f).values():
            assert np.isfinite(a).all()


def test_early_stopping_restores_best(tmp_path):
    cfg = config(tmp_path, "train.epochs=6", "train.optimizer.lr=1e-6",
                 "train.early_stopping={patience: 1, min_delta: 0.5}")
    t, result = train(cfg, tmp_path / "r")
    assert result["stopped_early"] and result["epochs"] == 2
    assert_same({k: np.asarray(v) for k, v in t.flat.items()},
                weights(tmp_path / "r/checkpoints/best.safetensors"))


def test_init_weights_loads_weights_only(tmp_path):
    train(config(tmp_path, "train.epochs=1"), tmp_path / "a")
    t = Trainer(config(tmp_path), tmp_path / "b", Quiet(),
                init_weights=tmp_path / "a/checkpoints/last.safetensors")
    assert_same({k: np.asarray(v) for k, v in t.flat.items()},
                weights(tmp_path / "a/checkpoints/last.safetensors"))
    assert t.epoch == 0 and t.optimizer.state == {}


def test_init_weights_from_another_architecture_is_refused(tmp_path):
    train(config(tmp_path, "train.epochs=1"), tmp_path / "a")
    with pytest.raises(UserError, match=r"does not fit this model .*fc.weight \(10, 144\) vs model \(10, 576\)"):
        Trainer(config(tmp_path, "model.layers[0].out_channels=16"), tmp_path / "b", Quiet(),
                init_weights=tmp_path / "a/checkpoints/last.safetensors")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    checkpoint.save(path, {"w": np.ones(3, np.float32)}, {}, {"epoch": 1})

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoint.save(path, {"w": np.zeros(3, np.float32)}, {}, {"epoch": 2})
    w, _, info = checkpoint.load(path)
    assert info["epoch"] == 1 and w["w"].tolist() == [1, 1, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_a_user_error(tmp_path, damage):
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, {"w": np.ones((4, 4), np.float32)}, {}, {"epoch": 1})
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[:len(raw) // 2], "garbage": b"\x00" * 40 + raw[40:],
                      "empty": b""}[damage])
    with pytest.raises(UserError, match="not a readable cnnrun checkpoint"):
        checkpoint.load(path)


def test_checkpoint_names_follow_pytorch_and_load_into_torch(tmp_path):
    torch = pytest.importorskip("torch")
    train(config(tmp_path, "train.epochs=1"), tmp_path / "a")
    w = weights(tmp_path / "a/checkpoints/last.safetensors")
    assert set(w) == {"conv1.weight", "conv1.bias", "fc.weight", "fc.bias"}
    net = torch.nn.Module()
    net.conv1 = torch.nn.Conv2d(1, 4, 5, stride=2)
    net.fc = torch.nn.Linear(144, 10)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)


@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_real_sigint_or_sigterm_saves_a_resumable_checkpoint(tmp_path, signame, code):
    import signal
    sig = getattr(signal, signame)

    class SignalAt(Quiet):
        def step(self, *args):
            self.count += 1
            if self.count == 3:
                signal.raise_signal(sig)  # what Ctrl-C, or a scheduler's kill, sends

    before = signal.getsignal(sig)  # SIG_IGN where pytest runs as a background job
    t = Trainer(config(tmp_path), tmp_path / "r", SignalAt())
    with pytest.raises(Interrupted) as e:
        t.run()
    assert e.value.exit_code == code
    assert checkpoint.load(tmp_path / "r/checkpoints/last.safetensors")[2]["step"] == 3
    assert signal.getsignal(sig) is before  # the handler restored


def test_more_processes_than_twice_the_cores_is_a_config_error(tmp_path):
    import os
    many = 2 * (os.cpu_count() or 1) + 1  # within the schema's bound, beyond this machine's
    with pytest.raises(UserError, match=rf"train.processes: {many} processes on a machine of "
                                        r"\d+ cores.*at most \d+"):
        Trainer(config(tmp_path, f"train.processes={many}"), tmp_path / "many", Quiet())


def test_no_decay_groups_resolve_bias_and_norm_layers(tmp_path):
    text = TINY.replace("    - {type: relu}\n", "    - {type: batchnorm2d, name: bn}\n    - {type: relu}\n")
    cfg = config(tmp_path, "train.no_decay=[bias, norm]", "train.optimizer.weight_decay=0.1",
                 text=text)
    t = Trainer(cfg, tmp_path / "r", Quiet())
    assert {n for n, wd in t.optimizer.decay.items() if wd == 0} == \
        {"conv1.bias", "fc.bias", "bn.weight", "bn.bias"}
    assert t.optimizer.decay["conv1.weight"] == 0.1


def test_gradient_clipping_by_global_norm():
    from cnnrun.train.trainer import clip_by_global_norm
    g = {"a": np.array([3.0]), "b": np.array([4.0])}
    assert clip_by_global_norm(g, 1.0) == pytest.approx(5.0)
    assert np.hypot(g["a"][0], g["b"][0]) == pytest.approx(1.0, rel=1e-5)
    small = {"a": np.array([0.3])}
    clip_by_global_norm(small, 1.0)
    assert small["a"][0] == 0.3


@pytest.mark.parametrize("batch_norm, dropout", [(False, False), (True, False), (True, True)])
def test_training_cut_over_two_processes_matches_one(tmp_path, monkeypatch, batch_norm, dropout):
    """train.processes: 2 trains the same network as one process, to float64 rounding,
    with its worker really used and stopped at the end; with batch norm, whose statistics
    the shares sum across the processes, the running statistics match too; with dropout,
    whose masks each sample draws from its own stream, so do the weights."""
    from cnnrun.engine.parallel.replicas import Replicas
    split_passes = []
    real = Replicas._forward
    monkeypatch.setattr(Replicas, "_forward",
                        lambda self, *a: split_passes.append(1) or real(self, *a))
    text = TINY.replace("seed: 3", "seed: 3\n  dtype: float64")
    if not dropout:
        text = text.replace("    - {type: dropout, p: 0.3}\n", "")
    if batch_norm:
        text = text.replace("    - {type: relu}\n", "    - {type: batchnorm2d, name: bn}\n"
                                                   "    - {type: relu}\n", 1)
    runs = {}
    for k in (1, 2):
        t, result = train(config(tmp_path, f"train.processes={k}", text=text), tmp_path / f"p{k}")
        assert t.processes == k and t.model.runner is None  # closed after the run
        runs[k] = weights(tmp_path / f"p{k}" / "checkpoints" / "last.safetensors"), result
    assert ("bn.running_var" in runs[1][0]) == batch_norm
    for name, w in runs[1][0].items():
        np.testing.assert_allclose(runs[2][0][name], w, rtol=1e-9, atol=1e-11, err_msg=name)
    assert runs[2][1]["test"]["accuracy"] == runs[1][1]["test"]["accuracy"]
    assert len(split_passes) >= 2 * 5  # every training step of 2 epochs, and evaluations


def test_resume_from_a_checkpoint_without_its_run_state_names_what_is_missing(tmp_path):
    """A checkpoint whose metadata lacks the position cannot resume: the error says which
    fields, and what to do (--init-weights), instead of a KeyError."""
    cfg = config(tmp_path)
    t, _ = train(cfg, tmp_path / "r")
    weights = {n: np.asarray(a) for n, a in t.flat.items()}
    bare = tmp_path / "bare.safetensors"
    checkpoint.save(bare, weights, {}, {"config": "{}"})
    with pytest.raises(UserError, match=r"lacks epoch, batch, step.*--init-weights"):
        Trainer(cfg, tmp_path / "again", Quiet(), resume=bare)
    Trainer(cfg, tmp_path / "fine", Quiet(), init_weights=bare)  # weights alone load
