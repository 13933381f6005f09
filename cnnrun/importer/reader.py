"""Reading an ONNX file as hostile input: a size bound before parsing, protobuf errors as one
sentence, and external weights read only from plain files beside the model, whose sizes agree
with the tensors that name them (a path with '..' or a missing file is refused, not followed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..safe_io import MB, read_bytes
from .ir import ImportRefused

MODEL_LIMIT = 2048 * MB  # protobuf's own ceiling for one message
EXTERNAL_LIMIT = 64 * 1024 * MB


def onnx_module():
    try:
        import onnx  # noqa: PLC0415 - optional extra
        return onnx
    except ImportError as e:
        raise UserError("cnnrun import needs the onnx package: pip install 'cnnrun[onnx]'.") from e


def read_model(path: Path):
    """The ModelProto of ``path`` with any external weights loaded into it."""
    onnx = onnx_module()
    raw = read_bytes(path, "ONNX model", MODEL_LIMIT)
    try:
        proto = onnx.load_model_from_string(raw)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise UserError(f"{path}: not an ONNX model (the protobuf does not parse: "
                        f"{str(e) or type(e).__name__}). Is it truncated, or another format?") from e
    if not proto.HasField("graph") or not proto.graph.node:
        raise UserError(f"{path}: an ONNX file with no graph nodes; it holds no network.")
    _load_external(proto, path)
    return proto


def _load_external(proto, path: Path) -> None:
    from onnx import TensorProto  # noqa: PLC0415
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data  # noqa: PLC0415
    files: dict[str, bytes] = {}
    for tensor in proto.graph.initializer:
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        where = Path(info.location)
        if where.is_absolute() or ".." in where.parts or not info.location:
            raise UserError(f"{path}: weight '{tensor.name}' points to '{info.location}', "
                            f"outside the model's folder; external data must lie beside it.")
        if info.location not in files:
            files[info.location] = read_bytes(path.parent / where, "external weights",
                                              EXTERNAL_LIMIT)
        blob = files[info.location]
        itemsize = np.dtype(_np_dtype(tensor.data_type, tensor.name, path)).itemsize
        need = int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
        start = int(info.offset or 0)
        length = int(info.length) if info.length else need
        if length != need or start < 0 or start + length > len(blob):
            raise UserError(f"{path}: weight '{tensor.name}' needs {need} bytes at offset "
                            f"{start} of {info.location}, which holds {len(blob)}; the external "
                            f"data file is truncated or belongs to another model.")
        tensor.raw_data = blob[start:start + length]
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT


def _np_dtype(data_type: int, name: str, path: Path):
    from onnx.helper import tensor_dtype_to_np_dtype  # noqa: PLC0415
    try:
        return tensor_dtype_to_np_dtype(data_type)
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: weight '{name}' has an unknown element type "
                        f"({data_type}).") from e


def the_input(proto, source: str, input_shape: tuple[int, ...] | None):
    """(name, batch, per-sample shape) of the graph's one data input."""
    from onnx import TensorProto  # noqa: PLC0415
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ImportRefused(f"{source}: the graph has {len(inputs)} data inputs ({names}); a "
                            f"cnnrun network takes one image batch.")
    x = inputs[0]
    kind = x.type.tensor_type
    if kind.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
        raise ImportRefused(f"{source}: input '{x.name}' holds element type {kind.elem_type}, "
                            f"not floats (token ids? a sequence model?); cnnrun networks take "
                            f"images or feature vectors.")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim]
    if len(dims) < 2:
        raise ImportRefused(f"{source}: input '{x.name}' has rank {len(dims)}; cnnrun needs a "
                            f"batch axis and at least one more, (N, C, H, W) for images.")
    batch = dims[0] if dims[0] else 1
    if input_shape is not None:
        if len(input_shape) != len(dims) - 1:
            raise UserError(f"--input-shape {','.join(map(str, input_shape))}: the graph's input "
                            f"'{x.name}' has {len(dims) - 1} axes besides the batch.")
        return x.name, batch, tuple(input_shape)
    if not all(dims[1:]):
        raise UserError(f"{source}: input '{x.name}' has symbolic sizes {dims[1:]}; give the "
                        f"per-sample shape with --input-shape C,H,W.")
    return x.name, batch, tuple(dims[1:])


def the_output(proto, source: str) -> str:
    outputs = list(proto.graph.output)
    if len(outputs) != 1:
        raise ImportRefused(f"{source}: the graph has {len(outputs)} outputs "
                            f"({', '.join(o.name for o in outputs)}); a cnnrun network has one.")
    return outputs[0].name
