"""``cnnrun export``: a checkpoint written as an ONNX graph, then run in onnxruntime beside
cnnrun on the same inputs, so a wrong export is caught where it is made."""

from __future__ import annotations

from pathlib import Path

from ..errors import RunFailed, UserError
from ..train.trained import load_trained

AGREEMENT = 1e-4  # largest relative difference accepted between onnxruntime and cnnrun


def export_checkpoint(checkpoint: Path, fmt: str = "onnx", out: Path | None = None,
                      opset: int = 17, check: bool = True, config: Path | None = None) -> dict:
    from ..export.metadata import metadata_props
    from ..export.onnx import export_onnx
    if fmt != "onnx":
        raise UserError(f"--format {fmt}: the only export format is 'onnx'.")
    if out is not None and Path(out).is_dir():
        raise UserError(f"-o {out}: a directory; give the file to write, e.g. {Path(out) / 'model.onnx'}.")
    tr = load_trained(checkpoint, config)
    norm = tr.cfg.data.preprocess.normalize
    stats = tr.stats if tr.stats is not None or norm is None or norm.mean is None else \
        (norm.mean, norm.std)  # a weights-only file with --config: the config's numbers
    props = metadata_props(tr.model.input_shape, tr.cfg.data.preprocess, stats, tr.classes)
    path = export_onnx(tr.model, tr.state, out or checkpoint.with_suffix(".onnx"), opset,
                       tr.cfg.name, props)
    result = {"path": str(path), "megabytes": path.stat().st_size / 1e6, "opset": opset}
    if check:
        from ..export.verify import compare
        r = compare(tr.model, tr.state, path.read_bytes())
        result.update(onnxruntime=r["onnxruntime"], max_rel_error=r["max_rel_error"],
                      batch=r["batch"])
        if r["max_rel_error"] > AGREEMENT:
            raise RunFailed(f"{path}: onnxruntime's output differs from cnnrun's by "
                            f"{r['max_rel_error']:.1e} (relative); this is a bug in the "
                            f"export, please report it.")
    return result
