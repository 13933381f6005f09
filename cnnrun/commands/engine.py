"""``cnnrun bench`` and ``cnnrun layers``: the engine's speed and its registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..cli import _console, app, run_guarded


@app.command()
def bench(config: Path = typer.Argument(..., help="YAML config file"),
          set_: Optional[List[str]] = typer.Option(None, "--set"),
          batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
          steps: int = typer.Option(20, "--steps", min=1),
          warmup: int = typer.Option(1, "--warmup", min=0),
          profile: bool = typer.Option(False, "--profile",
                                       help="then time every leaf layer, summed over "
                                            "those alike (type, weights, input shape)"),
          as_json: bool = typer.Option(False, "--json")):
    """Time training steps and inference per layer on synthetic data (like caffe time)."""
    def body():
        from ..bench import bench as run_bench
        from ..config import load_config
        result = run_bench(load_config(config, set_ or []), batch_size, steps, warmup, profile)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            from ..render import bench_tables
            bench_tables(result, _console())
    run_guarded(body)


@app.command()
def layers(as_json: bool = typer.Option(False, "--json")):
    """The layer registry: each type, its fields and defaults."""
    def body():
        from ..describe import describe_layers
        rows = describe_layers()
        if as_json:
            typer.echo(json.dumps(rows))
        else:
            from ..render import layers_table
            layers_table(rows, _console())
    run_guarded(body)
