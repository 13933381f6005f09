"""``cnnrun predict``: image files → the model's input → top-k classes with probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import transforms
from ..data.sources import load_image
from ..errors import UserError
from ..ops.softmax import softmax
from ..train.evaluate import predict_logits
from ..train.trained import load_trained


def load_inputs(tr, paths) -> np.ndarray:
    """Image files → the network's preprocessed input (N, C, H, W)."""
    try:
        from PIL import Image
    except ImportError as e:
        raise UserError("predict needs Pillow: pip install 'cnnrun[images]'.") from e
    C, H, W = tr.cfg.model.input_shape
    pre = tr.cfg.data.preprocess
    raw = []
    for p in map(Path, paths):
        img = load_image(p, Image)
        if img.shape[0] != C:  # grey ↔ colour to match the network
            img = img.mean(axis=0, keepdims=True).astype(np.uint8) if C == 1 else np.repeat(img, C, 0)
        raw.append(img)
    x = np.concatenate([_fit(transforms.preprocess(im[None], pre, tr.stats,
                                                   np.dtype(tr.cfg.train.dtype)), (H, W))
                        for im in raw])
    return x


def predict_files(checkpoint, paths, top_k: int = 3, explain_dir=None, config=None) -> list[dict]:
    """Top-k classes per image; with explain_dir, also each layer's feature-map PNGs."""
    tr = load_trained(checkpoint, config)
    x = load_inputs(tr, paths)
    logits = predict_logits(tr.model, tr.state, x)
    probs = softmax(logits, axis=1)
    out = []
    for p, row, xi in zip(paths, probs, x):
        order = np.argsort(-row)[:top_k]
        out.append({"image": str(p), "top": [{"class": tr.classes[k], "index": int(k),
                                              "probability": float(row[k])} for k in order],
                    "unlike_training": unlike_training(xi) if tr.stats is not None else None})
    if explain_dir is not None:
        for r, pictures in zip(out, explain(tr, x, paths, explain_dir)):
            r["feature_maps"] = [str(p) for p in pictures]
    return out


def unlike_training(x: np.ndarray) -> dict | None:
    """How far one preprocessed image (C, H, W) is from the training images' pixels, which
    normalisation brought to mean 0 and standard deviation 1: None when it is near, else its
    mean and standard deviation. An inverted digit or a photograph given to an MNIST network
    averages more than one training standard deviation away, or varies three times more or
    less; its answer is confident anyway, so the user is told."""
    mean, std = float(x.mean()), float(x.std())
    if abs(mean) <= 1.0 and 1 / 3 <= std <= 3.0:
        return None
    return {"mean_in_training_stds": round(mean, 2), "std_ratio": round(std, 2)}


def unlike_warning(results: list[dict]) -> str | None:
    odd = [r for r in results if r.get("unlike_training")]
    if not odd:
        return None
    u = odd[0]["unlike_training"]
    return (f"warning: {len(odd)} of {len(results)} images (first: {odd[0]['image']}) are unlike "
            f"the training images: their pixels average {u['mean_in_training_stds']:+.2f} "
            f"training standard deviations from the training mean, and vary "
            f"{u['std_ratio']:.2f}× as much. The network answers them with confidence anyway; "
            f"check that they are prepared like the training data (inverted? another kind of "
            f"image?).")


def _fit(x, hw):
    return x if x.shape[2:] == hw else transforms.resize(x, hw)


def explain(tr, x, paths, out_dir) -> list[list[Path]]:
    """Per image, a PNG of every top-level layer's feature maps (the layers with maps)."""
    from . import plots
    from .analysis import forward_to, chain_to
    from ..ops.layout import to_engine, to_external
    children = tr.model.root.child_inputs(tr.model.input_shape)
    steps = chain_to(tr.model, children[-1][0])  # every top-level layer, in order
    written = []
    for path, xi in zip(map(Path, paths), x):
        h, pictures = to_engine(xi[None]), []
        for i, step in enumerate(steps):
            h, _ = forward_to([step], tr.state, h)
            if h.ndim == 4:  # (C, H, W, 1): maps worth drawing
                name = step.name
                pictures.append(plots.feature_maps(
                    to_external(h)[0], Path(out_dir) / f"{path.stem}-{i:02d}-{name}.png",
                    f"{path.name}: {name} ({step.layer.type}), {h.shape[0]} maps"))
        written.append(pictures)
    return written
