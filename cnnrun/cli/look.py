"""Looking at runs and networks: ``plot``, ``embed`` and ``maximize``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import command, emit


@command()
def plot(run_dir: Path = typer.Argument(..., help="a run directory (runs/<name>/<time>)"),
         out: Optional[Path] = typer.Option(None, "-o", "--out",
                                            help="where the PNGs go (default: RUN_DIR/plots)")):
    """PNGs of a run: curves, learning rate, confusion matrix, first-layer filters."""
    from ..tools.looks import plot_run
    for p in plot_run(run_dir, out):
        typer.echo(f"wrote {p}")


@command()
def embed(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
          layer: str = typer.Option(..., "--layer", help="dotted layer name, e.g. fc2"),
          split: str = typer.Option("test", "--split", help="test or train"),
          out: Optional[Path] = typer.Option(None, "-o", "--out", help=".npy file of features"),
          neighbours: int = typer.Option(0, "--neighbours", min=0,
                                         help="print each query's K nearest training images"),
          queries: int = typer.Option(6, "--queries", min=1, help="how many query images"),
          picture: Optional[Path] = typer.Option(None, "--picture",
                                                 help="PNG of queries and their neighbours"),
          as_json: bool = typer.Option(False, "--json")):
    """A layer's features for a dataset split (.npy), and nearest neighbours in that space."""
    from ..tools.looks import embed as run_embed
    r = run_embed(checkpoint, layer, split, out, neighbours, queries, picture)

    def view(console):
        typer.echo(f"wrote {r['features']}: features {tuple(r['shape'])} of layer {layer} "
                   f"({split} split), labels beside it")
        if neighbours:
            from .render import neighbours_table
            neighbours_table(r["neighbours"], console, layer)
    emit(r, as_json, view)


@command()
def maximize(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
             layer: str = typer.Option(..., "--layer", help="dotted layer name, e.g. conv2"),
             units: Optional[str] = typer.Option(None, "--units",
                                                 help="e.g. 0,3,5 (default: every map, ≤ 64)"),
             steps: int = typer.Option(200, "--steps", min=1),
             lr: float = typer.Option(0.05, "--lr"),
             l2: float = typer.Option(1e-3, "--l2", help="norm penalty on the image"),
             out: Optional[Path] = typer.Option(None, "-o", "--out", help="PNG file")):
    """The input each unit of a layer responds to most (activation maximisation)."""
    from ..tools.looks import maximize_units
    r = maximize_units(checkpoint, layer, units, steps, lr, l2, out)
    typer.echo(f"wrote {r['picture']} ({r['units']} units, {steps} steps each)")
