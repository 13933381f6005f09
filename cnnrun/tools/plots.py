"""Pictures of a run, drawn with matplotlib (an optional extra) into PNG files.

Every function takes plain arrays or metric rows and a path, and returns the
path; none reads a run directory itself (``commands/look.py`` does that).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError

DPI = 100


def _plt():
    try:
        import matplotlib  # noqa: PLC0415 - optional extra
        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt  # noqa: PLC0415
        return plt
    except ImportError as e:
        raise UserError("pictures need matplotlib: pip install 'cnnrun[plot]'.") from e


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def curves(epochs: list[dict], path) -> Path:
    """Loss and accuracy against epoch, training and validation (or test)."""
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["epoch"] for r in epochs]
    for split, style in (("train", "-o"), ("val", "-s"), ("test", "--^")):
        for key, ax in ((f"{split}_loss", ax_loss), (f"{split}_accuracy", ax_acc)):
            ys = [r.get(key) for r in epochs]
            if any(v is not None for v in ys):
                ax.plot(x, [np.nan if v is None else v for v in ys], style, label=split, ms=4)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.1%}"))
    fig.suptitle("training curves")
    fig.tight_layout()
    return _save(fig, path)


def learning_rate(steps: list[dict], epochs: list[dict], path) -> Path:
    """The learning rate against the optimizer step (logged steps, plus each epoch's end)."""
    plt = _plt()
    points = sorted({(r["step"], r["lr"]) for r in steps + epochs if "lr" in r and "step" in r})
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p[0] for p in points], [p[1] for p in points], "-", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def confusion(matrix, classes: list[str], path, title: str = "confusion matrix") -> Path:
    """Heat map of counts (rows: true class, columns: predicted), counts written in."""
    plt = _plt()
    m = np.asarray(matrix)
    K = len(classes)
    size = max(4.0, 0.5 * K + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(K), classes, rotation=90 if K > 12 else 0)
    ax.set_yticks(range(K), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if K <= 20:
        for i in range(K):
            for j in range(K):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_title(f"{title}: {np.trace(m)}/{m.sum()} correct")
    fig.tight_layout()
    return _save(fig, path)


def image_grid(images, path, titles=None, cols: int | None = None, title: str = "",
               cmap="gray", symmetric: bool = False) -> Path:
    """A grid of (C, H, W) images; each is scaled to its own range (or ± its max)."""
    plt = _plt()
    n = len(images)
    cols = cols or min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = np.asarray(images[k], dtype=np.float64)
        ax.imshow(*_displayable(img, symmetric), cmap=cmap if img.shape[0] == 1 else None,
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _displayable(img, symmetric):
    """(C, H, W) → what imshow takes: (H, W) with limits, or (H, W, 3) in [0, 1]."""
    if symmetric:
        lim = np.abs(img).max() or 1.0
        low, high = -lim, lim
    else:
        low, high = img.min(), img.max()
    scaled = (img - low) / ((high - low) or 1.0)
    if img.shape[0] == 3:
        return (scaled.transpose(1, 2, 0),)
    return (scaled.mean(axis=0),)


def filters(weight, path, title: str = "first-layer filters") -> Path:
    """The first convolution's kernels (O, C, KH, KW): grey per input map, or colour for C = 3."""
    w = np.asarray(weight)
    if w.shape[1] == 3:
        images, titles = list(w), [str(o) for o in range(len(w))]
    else:  # one tile per (output, input) pair
        images = [w[o, c][None] for o in range(w.shape[0]) for c in range(w.shape[1])]
        titles = [f"{o}" if w.shape[1] == 1 else f"{o}←{c}" for o in range(w.shape[0])
                  for c in range(w.shape[1])]
    return image_grid(images, path, titles, cols=min(len(images), 8), title=title,
                      cmap="RdBu_r", symmetric=True)


def feature_maps(maps, path, title: str) -> Path:
    """One layer's activations (C, H, W) for one image, a tile per map."""
    m = np.asarray(maps)
    return image_grid([c[None] for c in m], path, [str(i) for i in range(len(m))],
                      cols=min(len(m), 8), title=title, cmap="viridis")
