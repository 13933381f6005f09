"""Datasets, preprocessing, augmentation and seeded batching.

Random streams are pure functions of (seed, stream, position): the shuffle
of epoch e is ``default_rng([seed, SHUFFLE, e])`` and the augmentation of
batch b is ``default_rng([seed, AUGMENT, e, b])``. Resuming mid-epoch
therefore needs only the position, and reproduces the data order exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import transforms
from ..errors import ConfigValueError, UserError
from ..safe_io import memory_shortfall
from .sources import Split, load_split

STREAM_INIT, STREAM_SPLIT, STREAM_SHUFFLE, STREAM_AUGMENT, STREAM_DROPOUT, STREAM_CURVATURE = range(6)


@dataclass
class Prepared:
    """A preprocessed split: float images (N, C, H, W) and labels."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    names: np.ndarray | None = None  # each image's file (image folders)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DataBundle:
    train: Prepared
    val: Prepared | None
    test: Prepared
    fill: np.ndarray  # what a blank pixel becomes, per channel
    stats: tuple | None


def prepare(cfg, seed: int, dtype=np.float32, stats=None, splits=("train", "test")) -> DataBundle:
    """Load, split off validation, compute statistics on training data only, preprocess.

    With ``stats`` given (from a checkpoint) and only 'test' asked for, the
    training files are not read at all."""
    dtype = np.dtype(dtype)
    train = val = None
    if "train" in splits or stats is None and cfg.preprocess.normalize is not None:
        train = load_split(cfg, "train")
        n_val = _val_count(cfg.val_split, len(train.labels))
        if n_val:
            order = np.random.default_rng([seed, STREAM_SPLIT]).permutation(len(train.labels))
            val, train = train.take(np.sort(order[:n_val])), train.take(np.sort(order[n_val:]))
        if stats is None:
            stats = transforms.channel_stats(train.images, cfg.preprocess)

    _check_memory(cfg, [s for s in (train, val) if s is not None], dtype)

    def prep(split: Split | None):
        if split is None:
            return None
        return Prepared(transforms.preprocess(split.images, cfg.preprocess, stats, dtype),
                        split.labels, split.classes, split.names)

    keep_train = "train" in splits
    test = load_split(cfg, "test") if "test" in splits else None
    return DataBundle(prep(train) if keep_train else None, prep(val) if keep_train else None,
                      prep(test), transforms.fill_value(cfg.preprocess, stats, dtype), stats)


def _check_memory(cfg, splits, dtype) -> None:
    """Preprocessed images must fit in memory before they are made (resize: [1e6, 1e6])."""
    if not splits or splits[0].images.ndim != 4:  # padding and resizing apply to maps only
        return
    C, H, W = splits[0].images.shape[1:]
    pre = cfg.preprocess
    H, W = pre.resize if pre.resize is not None else (H + 2 * pre.pad, W + 2 * pre.pad)
    short = memory_shortfall(sum(len(s.labels) for s in splits) * C * H * W *
                             max(dtype.itemsize, 8))
    if short:
        key = ("data", "preprocess", "resize" if pre.resize is not None else "pad")
        raise ConfigValueError(key, f"data.preprocess: the images at {H}×{W} {short}.")


def check_input_shape(bundle: "DataBundle", input_shape, dataset: str) -> None:
    """The data, preprocessed, has the per-sample shape the model was declared for."""
    part = bundle.train if bundle.train is not None else bundle.test
    if part is not None and len(part.y) and tuple(part.x.shape[1:]) != tuple(input_shape):
        raise ConfigValueError(("model", "input_shape"),
                               f"model.input_shape is {tuple(input_shape)}, but the {dataset} "
                               f"data gives {tuple(part.x.shape[1:])} per sample after "
                               f"preprocessing; make them agree (input_shape, or "
                               f"data.preprocess resize/pad, or the data itself).")


def _val_count(spec, n: int) -> int:
    """Validation images taken from n training images; at least one must be left to train."""
    n_val = int(round(spec * n)) if isinstance(spec, float) else int(spec)
    if n_val >= n:
        raise ConfigValueError(("data", "val_split"),
                               f"data.val_split: {spec} sets aside {n_val} of the {n} training "
                               f"images for validation, leaving none to train on. Use fewer "
                               f"(at most {n - 1}), or a fraction below 1 − 1/{n}.")
    return n_val


def check_labels(bundle: "DataBundle", output_shape: tuple, dataset: str) -> None:
    """The network gives one score per class, and every label names one of them; the first
    that does not is an error."""
    if len(output_shape) != 1:
        raise UserError(f"the network gives {tuple(output_shape)} per sample, maps rather than "
                        f"one score per class, so it has no loss to train, evaluate or take "
                        f"the Hessian of. End it with a global pool and a linear layer (or use "
                        f"cnnrun predict, which prints any network's outputs).")
    outputs = output_shape[0]
    for name in ("train", "val", "test"):
        part = getattr(bundle, name)
        if part is None or not len(part.y):
            continue
        bad = np.flatnonzero((part.y < 0) | (part.y >= outputs))
        if bad.size:
            i = int(bad[0])
            raise UserError(f"{dataset} data, {name} split: label {int(part.y[i])} at index {i} "
                            f"is outside 0…{outputs - 1}, the network's {outputs} outputs. Check "
                            f"the label file, or give the last layer as many outputs as there "
                            f"are classes.")


def batches(data: Prepared, batch_size: int, seed: int, epoch: int, start: int = 0,
            augment_cfg=None, fill=None, shuffle: bool = True, share=None):
    """Yield (batch index, x, y) of one epoch, from batch ``start`` on.

    ``share``: batch length → (lo, hi), the samples this process computes (an MPI rank's
    share). x holds those samples only, augmented as they would be in the whole batch
    (``transforms.ShareDraws``); y is the whole batch's labels, which the loss reads."""
    n = len(data)
    order = np.random.default_rng([seed, STREAM_SHUFFLE, epoch]).permutation(n) if shuffle \
        else np.arange(n)
    for b in range(start, num_batches(n, batch_size)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        lo, hi = share(len(idx)) if share else (0, len(idx))
        x = data.x[idx[lo:hi]]
        if augment_cfg is not None and not transforms.is_identity(augment_cfg):
            rng = np.random.default_rng([seed, STREAM_AUGMENT, epoch, b])
            x = transforms.augment(x, augment_cfg, transforms.ShareDraws(rng, lo, hi, len(idx)),
                                   fill)
        yield b, x, data.y[idx]


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


__all__ = ["DataBundle", "Prepared", "prepare", "batches", "check_labels", "num_batches",
           "STREAM_INIT",
           "STREAM_DROPOUT", "STREAM_CURVATURE"]
