"""Run an exported ONNX model in onnxruntime and compare it with cnnrun's own forward pass."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..ops.layout import to_engine, to_external


def _ort():
    try:
        import onnxruntime  # noqa: PLC0415 - optional extra
        return onnxruntime
    except ImportError as e:
        raise UserError("checking the export needs onnxruntime: pip install 'cnnrun[onnx]' "
                        "(or pass --no-check).") from e


def compare(model, state, onnx_bytes: bytes, batch: int = 2, seed: int = 0) -> dict:
    """Max relative difference |ORT − cnnrun| / max|cnnrun| on random float32 inputs."""
    ort = _ort()
    x = np.random.default_rng(seed).uniform(-1, 1, (batch, *model.input_shape)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": x})[0]
    ours, _ = model.forward(state, to_engine(x))
    ours = to_external(np.asarray(ours))
    scale = max(float(np.abs(ours).max()), 1e-12)
    return {"batch": batch, "max_abs_error": float(np.abs(theirs - ours).max()),
            "max_rel_error": float(np.abs(theirs - ours).max()) / scale,
            "onnxruntime": ort.__version__}
