"""``cnnrun export``, ``cnnrun import`` and ``cnnrun schema``: models and the config format, to
and from other tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import command


@command()
def export(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
           fmt: str = typer.Option("onnx", "--format", help="onnx"),
           out: Optional[Path] = typer.Option(None, "-o", "--out",
                                              help="output file (default: beside the checkpoint)"),
           opset: int = typer.Option(17, "--opset", help="ONNX opset version"),
           check: bool = typer.Option(True, "--check/--no-check",
                                      help="run the file in onnxruntime against cnnrun"),
           config: Optional[Path] = typer.Option(
               None, "--config", help="build the network from this config (weights-only file)")):
    """Write a trained model as an ONNX graph, checked by onnx.checker and onnxruntime."""
    from ..tools.onnx_export import export_checkpoint
    r = export_checkpoint(checkpoint, fmt, out, opset, check, config)
    line = f"wrote {r['path']} ({r['megabytes']:.1f} MB, opset {opset})"
    if check:
        line += (f"; onnxruntime {r['onnxruntime']} agrees to {r['max_rel_error']:.1e} "
                 f"(relative, batch {r['batch']})")
    typer.echo(line)


@command("import")
def import_model(model: Path = typer.Argument(..., help="an .onnx file"),
                 out: Path = typer.Option(Path("."), "-o", "--out",
                                          help="folder for NAME.yaml and NAME.safetensors"),
                 name: Optional[str] = typer.Option(None, "--name",
                                                    help="file and run name (default: the "
                                                         "model's file name)"),
                 check: bool = typer.Option(True, "--check/--no-check",
                                            help="run onnxruntime against the imported network"),
                 input_shape: Optional[str] = typer.Option(
                     None, "--input-shape", help="per-sample C,H,W where the graph's are "
                                                 "symbolic"),
                 force: bool = typer.Option(False, "--force", help="replace existing files")):
    """Read an ONNX network as a config (containers, not a flat list) and a checkpoint."""
    from ..tools.onnx_import import import_onnx, parse_shape
    r = import_onnx(model, out, name, check, parse_shape(input_shape), force)
    line = (f"wrote {r['config']} ({r['layers']} layers, {r['parameters']:,} parameters, "
            f"opset {r['opset']}) and {r['checkpoint']}")
    if check:
        line += (f"; {r['runtime']} agrees to {r['max_rel_error']:.1e} "
                 f"(relative, batch {r['batch']})")
    typer.echo(line)


@command()
def schema(out: Optional[Path] = typer.Option(None, "-o", "--out", help="file (default: stdout)")):
    """The JSON Schema of config files, for YAML editors' completion and checking."""
    from ..config.jsonschema import config_schema
    text = json.dumps(config_schema(), indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)
