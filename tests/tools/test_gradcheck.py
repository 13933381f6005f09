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
