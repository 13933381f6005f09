"""``cnnrun export`` and ``cnnrun schema``: the model and the config format, for other tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cli import app, run_guarded


@app.command()
def export(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
           fmt: str = typer.Option("onnx", "--format", help="onnx"),
           out: Optional[Path] = typer.Option(None, "-o", "--out",
                                              help="output file (default: beside the checkpoint)"),
           opset: int = typer.Option(17, "--opset", help="ONNX opset version"),
           check: bool = typer.Option(True, "--check/--no-check",
                                      help="run the file in onnxruntime against cnnrun")):
    """Write a trained model as an ONNX graph, checked by onnx.checker and onnxruntime."""
    def body():
        from ..errors import RunFailed, UserError
        from ..export.onnx import export_onnx
        from ..inference import load_trained
        if fmt != "onnx":
            raise UserError(f"--format {fmt}: the only export format is 'onnx'.")
        tr = load_trained(checkpoint)
        path = export_onnx(tr.model, tr.state, out or checkpoint.with_suffix(".onnx"), opset,
                           tr.cfg.name)
        line = f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {opset})"
        if check:
            from ..export.verify import compare
            r = compare(tr.model, tr.state, path.read_bytes())
            line += (f"; onnxruntime {r['onnxruntime']} agrees to {r['max_rel_error']:.1e} "
                     f"(relative, batch {r['batch']})")
            if r["max_rel_error"] > 1e-4:
                raise RunFailed(f"{path}: onnxruntime's output differs from cnnrun's by "
                                f"{r['max_rel_error']:.1e} (relative); this is a bug in the "
                                f"export, please report it.")
        typer.echo(line)
    run_guarded(body)


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "-o", "--out", help="file (default: stdout)")):
    """The JSON Schema of config files, for YAML editors' completion and checking."""
    def body():
        from ..config.jsonschema import config_schema
        text = json.dumps(config_schema(), indent=2)
        if out:
            out.write_text(text + "\n", encoding="utf-8")
        else:
            typer.echo(text)
    run_guarded(body)
