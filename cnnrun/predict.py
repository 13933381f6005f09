"""``cnnrun predict``: image files → the model's input → top-k classes with probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import transforms
from .data.sources import load_image
from .errors import UserError
from .evaluate import predict_logits
from .inference import load_trained


def predict_files(checkpoint, paths, top_k: int = 3) -> list[dict]:
    try:
        from PIL import Image
    except ImportError as e:
        raise UserError("predict needs Pillow: pip install 'cnnrun[images]'.") from e
    tr = load_trained(checkpoint)
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
    logits = predict_logits(tr.model, tr.state, x)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = []
    for p, row in zip(paths, probs):
        order = np.argsort(-row)[:top_k]
        out.append({"image": str(p), "top": [{"class": tr.classes[k], "index": int(k),
                                              "probability": float(row[k])} for k in order]})
    return out


def _fit(x, hw):
    return x if x.shape[2:] == hw else transforms.resize(x, hw)
