"""cnnrun gradcheck: passes on correct code, fails (exit 1) on a broken backward, refuses float32."""

import json

from typer.testing import CliRunner

from cnnrun.cli import app
from cnnrun.layers.activations import ReLU

runner = CliRunner()


def test_gradcheck_passes_on_lenet_with_every_parameter_and_the_direction():
    r = runner.invoke(app, ["gradcheck", "configs/lenet5.yaml", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    params = {(x["layer"], x["parameter"]) for x in rows}
    assert {("conv1", "weight"), ("fc3", "bias"), ("(input)", "x"),
            ("(all)", "directional ∇E·v")} <= params
    assert all(x["passed"] and x["max_rel_error"] < 1e-5 for x in rows)


def test_gradcheck_fails_on_a_wrong_backward(monkeypatch):
    monkeypatch.setattr(ReLU, "df", lambda self, xp, x, y: (y > 0) * 1.5)  # wrong slope
    r = runner.invoke(app, ["gradcheck", "configs/lenet5.yaml"])
    assert r.exit_code == 1 and "gradient checks failed" in r.output and "FAIL" in r.output


def test_gradcheck_refuses_float32():
    r = runner.invoke(app, ["gradcheck", "configs/lenet5.yaml", "--dtype", "float32"])
    assert r.exit_code == 2 and "float64 only" in r.output


def test_coordinates_with_a_gradient_are_sampled_and_zero_ones_are_reported():
    """A gradient that is zero at the sampled coordinates agrees with any code: sample where
    it is not, and say when nothing but zeros was there to check."""
    from cnnrun.engine.losses import CrossEntropy
    from cnnrun.engine.model import Model
    from cnnrun.tools.gradcheck import check_model
    # conv1's gradient flows to the loss; after fc (weights fixed at 0) nothing flows back
    dead = Model([{"type": "flatten"}, {"type": "linear", "name": "a", "out_features": 6},
                  {"type": "linear", "name": "fc", "out_features": 3, "trainable": False,
                   "weights": {"weight": [[0.0] * 6] * 3, "bias": [0.0] * 3}}], (1, 3, 3))
    rows = {(r.layer, r.parameter): r for r in check_model(dead, CrossEntropy(), samples=4)}
    assert rows[("a", "weight")].checked == 4 and rows[("a", "weight")].nonzero == 0
    live = Model([{"type": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2},
                  {"type": "relu"}, {"type": "flatten"},
                  {"type": "linear", "name": "fc", "out_features": 3}], (1, 4, 4))
    rows = {(r.layer, r.parameter): r for r in check_model(live, CrossEntropy(), samples=4)}
    assert all(r.nonzero == r.checked for r in rows.values()), rows
