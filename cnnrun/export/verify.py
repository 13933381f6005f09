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
    return _compare(model, state, onnx_bytes, "input", batch, seed)


def compare_file(model, state, path, input_name: str, batch: int | None, seed: int = 0) -> dict:
    """The same for a file on disk (its external weights are read beside it); ``batch``: the
    graph's fixed batch size, or None for a symbolic one."""
    return _compare(model, state, str(path), input_name, batch or 2, seed)


def _compare(model, state, source, input_name: str, batch: int, seed: int) -> dict:
    ort = _ort()
    x = np.random.default_rng(seed).uniform(-1, 1, (batch, *model.input_shape)).astype(np.float32)
    theirs, runtime = _run_theirs(ort, source, input_name, x)
    ours, _ = model.forward(state, to_engine(x))
    ours = to_external(np.asarray(ours))
    theirs = np.asarray(theirs, dtype=np.float64).reshape(ours.shape)
    scale = max(float(np.abs(ours).max()), 1e-12)
    return {"batch": batch, "max_abs_error": float(np.abs(theirs - ours).max()),
            "max_rel_error": float(np.abs(theirs - ours).max()) / scale,
            "onnxruntime": ort.__version__, "runtime": runtime}


def _run_theirs(ort, source, input_name: str, x):
    """onnxruntime's output; for opsets it no longer implements (before 7), onnx's own
    reference evaluator's, which keeps every opset."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        return session.run(None, {input_name: x})[0], f"onnxruntime {ort.__version__}"
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
    try:
        import onnx  # noqa: PLC0415
        from onnx.reference import ReferenceEvaluator  # noqa: PLC0415
        proto = onnx.load_model_from_string(source) if isinstance(source, bytes) else \
            onnx.load(source)
        return ReferenceEvaluator(proto).run(None, {input_name: x})[0], \
            f"onnx {onnx.__version__} reference evaluator"
    except Exception as e:  # noqa: BLE001
        raise UserError(f"neither onnxruntime ({first}) nor onnx's reference evaluator "
                        f"({type(e).__name__}) can run this model; pass --no-check to skip "
                        f"the comparison.") from e
