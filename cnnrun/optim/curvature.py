"""The diagonal of the Gauss–Newton matrix that SDLM divides by, from exact products.

diag(G) ≈ mean over Rademacher vectors v of v ∘ (G v) (Bekas, Kokiopoulou & Saad 2007), each
G·v one pass of Pearlmutter's R-operator (``Model.hvp`` with ``gauss_newton``)."""

from __future__ import annotations

from ..engine.state import flatten
from ..ops.backend import get_array_module


def estimate_gn_diagonal(model, state, x, labels, loss_fn, probes: int, rng, dropout_rng_of):
    """diag(G), clipped at 0 (G is positive semi-definite; the estimate's noise is not)."""
    xp = get_array_module(x)
    flat = flatten(state)
    names = sorted(model.trainable_names())
    total = {n: xp.zeros_like(flat[n]) for n in names}
    for _ in range(probes):
        v = {n: xp.asarray(rng.choice([-1.0, 1.0], size=flat[n].shape), dtype=flat[n].dtype)
             for n in names}
        gv = model.hvp(state, x, labels, loss_fn, v, gauss_newton=True, rng=dropout_rng_of())
        for n in names:
            total[n] += v[n] * gv[n]
    return {n: xp.maximum(total[n] / probes, 0) for n in names}
