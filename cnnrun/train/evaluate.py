"""Metrics of a model on a prepared split: loss, top-1, top-5, per-class accuracy, confusion."""

from __future__ import annotations

import numpy as np

from ..ops.backend import get_array_module, to_device, to_numpy
from ..errors import UserError
from ..ops.layout import to_engine
from ..ops.softmax import softmax


def predict_logits(model, state, x: np.ndarray, batch_size: int = 500, xp=np):
    """Network outputs (N, K) in evaluation mode, batch by batch."""
    outs = []
    for i in range(0, len(x), batch_size):
        y, _ = model.forward(state, to_engine(to_device(x[i:i + batch_size], xp)),
                             keep_caches=False)
        outs.append(to_numpy(y).T)  # (K, n) -> (n, K)
    return np.concatenate(outs) if outs else np.zeros((0, model.output_shape[0]))


def metric_sums(logits: np.ndarray, labels: np.ndarray, loss_fn, K: int) -> np.ndarray:
    """What the metrics are made of, as sums that add up over parts of a split (MPI ranks):
    [loss summed over samples, correct, correct in the top 5, count, confusion (K·K)]."""
    n = len(labels)
    out = np.zeros(4 + K * K)
    if n == 0:
        return out
    loss, _ = loss_fn.value_and_grad(logits.T.astype(np.float64), labels)
    pred = logits.argmax(axis=1)
    top5 = np.argsort(-logits, axis=1)[:, :min(5, K)]
    out[0] = float(loss) * n if loss_fn.reduction == "mean" else float(loss)
    out[1], out[2], out[3] = (pred == labels).sum(), (top5 == labels[:, None]).any(axis=1).sum(), n
    out[4:] = np.bincount(labels * K + pred, minlength=K * K)  # (true, predicted), flattened
    return out


def metrics_from_sums(sums: np.ndarray, K: int, classes) -> dict:
    loss, correct, top5, n = sums[:4]
    confusion = sums[4:].reshape(K, K).astype(np.int64)  # (true, predicted)
    counts = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), counts, out=np.zeros(K), where=counts > 0)
    return {"loss": float(loss / max(n, 1)), "accuracy": float(correct / n) if n else 0.0,
            "top5": float(top5 / n) if n else 0.0,
            "per_class": {str(c): float(a) for c, a in zip(classes, per_class)},
            "confusion": confusion.tolist(), "count": int(n)}


def metrics(logits: np.ndarray, labels: np.ndarray, loss_fn, classes) -> dict:
    K = logits.shape[1]
    return metrics_from_sums(metric_sums(logits, labels, loss_fn, K), K, classes)


def evaluate(model, state, data, loss_fn, batch_size: int = 500, xp=np, world=None) -> dict:
    """Metrics of a split; under MPI each rank scores its contiguous part and the sums are
    added, so the result is one process's (counts exactly, the loss to rounding)."""
    lo, hi = world.share(len(data)) if world is not None else (0, len(data))
    logits = predict_logits(model, state, data.x[lo:hi], batch_size, xp)
    K = model.output_shape[0]
    sums = metric_sums(logits, data.y[lo:hi], loss_fn, K)
    if world is not None:
        sums = world.allreduce(sums)
    return metrics_from_sums(sums, K, data.classes)


__all__ = ["evaluate", "metrics", "predict_logits", "get_array_module"]


def averaged_logits(members, x: np.ndarray, crops: int = 1, crop_pad: int = 0, fill=None,
                    batch_size: int = 500) -> np.ndarray:
    """Outputs (N, K) averaged over several trained models and/or ten crops.

    With a cross-entropy loss the average is taken over probabilities (Krizhevsky
    et al. 2012), and its log is returned, so metrics() sees a proper distribution;
    otherwise (squared error) the raw outputs are averaged."""
    if crops == 10:
        if crop_pad:
            pad = ((0, 0), (0, 0), (crop_pad, crop_pad), (crop_pad, crop_pad))
            x = np.pad(x, pad) if fill is None else _pad_fill(x, crop_pad, fill)
        views = ten_crops(x, members[0].model.input_shape[1:])
    else:
        views = x[None]
    probs = members[0].cfg.train.loss.type == "cross_entropy"
    total = None
    for m in members:
        for v in views:
            out = predict_logits(m.model, m.state, np.ascontiguousarray(v), batch_size)
            out = softmax(out.astype(np.float64), axis=1) if probs else out.astype(np.float64)
            total = out if total is None else total + out
    mean = total / (len(members) * len(views))
    return np.log(np.maximum(mean, 1e-300)) if probs else mean


def _pad_fill(x, p, fill):
    """Pad H and W by p with each channel's background value (what a 0 pixel became)."""
    N, C, H, W = x.shape
    out = np.empty((N, C, H + 2 * p, W + 2 * p), dtype=x.dtype)
    out[...] = np.asarray(fill, dtype=x.dtype).reshape(1, -1, 1, 1)
    out[:, :, p:p + H, p:p + W] = x
    return out


def ten_crops(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(10, N, C, h, w): four corners and the centre, then the same of the mirror image."""
    N, C, H, W = x.shape
    h, w = size
    if h > H or w > W:
        raise UserError(f"--crops 10: the images are {H}×{W}, smaller than the network's "
                        f"{h}×{w} input.")
    if (h, w) == (H, W):
        raise UserError(f"--crops 10: the images are already {H}×{W}, the network's input size, "
                        f"so there is nothing to crop; pad them first with --crop-pad N "
                        f"(e.g. --crop-pad 4), or evaluate without --crops.")
    corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]
    crops = [x[:, :, r:r + h, c:c + w] for r, c in corners]
    crops += [c[..., ::-1] for c in crops]
    return np.stack(crops)
