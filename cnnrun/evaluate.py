"""Metrics of a model on a prepared split: loss, top-1, top-5, per-class accuracy, confusion."""

from __future__ import annotations

import numpy as np

from .backend import get_array_module, to_device, to_numpy
from .layout import to_engine


def predict_logits(model, state, x: np.ndarray, batch_size: int = 500, xp=np):
    """Network outputs (N, K) in evaluation mode, batch by batch."""
    outs = []
    for i in range(0, len(x), batch_size):
        y, _ = model.forward(state, to_engine(to_device(x[i:i + batch_size], xp)))
        outs.append(to_numpy(y).T)  # (K, n) -> (n, K)
    return np.concatenate(outs) if outs else np.zeros((0, model.output_shape[0]))


def metrics(logits: np.ndarray, labels: np.ndarray, loss_fn, classes) -> dict:
    K = logits.shape[1]
    loss, _ = loss_fn.value_and_grad(logits.T.astype(np.float64), labels)
    pred = logits.argmax(axis=1)
    top5 = np.argsort(-logits, axis=1)[:, :min(5, K)]
    confusion = np.bincount(labels * K + pred, minlength=K * K).reshape(K, K)  # (true, predicted)
    counts = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), counts, out=np.zeros(K), where=counts > 0)
    return {
        "loss": float(loss if loss_fn.reduction == "mean" else loss / max(len(labels), 1)),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "top5": float((top5 == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0,
        "per_class": {str(c): float(a) for c, a in zip(classes, per_class)},
        "confusion": confusion.tolist(),
        "count": int(len(labels)),
    }


def evaluate(model, state, data, loss_fn, batch_size: int = 500, xp=np) -> dict:
    return metrics(predict_logits(model, state, data.x, batch_size, xp), data.y, loss_fn,
                   data.classes)


__all__ = ["evaluate", "metrics", "predict_logits", "get_array_module"]
