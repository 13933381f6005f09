"""Losses: values by hand, gradients by finite differences, sum vs mean as documented."""

import numpy as np
import pytest

from cnnrun.tools.gradcheck import numeric_grad
from cnnrun.engine.losses import CrossEntropy, SquaredError

LABELS = np.array([2, 0, 1])


def test_cross_entropy_value_by_hand():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 1.0, 3.0], [2.0, 0.0, -1.0]])  # (K, N)
    loss, _ = CrossEntropy().value_and_grad(logits, LABELS)
    logp = logits - np.log(np.exp(logits).sum(axis=0))
    assert loss == pytest.approx(-(logp[2, 0] + logp[0, 1] + logp[1, 2]) / 3, rel=1e-14)


def test_cross_entropy_is_stable_for_huge_logits():
    loss, g = CrossEntropy().value_and_grad(np.array([[1000.0], [-1000.0]]), np.array([0]))
    assert loss == 0.0 and np.isfinite(g).all()


@pytest.mark.parametrize("loss", [CrossEntropy(), CrossEntropy(label_smoothing=0.2),
                                  CrossEntropy(reduction="sum"), SquaredError(),
                                  SquaredError(targets="plus_minus_one", reduction="sum")],
                         ids=["ce", "ce-smooth", "ce-sum", "se", "se-pm1-sum"])
def test_loss_gradients_match_finite_differences(loss, rng):
    y = rng.normal(size=(4, 3))
    _, g = loss.value_and_grad(y, LABELS)
    num = numeric_grad(lambda: float(loss.value_and_grad(y, LABELS)[0]), y, 1e-6)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_squared_error_is_half_sum_over_outputs_mean_over_batch():
    y = np.array([[0.5, -1.0], [0.25, 1.0]])  # K=2, N=2, labels 0 and 1
    t01 = np.array([[1.0, 0.0], [0.0, 1.0]])
    expected = 0.5 * ((y - t01) ** 2).sum() / 2
    assert SquaredError().value_and_grad(y, np.array([0, 1]))[0] == pytest.approx(expected)
    tpm = np.array([[1.0, -1.0], [-1.0, 1.0]])
    expected_sum = 0.5 * ((y - tpm) ** 2).sum()
    got = SquaredError(targets="plus_minus_one", reduction="sum").value_and_grad(y, np.array([0, 1]))
    assert got[0] == pytest.approx(expected_sum)


def test_label_smoothing_matches_definition():
    logits = np.array([[2.0], [0.0], [-1.0]])
    eps = 0.3
    logp = logits[:, 0] - np.log(np.exp(logits[:, 0]).sum())
    expected = -((1 - eps) * logp[0] + eps * logp.mean())
    got, _ = CrossEntropy(label_smoothing=eps).value_and_grad(logits, np.array([0]))
    assert got == pytest.approx(expected, rel=1e-12)
