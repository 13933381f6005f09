"""Exact Hessian-vector products (Pearlmutter's R-operator) against finite differences."""

import numpy as np
import pytest

from cnnrun.ops.layout import to_engine
from cnnrun.engine.losses import CrossEntropy, SquaredError
from cnnrun.engine.state import flatten
from helpers.layers import EXAMPLES
from helpers.checks import check_r_operator
from helpers.nets import lenet

POSITIVE = {"lp_pool2d"}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_r_operator_equals_finite_differences_of_the_gradient(type_name, cfg, shape, train):
    check_r_operator(type_name, cfg, shape, train, positive=type_name in POSITIVE)


def lenet_batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    model = lenet()
    state = model.init(seed=seed, dtype=np.float64)
    x = to_engine(rng.random((n, 1, 28, 28)))
    labels = rng.integers(0, 10, n)
    return rng, model, state, x, labels


def random_direction(rng, model, state):
    """A unit-norm direction: finite differences along it move each weight by ~ε/√P, too
    little to cross a ReLU kink in most draws (an unnormalised v crosses some and spikes
    the quotient). Drawn in the flat state's order: trainable_names() is a frozenset, whose
    order follows the per-process string hash, so drawing in its order gave every run
    another v (1 run in 12 crossed a kink in ResNet-20 at ε = 1e-4)."""
    flat = flatten(state)
    v = {n: rng.normal(size=flat[n].shape) for n in model.trainable_in(flat)}
    norm = np.sqrt(sum((a * a).sum() for a in v.values()))
    return {n: a / norm for n, a in v.items()}


def model_grad(model, state, x, labels, loss):
    y, cache = model.forward(state, x, train=True)
    return flatten(model.backward(state, cache, loss.value_and_grad(y, labels)[1])[1])


def test_model_hv_equals_finite_difference_of_gradients():
    rng, model, state, x, labels = lenet_batch()
    v = random_direction(rng, model, state)
    hv = model.hvp(state, x, labels, CrossEntropy(), v)
    assert_hv_matches(hv, gradient_difference(model, state, x, labels, v), rtol=1e-5)


def gradient_difference(model, state, x, labels, v, eps=1e-4):
    """(∇E(w + εv) − ∇E(w − εv)) / 2ε, the finite-difference Hv."""
    flat = flatten(state)
    for n in v:
        flat[n] += eps * v[n]
    up = model_grad(model, state, x, labels, CrossEntropy())
    for n in v:
        flat[n] -= 2 * eps * v[n]
    down = model_grad(model, state, x, labels, CrossEntropy())
    for n in v:
        flat[n] += eps * v[n]
    return {n: (up[n] - down[n]) / (2 * eps) for n in v}


def assert_hv_matches(hv, num, rtol):
    scale = max(np.abs(a).max() for a in num.values())
    for n in num:
        np.testing.assert_allclose(hv[n], num[n], rtol=rtol, atol=1e-6 * scale, err_msg=n)


def dot(a, b):
    return sum(float((a[n] * b[n]).sum()) for n in a)


def test_hessian_is_symmetric():
    rng, model, state, x, labels = lenet_batch(1)
    u, v = random_direction(rng, model, state), random_direction(rng, model, state)
    loss = CrossEntropy()
    assert dot(u, model.hvp(state, x, labels, loss, v)) == pytest.approx(
        dot(v, model.hvp(state, x, labels, loss, u)), rel=1e-9)


def test_linear_layer_with_squared_error_has_hessian_xtx():
    from pydantic import TypeAdapter
    from cnnrun.layers import AnyLayer
    from cnnrun.engine.model import Model
    rng = np.random.default_rng(0)
    model = Model(TypeAdapter(list[AnyLayer]).validate_python(
        [{"type": "linear", "out_features": 3, "bias": False}]), (5,))
    state = model.init(dtype=np.float64)
    X = rng.normal(size=(8, 5))
    V = rng.normal(size=(3, 5))
    hv = model.hvp(state, to_engine(X), rng.integers(0, 3, 8), SquaredError(), {"0.weight": V})
    np.testing.assert_allclose(hv["0.weight"], V @ X.T @ X / 8, rtol=1e-12)


def test_gauss_newton_is_positive_semidefinite():
    rng, model, state, x, labels = lenet_batch(2)
    for _ in range(3):
        v = random_direction(rng, model, state)
        assert dot(v, model.hvp(state, x, labels, CrossEntropy(), v, gauss_newton=True)) >= 0


def test_lanczos_and_hutchinson_on_a_known_spectrum():
    from cnnrun.tools.hessian import hutchinson_trace, lanczos_top
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    eig = np.concatenate([[9.0, 5.0, 3.0], rng.uniform(-1, 1, 37)])
    H = Q @ np.diag(eig) @ Q.T
    np.testing.assert_allclose(lanczos_top(lambda v: H @ v, 40, 3, 40, rng), [9, 5, 3], rtol=1e-8)
    est, err = hutchinson_trace(lambda v: H @ v, 40, 400, rng)
    assert abs(est - eig.sum()) < 4 * err + 1e-9


def test_hessian_command_on_a_checkpoint(tmp_path):
    import json
    from typer.testing import CliRunner
    from cnnrun.cli import app
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  input_shape: [1, 28, 28]\n  layers:\n"
                   "    - {type: conv2d, out_channels: 2, kernel_size: 5, stride: 3}\n"
                   "    - {type: relu}\n    - {type: flatten}\n"
                   "    - {type: linear, out_features: 10}\n"
                   "data: {train_limit: 64, test_limit: 16}\ntrain: {epochs: 1, batch_size: 32}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]).exit_code == 0
    r = runner.invoke(app, ["hessian", str(tmp_path / "r/checkpoints/last.safetensors"), "--top-k",
                            "2", "--batch", "32", "--iters", "8", "--trace-samples", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out["top_eigenvalues"]) == 2 and out["top_eigenvalues"][0] >= out["top_eigenvalues"][1]
    assert out["parameters"] == 2 * 25 + 2 + 10 * 2 * 8 * 8 + 10


def test_sdlm_update_by_hand():
    from pydantic import TypeAdapter
    from cnnrun.config.schema import AnyOptimizer
    from cnnrun.optim import build_optimizer
    opt = build_optimizer(TypeAdapter(AnyOptimizer).validate_python(
        {"type": "sdlm", "lr": 0.1, "mu": 0.5}), ["w"])
    opt.set_curvature({"w": np.array([0.0, 1.5])})
    w = np.array([1.0, 1.0])
    opt.step({"w": w}, {"w": np.array([2.0, 2.0])}, 0.1)
    np.testing.assert_allclose(w, [1 - 0.1 * 2 / 0.5, 1 - 0.1 * 2 / 2.0])


def test_gauss_newton_diagonal_estimate_converges_to_the_exact_diagonal():
    from pydantic import TypeAdapter
    from cnnrun.layers import AnyLayer
    from cnnrun.engine.model import Model
    from cnnrun.optim.curvature import estimate_gn_diagonal
    rng = np.random.default_rng(0)
    model = Model(TypeAdapter(list[AnyLayer]).validate_python(
        [{"type": "linear", "out_features": 2}]), (3,))
    state = model.init(dtype=np.float64)
    X = rng.normal(size=(16, 3))
    d = estimate_gn_diagonal(model, state, to_engine(X), rng.integers(0, 2, 16), SquaredError(),
                             4000, rng, lambda: None)
    exact = np.tile((X ** 2).mean(axis=0), (2, 1))  # ∂²E/∂W_of² = mean_n x_nf²
    np.testing.assert_allclose(d["0.weight"], exact, rtol=0.1)
    np.testing.assert_allclose(d["0.bias"], [1.0, 1.0], rtol=0.1)


def test_sdlm_training_resumes_bit_for_bit(tmp_path):
    import io
    from cnnrun.config import load_config
    from cnnrun.train import checkpoint
    from cnnrun.train.progress import PlainReporter
    from cnnrun.train.trainer import Trainer
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  input_shape: [1, 28, 28]\n  layers:\n"
                 "    - {type: conv2d, out_channels: 2, kernel_size: 5, stride: 3}\n"
                 "    - {type: tanh}\n    - {type: flatten}\n    - {type: linear, out_features: 10}\n"
                 "data: {train_limit: 96, test_limit: 16}\n"
                 "train: {epochs: 2, batch_size: 32, loss: {type: squared_error},\n"
                 "        optimizer: {type: sdlm, lr: 0.001, refresh_every: 2, probes: 2}}\n")
    run = lambda out, **kw: Trainer(load_config(p, kw.pop("o", [])), tmp_path / out,
                                    PlainReporter(stream=io.StringIO()), **kw).run()
    run("full")
    run("half", o=["train.epochs=1"])
    run("half", resume=tmp_path / "half/checkpoints/last.safetensors")
    a = checkpoint.load(tmp_path / "full/checkpoints/last.safetensors")
    b = checkpoint.load(tmp_path / "half/checkpoints/last.safetensors")
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    assert any(k.endswith(".curvature") for k in a[1])


def test_hv_on_resnet20_with_batch_norm_matches_finite_differences():
    from pathlib import Path
    from cnnrun.config import load_config
    from cnnrun.engine.model import Model
    cfg = load_config(Path(__file__).parents[2] / "configs" / "resnet20-cifar10.yaml",
                      ["model.input_shape=[3, 8, 8]"])
    model = Model(cfg.model.layers, cfg.model.input_shape)
    rng = np.random.default_rng(0)
    state = model.init(seed=0, dtype=np.float64)
    x = to_engine(rng.normal(size=(4, 3, 8, 8)))
    labels = rng.integers(0, 10, 4)
    v = random_direction(rng, model, state)
    hv = model.hvp(state, x, labels, CrossEntropy(), v)
    # ε = 1e-5: ResNet-20 has thousands of ReLUs near zero, and at 1e-4 some directions
    # cross a kink (the difference then jumps to ~35 while Hv is ~0.6); float64 round-off
    # at 1e-5 is still ~1e-10.
    num = gradient_difference(model, state, x, labels, v, eps=1e-5)
    assert_hv_matches(hv, num, rtol=1e-4)
