"""``cnnrun import``: an ONNX network written as a readable config and a checkpoint, then run
beside onnxruntime on the same inputs, so a wrong import is caught where it is made.

The config is validated and built exactly as ``train`` would build it, and the weights are
checked name by name against the state that config declares, before anything is written.
Both files are written atomically; existing ones are kept unless ``--force``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml

from ..errors import RunFailed, UserError
from ..importer.convert import Imported, convert
from ..importer.render import config_text
from ..importer.tree import count

AGREEMENT = 1e-4  # largest relative difference accepted between onnxruntime and cnnrun


def import_onnx(model: Path, out_dir: Path | None = None, name: str | None = None,
                check: bool = True, input_shape: tuple[int, ...] | None = None,
                force: bool = False) -> dict:
    from ..config.schema import RunConfig
    from ..engine.model import Model
    from ..engine.state import unflatten
    from ..train import checkpoint
    model = Path(model)
    name = name or re.sub(r"[^0-9A-Za-z_.-]+", "_", model.stem).strip("._") or "imported"
    if not re.fullmatch(r"[0-9A-Za-z_][0-9A-Za-z_.-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only.")
    out_dir = Path(out_dir) if out_dir is not None else Path(".")
    yaml_path, ckpt_path = out_dir / f"{name}.yaml", out_dir / f"{name}.safetensors"
    for p in (yaml_path, ckpt_path):
        if p.exists() and not force:
            raise UserError(f"{p} exists; pass --force to replace it, or choose -o/--name.")
    imp = convert(model, input_shape)
    text = config_text(imp, name, model)
    cfg = RunConfig.model_validate(yaml.safe_load(text))
    net = Model(cfg.model.layers, cfg.model.input_shape)
    net.check_fits(np.dtype(np.float32).itemsize)
    flat = _checked(imp, {**net.param_shapes(), **net.buffer_shapes()}, model)
    state = unflatten(flat)
    result = {"config": str(yaml_path), "checkpoint": str(ckpt_path), "opset": imp.opset,
              "layers": count(imp.layers), "parameters": net.n_params(),
              "input_shape": list(imp.input_shape)}
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(yaml_path, text)
    checkpoint.save(ckpt_path, flat, {},
                    {"config": text, "imported_from": model.name, "epoch": 0,
                     **({"classes": imp.classes} if imp.classes and
                        [len(imp.classes)] == list(net.output_shape) else {})})
    if check:
        from ..export.verify import compare_file
        r = compare_file(net, state, model, imp.input_name, imp.batch)
        result.update(runtime=r["runtime"], max_rel_error=r["max_rel_error"],
                      max_abs_error=r["max_abs_error"], batch=r["batch"])
        if not r["max_rel_error"] <= AGREEMENT:
            raise RunFailed(f"{model}: cnnrun's output differs from {r['runtime']}'s by "
                            f"{r['max_rel_error']:.1e} (relative; wrote {yaml_path} and "
                            f"{ckpt_path} to inspect). This is a bug in the import; please "
                            f"report it with the model.")
    return result


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 3,224,224`` as a tuple of positive sizes."""
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1 or max(shape) > 1 << 20:
        raise UserError(f"--input-shape {text!r}: give positive sizes such as 3,224,224.")
    return shape


def _checked(imp: Imported, shapes: dict, model: Path) -> dict:
    """The imported weights as float32, each name and shape the one the config declares."""
    missing = sorted(set(shapes) - set(imp.weights))
    extra = sorted(set(imp.weights) - set(shapes))
    if missing or extra:
        raise RunFailed(f"{model}: the imported weights do not match the config (missing "
                        f"{missing[:5]}, unexpected {extra[:5]}); this is a bug in the import.")
    for key, arr in imp.weights.items():
        if tuple(arr.shape) != tuple(shapes[key]):
            raise RunFailed(f"{model}: weight {key} has shape {arr.shape}, the config "
                            f"declares {shapes[key]}; this is a bug in the import.")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in imp.weights.items()}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
