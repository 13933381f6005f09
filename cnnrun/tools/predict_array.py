"""``cnnrun predict CHECKPOINT X.npy``: a float array taken as the network's input as it is
(no preprocessing), and the network's final outputs per sample: what users with NumPy data,
and the checks of an imported network against another runtime, need."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..train.trained import load_trained


def load_array(path: Path, input_shape: tuple) -> np.ndarray:
    """(N, C, H, W) or (C, H, W) from a .npy file, checked before it is read into memory."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (or not a regular file); give a .npy array "
                        f"of shape (N, {', '.join(map(str, input_shape))}).")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only, for now
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy array ({e}); save one with "
                        f"numpy.save(path, array).") from e
    if arr.dtype.kind not in "fiu":
        raise UserError(f"{path}: holds {arr.dtype} values; the network takes numbers.")
    if tuple(arr.shape) == tuple(input_shape):
        arr = arr[None]  # one sample
    if arr.ndim != len(input_shape) + 1 or tuple(arr.shape[1:]) != tuple(input_shape):
        raise UserError(f"{path}: shape {tuple(arr.shape)} does not fit the network's input "
                        f"{tuple(input_shape)}; give (N, {', '.join(map(str, input_shape))}) "
                        f"or one sample of {tuple(input_shape)}.")
    return arr


def predict_array(checkpoint: Path, path: Path, top_k: int = 3, config=None) -> dict:
    """The network's outputs for every sample of the array, and each sample's top classes
    ranked by output."""
    tr = load_trained(checkpoint, config)
    arr = load_array(Path(path), tr.model.input_shape)
    x = np.ascontiguousarray(arr, dtype=np.dtype(tr.cfg.train.dtype))
    outputs = tr.model.predict(tr.state, x).reshape(len(x), -1)  # (N, …) -> (N, K)
    top = []
    for i, row in enumerate(outputs):
        order = np.argsort(-row, kind="stable")[:top_k]
        top.append({"image": f"{path}[{i}]", "top": [
            {"class": tr.classes[k] if k < len(tr.classes) else str(k), "index": int(k),
             "output": float(row[k])} for k in order]})
    return {"input": str(path), "shape": list(x.shape), "outputs": outputs.tolist(),
            "predictions": top}
