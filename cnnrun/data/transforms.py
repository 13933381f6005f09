"""Preprocessing (once per split) and seeded augmentation (per batch), on (N, C, H, W) arrays.

All of it is vectorised over the batch and the pixels: an affine distortion
is one inverse mapping of the output grid and one bilinear gather.
"""

from __future__ import annotations

import numpy as np


def preprocess(images: np.ndarray, cfg, stats, dtype) -> np.ndarray:
    """uint8 → float: scale, optional background mapping, normalise, pad, resize."""
    x = images.astype(dtype) * dtype.type(cfg.scale)
    if cfg.background is not None:  # LeCun 1998: background −0.1, foreground 1.175
        low, high = cfg.background
        x = x * dtype.type(high - low) + dtype.type(low)
    if stats is not None:
        mean, std = stats
        x = (x - mean.astype(dtype)[None, :, None, None]) / std.astype(dtype)[None, :, None, None]
    if cfg.pad:
        p = cfg.pad
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill_value(cfg, stats, dtype)[0])
    if cfg.resize is not None and tuple(cfg.resize) != x.shape[2:]:
        x = resize(x, tuple(cfg.resize))
    return np.ascontiguousarray(x)


def fill_value(cfg, stats, dtype) -> np.ndarray:
    """What a 0 pixel becomes after preprocessing, per channel (used for padding)."""
    v = np.zeros(1 if stats is None else len(stats[0]), dtype=np.float64)
    if cfg.background is not None:
        v += cfg.background[0]
    if stats is not None:
        v = (v - stats[0]) / stats[1]
    return v.astype(dtype)


def channel_stats(images: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std per channel, given in the config or computed on the training images."""
    norm = cfg.normalize
    if norm is None:
        return None
    if norm.mean is not None and norm.std is not None:
        return np.asarray(norm.mean, dtype=np.float64), np.asarray(norm.std, dtype=np.float64)
    x = images.astype(np.float64) * cfg.scale
    if cfg.background is not None:
        x = x * (cfg.background[1] - cfg.background[0]) + cfg.background[0]
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


def bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill) -> np.ndarray:
    """Sample (N, C, H, W) at per-sample coordinates rows/cols (N, OH, OW); outside → fill."""
    N, C, H, W = x.shape
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0).astype(x.dtype), (cols - c0).astype(x.dtype)
    flat = x.reshape(N, C, H * W)  # (N, C, H·W)
    out = np.zeros((N, C, *rows.shape[1:]), dtype=x.dtype)
    fill = np.asarray(fill, dtype=x.dtype).reshape(1, -1, 1, 1)
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                      (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        idx = (np.clip(r, 0, H - 1) * W + np.clip(c, 0, W - 1)).reshape(N, 1, -1)
        vals = np.take_along_axis(flat, np.broadcast_to(idx, (N, C, idx.shape[-1])), axis=2)
        vals = vals.reshape(out.shape)
        out += w[:, None] * np.where(inside[:, None], vals, fill)
    return out


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with pixel centres aligned (PyTorch's align_corners=False)."""
    N, _, H, W = x.shape
    OH, OW = size
    r = (np.arange(OH) + 0.5) * H / OH - 0.5
    c = (np.arange(OW) + 0.5) * W / OW - 0.5
    rows = np.broadcast_to(np.clip(r, 0, H - 1)[None, :, None], (N, OH, OW))
    cols = np.broadcast_to(np.clip(c, 0, W - 1)[None, None, :], (N, OH, OW))
    return bilinear(x, rows, cols, 0.0)


def affine(x: np.ndarray, cfg, rng: np.random.Generator, fill) -> np.ndarray:
    """Random rotation, translation, scaling, shearing and stretching about the centre."""
    N, _, H, W = x.shape
    rot = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation, N))
    shear = np.deg2rad(rng.uniform(-cfg.shear, cfg.shear, N))
    scale = rng.uniform(cfg.scale[0], cfg.scale[1], N)
    stretch = 1.0 + rng.uniform(-cfg.stretch, cfg.stretch, N)
    ty = rng.uniform(-cfg.translate, cfg.translate, N) * H
    tx = rng.uniform(-cfg.translate, cfg.translate, N) * W
    # Forward map A = R(rot) · Shear · diag(scale·stretch, scale/stretch); sample with A⁻¹.
    cos, sin = np.cos(rot), np.sin(rot)
    R = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    S = np.zeros((N, 2, 2))
    S[:, 0, 0], S[:, 0, 1], S[:, 1, 1] = 1.0, np.tan(shear), 1.0
    D = np.zeros((N, 2, 2))
    D[:, 0, 0], D[:, 1, 1] = scale / stretch, scale * stretch  # (row, col) axes
    Ainv = np.linalg.inv(R @ S @ D)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    gy, gx = np.meshgrid(np.arange(H) - cy, np.arange(W) - cx, indexing="ij")
    grid = np.stack([gy.ravel(), gx.ravel()])  # (2, H·W) output coordinates
    shifted = grid[None] - np.stack([ty, tx], -1)[:, :, None]  # (N, 2, H·W)
    src = Ainv @ shifted
    rows = (src[:, 0] + cy).reshape(N, H, W)
    cols = (src[:, 1] + cx).reshape(N, H, W)
    return bilinear(x, rows, cols, fill)


def random_crop(x: np.ndarray, padding: int, rng: np.random.Generator, fill) -> np.ndarray:
    """Pad by ``padding`` on every side, then crop back at a random offset per sample."""
    N, C, H, W = x.shape
    padded = np.empty((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    padded[...] = np.asarray(fill, dtype=x.dtype).reshape(1, -1, 1, 1)
    padded[:, :, padding:padding + H, padding:padding + W] = x
    oy = rng.integers(0, 2 * padding + 1, N)
    ox = rng.integers(0, 2 * padding + 1, N)
    rows = oy[:, None] + np.arange(H)  # (N, H)
    cols = ox[:, None] + np.arange(W)  # (N, W)
    nhwc = padded.transpose(0, 2, 3, 1)[np.arange(N)[:, None, None], rows[:, :, None],
                                        cols[:, None, :]]  # (N, H, W, C)
    return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))


def hflip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(x.shape[0]) < 0.5
    out = x.copy()
    out[flip] = x[flip][..., ::-1]
    return out


class ShareDraws:
    """A generator's draws for a whole batch of n samples, of which a share keeps its own,
    lo … hi−1: the share is then augmented exactly as those samples are in the whole batch.
    The transforms draw one value per sample and parameter, in a fixed order."""

    def __init__(self, rng, lo: int, hi: int, n: int):
        self.rng, self.lo, self.hi, self.n = rng, lo, hi, n

    def _own(self, values, size):
        assert size == self.hi - self.lo, "a transform draws one value per sample of its share"
        return values[self.lo:self.hi]

    def uniform(self, low, high, size):
        return self._own(self.rng.uniform(low, high, self.n), size)

    def integers(self, low, high, size):
        return self._own(self.rng.integers(low, high, self.n), size)

    def random(self, size):
        return self._own(self.rng.random(self.n), size)


def augment(x: np.ndarray, cfg, rng: np.random.Generator, fill) -> np.ndarray:
    if cfg.affine is not None:
        x = affine(x, cfg.affine, rng, fill)
    if cfg.random_crop_padding:
        x = random_crop(x, cfg.random_crop_padding, rng, fill)
    if cfg.hflip:
        x = hflip(x, rng)
    return x


def is_identity(cfg) -> bool:
    return cfg.affine is None and not cfg.random_crop_padding and not cfg.hflip


__all__ = ["ShareDraws", "preprocess", "channel_stats", "augment", "resize", "affine", "random_crop", "hflip",
           "fill_value", "is_identity"]
