"""The loss Hessian of a trained model on a batch: top eigenvalues and trace.

Both use only Hessian-vector products (exact, by the R-operator): Lanczos with
full reorthogonalisation for the largest eigenvalues (the "sharpness" people
track), and Hutchinson's estimator tr(H) ≈ mean of vᵀHv over random ±1 vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FlatSpace:
    """Packs a dict of arrays into one float64 vector and back."""

    names: list[str]
    shapes: list[tuple]

    @classmethod
    def of(cls, arrays: dict, names) -> "FlatSpace":
        return cls(list(names), [tuple(arrays[n].shape) for n in names])

    @property
    def size(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes))

    def pack(self, d: dict) -> np.ndarray:
        return np.concatenate([np.asarray(d[n], dtype=np.float64).ravel() for n in self.names])

    def unpack(self, vec: np.ndarray) -> dict:
        out, i = {}, 0
        for n, s in zip(self.names, self.shapes):
            k = int(np.prod(s))
            out[n] = vec[i:i + k].reshape(s)
            i += k
        return out


def lanczos_top(matvec, n: int, k: int, iters: int, rng, on_step=None) -> np.ndarray:
    """The k largest eigenvalues of a symmetric operator from ``iters`` Lanczos steps."""
    iters = min(iters, n)
    Q = np.zeros((iters, n))
    alpha, beta = np.zeros(iters), np.zeros(iters)
    q = rng.normal(size=n)
    q /= np.linalg.norm(q)
    m = iters
    for j in range(iters):
        Q[j] = q
        w = matvec(q)
        alpha[j] = w @ q
        w -= Q[:j + 1].T @ (Q[:j + 1] @ w)  # full reorthogonalisation, twice for safety
        w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        if on_step:
            on_step(j + 1, iters)
        b = np.linalg.norm(w)
        if j + 1 < iters:
            if b < 1e-12:  # an invariant subspace: the spectrum seen so far is exact
                m = j + 1
                break
            beta[j] = b
            q = w / b
    T = np.diag(alpha[:m]) + np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
    return np.sort(np.linalg.eigvalsh(T))[::-1][:k]


def hutchinson_trace(matvec, n: int, samples: int, rng, on_step=None) -> tuple[float, float]:
    """(estimate, standard error) of tr(H) from Rademacher probes."""
    values = []
    for i in range(samples):
        v = rng.choice([-1.0, 1.0], size=n)
        values.append(float(v @ matvec(v)))
        if on_step:
            on_step(i + 1, samples)
    values = np.asarray(values)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(samples)) if samples > 1 else 0.0


def analyze(model, state, x, labels, loss_fn, top_k=3, iters=20, trace_samples=10, seed=0,
            gauss_newton=False, on_step=None) -> dict:
    """Eigenvalues and trace of the loss Hessian (or Gauss–Newton matrix) on one batch."""
    from ..engine.state import flatten
    flat = flatten(state)
    space = FlatSpace.of(flat, model.trainable_in(flat))

    def matvec(vec):
        hv = model.hvp(state, x, labels, loss_fn, space.unpack(vec), gauss_newton=gauss_newton)
        return space.pack(hv)

    rng = np.random.default_rng(seed)
    top = lanczos_top(matvec, space.size, top_k, iters, rng,
                      on_step and (lambda i, n: on_step("lanczos", i, n)))
    trace, err = hutchinson_trace(matvec, space.size, trace_samples, rng,
                                  on_step and (lambda i, n: on_step("trace", i, n)))
    return {"matrix": "gauss_newton" if gauss_newton else "hessian",
            "parameters": model.root.n_trainable(model.input_shape), "dimension": space.size,
            "batch_size": int(labels.shape[0]), "top_eigenvalues": [float(t) for t in top],
            "trace": trace, "trace_stderr": err, "lanczos_steps": iters,
            "trace_samples": trace_samples}


def analyze_checkpoint(checkpoint, top_k=3, batch=256, iters=20, trace_samples=10,
                       gauss_newton=False, on_step=None) -> dict:
    """``analyze`` on the first ``batch`` training images of a checkpoint's own data, in
    float64 (exact products; the checkpoint's weights are cast)."""
    from ..data import check_labels, prepare
    from ..engine.state import map_tree
    from ..ops.layout import to_engine
    from ..train.trained import load_trained
    tr = load_trained(checkpoint)
    cfg = tr.cfg
    data = prepare(cfg.data.model_copy(update={"train_limit": batch}), cfg.train.seed,
                   np.float64, stats=tr.stats, splits=("train",))
    check_labels(data, tr.model.output_shape, cfg.data.dataset)
    state = map_tree(tr.state, lambda a: a.astype(np.float64))
    x, y = to_engine(data.train.x[:batch]), data.train.y[:batch]
    return analyze(tr.model, state, x, y, cfg.train.loss, top_k, iters, trace_samples,
                   cfg.train.seed, gauss_newton, on_step)
