"""Optimizers and schedules against hand-computed values and against torch.optim."""

import math

import numpy as np
import pytest
from pydantic import TypeAdapter

from cnnrun.config.schema import AnyOptimizer, AnySchedule
from cnnrun.optim import Schedule, build_optimizer

OPT = TypeAdapter(AnyOptimizer)
SCHED = TypeAdapter(AnySchedule)


def run_ours(cfg, w0, grads, lr=None, no_decay=()):
    opt = build_optimizer(OPT.validate_python(cfg), ["w"], no_decay=no_decay)
    w = w0.copy()
    for g in grads:
        opt.step({"w": w}, {"w": g}, lr or opt.cfg.lr)
    return w


def test_sgd_by_hand():
    # w=1, g=0.5 twice, lr 0.1, momentum 0.9 (PyTorch: v1 = g; v2 = 0.9·v1 + g)
    w = run_ours({"type": "sgd", "lr": 0.1, "momentum": 0.9}, np.array([1.0]), [np.array([0.5])] * 2)
    v1, v2 = 0.5, 0.9 * 0.5 + 0.5
    assert w[0] == pytest.approx(1.0 - 0.1 * v1 - 0.1 * v2, abs=1e-15)


def test_sgd_caffe_form_by_hand():
    # v ← μv + lr·(g + λw); w ← w − v, with w=1, g=0.5, lr 0.1, μ 0.9, λ 0.01
    w = run_ours({"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01,
                  "form": "caffe"}, np.array([1.0]), [np.array([0.5])] * 2)
    v1 = 0.1 * (0.5 + 0.01 * 1.0)
    w1 = 1.0 - v1
    v2 = 0.9 * v1 + 0.1 * (0.5 + 0.01 * w1)
    assert w[0] == pytest.approx(w1 - v2, abs=1e-15)


def test_adam_first_step_is_lr_times_sign():
    w = run_ours({"type": "adam", "lr": 0.01}, np.array([1.0, 1.0]), [np.array([0.3, -2.0])])
    np.testing.assert_allclose(w, [0.99, 1.01], rtol=1e-7)


def test_no_decay_group_is_not_decayed():
    cfg = {"type": "sgd", "lr": 0.1, "weight_decay": 0.5}
    assert run_ours(cfg, np.array([1.0]), [np.array([0.0])])[0] == pytest.approx(0.95)
    assert run_ours(cfg, np.array([1.0]), [np.array([0.0])], no_decay=["w"])[0] == 1.0


def test_lr_multiplier_by_name_pattern():
    opt = build_optimizer(OPT.validate_python({"type": "sgd", "lr": 0.1}), ["conv1.weight", "fc.weight"],
                          lr_mult={"conv1": 10.0})
    assert opt.lr_mult == {"conv1.weight": 10.0, "fc.weight": 1.0}


TORCH_CASES = [
    ({"type": "sgd", "lr": 0.1}, "SGD", {"lr": 0.1}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, "SGD",
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, "SGD",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ({"type": "adam", "lr": 0.01, "weight_decay": 0.1}, "Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ({"type": "adamw", "lr": 0.01, "weight_decay": 0.1}, "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ({"type": "rmsprop", "lr": 0.01}, "RMSprop", {"lr": 0.01}),
    ({"type": "rmsprop", "lr": 0.01, "momentum": 0.5, "weight_decay": 0.1}, "RMSprop",
     {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.1}),
]


@pytest.mark.torch
@pytest.mark.parametrize("ours,name,kwargs", TORCH_CASES, ids=[c[1] + str(i) for i, c in enumerate(TORCH_CASES)])
def test_optimizer_matches_torch(ours, name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(6)]
    p = torch.tensor(w0.copy(), requires_grad=True)
    opt = getattr(torch.optim, name)([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(run_ours(ours, w0, grads), p.detach().numpy(), rtol=1e-12, atol=1e-14)


def lrs(cfg, epochs=10, steps_per_epoch=1, base=1.0):
    s = Schedule(SCHED.validate_python(cfg), base, epochs, steps_per_epoch)
    return [s.lr(e, e * steps_per_epoch) for e in range(epochs)]


@pytest.mark.parametrize("cfg,expected", [
    ({"type": "constant"}, [1.0] * 4),
    ({"type": "step", "step_size": 2, "gamma": 0.5}, [1, 1, 0.5, 0.5]),
    ({"type": "multistep", "milestones": [1, 3], "gamma": 0.1}, [1, 0.1, 0.1, 0.01]),
    ({"type": "exponential", "gamma": 0.5}, [1, 0.5, 0.25, 0.125]),
    ({"type": "cosine", "t_max": 4, "eta_min": 0.0}, [1, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                    (1 + math.cos(3 * math.pi / 4)) / 2]),
])
def test_epoch_schedules_by_formula(cfg, expected):
    np.testing.assert_allclose(lrs(cfg, epochs=4), expected, rtol=1e-12)


def test_caffe_inv_and_poly_per_iteration():
    inv = Schedule(SCHED.validate_python({"type": "inv", "gamma": 1e-4, "power": 0.75}), 0.01, 1, 1)
    assert inv.lr(0, 10000) == pytest.approx(0.01 * (1 + 1e-4 * 10000) ** -0.75)
    poly = Schedule(SCHED.validate_python({"type": "poly", "power": 2.0, "max_steps": 100}), 0.1, 1, 1)
    assert poly.lr(0, 25) == pytest.approx(0.1 * 0.75 ** 2)
    assert poly.lr(0, 100) == 0.0


def test_linear_warmup():
    s = Schedule(SCHED.validate_python({"type": "constant", "warmup": {"steps": 4, "start_factor": 0.2}}),
                 1.0, 1, 10)
    np.testing.assert_allclose([s.lr(0, t) for t in range(6)], [0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


@pytest.mark.torch
@pytest.mark.parametrize("cfg,make", [
    ({"type": "step", "step_size": 3, "gamma": 0.3}, lambda t, o: t.optim.lr_scheduler.StepLR(o, 3, 0.3)),
    ({"type": "multistep", "milestones": [2, 5], "gamma": 0.5},
     lambda t, o: t.optim.lr_scheduler.MultiStepLR(o, [2, 5], 0.5)),
    ({"type": "exponential", "gamma": 0.8}, lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, 0.8)),
    ({"type": "cosine", "t_max": 8, "eta_min": 0.01},
     lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, 8, 0.01)),
], ids=["step", "multistep", "exponential", "cosine"])
def test_epoch_schedules_match_torch(cfg, make):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make(torch, opt)
    theirs = []
    for _ in range(10):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs(cfg, epochs=10, base=0.1), theirs, rtol=1e-10)


@pytest.mark.torch
def test_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    theirs_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2,
                                                              cooldown=1, threshold=1e-4)
    ours = Schedule(SCHED.validate_python({"type": "plateau", "factor": 0.5, "patience": 2,
                                           "cooldown": 1}), 0.1, 20, 1)
    for m in metrics:
        theirs_sched.step(m)
        ours.observe(m, higher_is_better=False)
        assert ours.lr(0, 0) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
