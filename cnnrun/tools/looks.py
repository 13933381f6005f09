"""What ``plot``, ``embed`` and ``maximize`` compute from a run or a checkpoint: the pictures
of a run, a layer's features with their nearest training images, and the inputs that
excite a layer's units most. Each returns what it wrote; the CLI only prints it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def plot_run(run_dir: Path, out: Path | None = None) -> list[Path]:
    """Curves and learning rate, then the confusion matrix and first-layer filters."""
    from . import plots
    from ..train.runs import read_metrics, run_checkpoint
    epochs, steps = read_metrics(run_dir)
    if not epochs:
        raise UserError(f"{run_dir}: no epochs in metrics.jsonl (is this a run directory "
                        f"from 'cnnrun train', and did it finish an epoch?).")
    dest = out or run_dir / "plots"
    written = [plots.curves(epochs, dest / "curves.png"),
               plots.learning_rate(steps, epochs, dest / "lr.png")]
    ckpt = run_checkpoint(run_dir)
    if ckpt is not None:
        written += _checkpoint_pictures(ckpt, dest)
    return written


def _checkpoint_pictures(ckpt: Path, dest: Path) -> list[Path]:
    from . import plots
    from ..data import prepare
    from ..engine.state import flatten
    from ..train.evaluate import evaluate
    from ..train.trained import load_trained
    tr = load_trained(ckpt)
    data = prepare(tr.cfg.data, tr.cfg.train.seed, tr.cfg.train.dtype, stats=tr.stats,
                   splits=("test",))
    m = evaluate(tr.model, tr.state, data.test, tr.cfg.train.loss)
    out = [plots.confusion(m["confusion"], tr.classes, dest / "confusion.png",
                           f"{ckpt.stem} checkpoint, test split")]
    kernels = [(n, a) for n, a in flatten(tr.state).items()
               if n.endswith("weight") and getattr(a, "ndim", 0) == 4]
    if kernels:
        name, w = kernels[0]
        out.append(plots.filters(w, dest / "filters.png", f"first-layer filters ({name})"))
    return out


def embed(checkpoint: Path, layer: str, split: str = "test", out: Path | None = None,
          neighbours: int = 0, queries: int = 6, picture: Path | None = None) -> dict:
    """A layer's features for a split (.npy, labels beside), and each query's nearest
    training images in that space."""
    from ..data import prepare
    from ..train.trained import load_trained
    from .analysis import features, nearest
    if split not in ("test", "train"):
        raise UserError(f"--split {split}: expected 'test' or 'train'.")
    tr = load_trained(checkpoint)
    need = ("train", "test") if neighbours else (split,)
    data = prepare(tr.cfg.data, tr.cfg.train.seed, tr.cfg.train.dtype, stats=tr.stats,
                   splits=need)
    part = data.test if split == "test" else data.train
    feats = features(tr.model, tr.state, part.x, layer)
    dest = out or checkpoint.with_name(f"{checkpoint.stem}-{layer}-{split}.npy")
    np.save(dest, feats)
    np.save(dest.with_name(dest.stem + "-labels.npy"), part.y)
    result = {"features": str(dest), "shape": list(feats.shape), "layer": layer,
              "split": split}
    if neighbours:
        pool = features(tr.model, tr.state, data.train.x, layer)
        q = min(queries, len(part.y))
        extra = 1 if split == "train" else 0  # a training image is its own nearest
        idx, dist = nearest(feats[:q], pool, neighbours + extra)
        idx, dist = idx[:, extra:], dist[:, extra:]
        result["neighbours"] = [
            {"query": i, "label": tr.classes[part.y[i]],
             "nearest": [{"train_index": int(j), "label": tr.classes[data.train.y[j]],
                          "distance": float(d)} for j, d in zip(idx[i], dist[i])]}
            for i in range(q)]
        if picture:
            _neighbour_picture(part, data.train, idx, tr.classes, picture, layer)
            result["picture"] = str(picture)
    return result


def _neighbour_picture(queries, train, idx, classes, path, layer):
    from . import plots
    images, titles = [], []
    for i, row in enumerate(idx):
        images.append(queries.x[i])
        titles.append(f"query: {classes[queries.y[i]]}")
        for j in row:
            images.append(train.x[j])
            titles.append(classes[train.y[j]])
    plots.image_grid(images, path, titles, cols=idx.shape[1] + 1,
                     title=f"nearest training images in the space of {layer}")


def maximize_units(checkpoint: Path, layer: str, units: str | None = None, steps: int = 200,
                   lr: float = 0.05, l2: float = 1e-3, out: Path | None = None) -> dict:
    """A grid of the inputs that most excite each chosen unit of a layer (a PNG)."""
    from . import plots
    from ..train.trained import load_trained
    from .analysis import chain_to, maximize
    tr = load_trained(checkpoint)
    last = chain_to(tr.model, layer)[-1]
    n = last.layer.output_shape(last.in_shape)[0]
    try:
        chosen = list(range(min(n, 64))) if units is None else [int(u) for u in units.split(",")]
    except ValueError as e:
        raise UserError(f"--units {units}: expected numbers separated by commas.") from e
    images, titles = [], []
    for u in chosen:
        x, history = maximize(tr.model, tr.state, layer, u, steps, lr, l2)
        images.append(x)
        titles.append(f"{u}: {history[-1]:.2f}")
    dest = out or checkpoint.with_name(f"{checkpoint.stem}-{layer}-maximize.png")
    plots.image_grid(images, dest, titles, title=f"what excites each unit of {layer} "
                                                 f"(final mean activation)")
    return {"picture": str(dest), "units": len(chosen), "steps": steps}
