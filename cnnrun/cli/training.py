"""``cnnrun train``, ``eval`` and ``runs``: training a config, scoring checkpoints, listing runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import command, emit, is_follower_rank


@command()
def train(config: Path = typer.Argument(..., help="YAML config file"),
          set_: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value override"),
          out: Optional[Path] = typer.Option(None, "--out", help="run directory (exactly)"),
          resume: Optional[str] = typer.Option(None, "--resume", help="checkpoint, or 'auto'"),
          init_weights: Optional[Path] = typer.Option(None, "--init-weights",
                                                      help="load weights only (fine-tuning)"),
          quiet: bool = typer.Option(False, "--quiet", help="plain lines, no live display"),
          force: bool = typer.Option(False, "--force",
                                     help="replace the run already in --out (else refused)")):
    """Train a model; writes runs/<name>/<time>/ with config, metrics and checkpoints."""
    from ..train.session import run_training
    from .render import summary_text
    result = run_training(config, set_ or [], out, resume, init_weights, quiet, summary_text,
                          force)
    t = result["test"]
    if not is_follower_rank():
        typer.echo(f"test accuracy {t['accuracy']:.2%} (top-5 {t['top5']:.2%}, loss "
                   f"{t['loss']:.4f}) on {t['count']} images; checkpoints in "
                   f"{result['run_dir']}/checkpoints/")


@command("eval")
def evaluate(checkpoints: List[Path] = typer.Argument(
                 ..., help="one .safetensors checkpoint, or several: an ensemble"),
             data: Optional[Path] = typer.Option(None, "--data", help="dataset directory"),
             split: str = typer.Option("test", "--split", help="test or train"),
             crops: int = typer.Option(1, "--crops", help="1, or 10: average the four "
                                                           "corners, centre and mirrors"),
             crop_pad: Optional[int] = typer.Option(
                 None, "--crop-pad", min=0, help="pad images by this much before ten-crop "
                                                 "(default: the training random-crop padding)"),
             config: Optional[Path] = typer.Option(
                 None, "--config", help="build the network from this config: the checkpoint "
                                        "may then be any safetensors file of weights"),
             predictions: Optional[Path] = typer.Option(
                 None, "--predictions", help="also write one row per image (.csv or .jsonl): "
                                             "label, prediction, top-5 probabilities, file"),
             as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Loss, top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint
    (several checkpoints: their averaged probabilities, an ensemble)."""
    from ..tools.checkpoint_eval import evaluate_checkpoints
    m = evaluate_checkpoints(checkpoints, data, split, crops, crop_pad, config, predictions)
    what = str(checkpoints[0]) if len(checkpoints) == 1 else \
        f"an ensemble of {len(checkpoints)} checkpoints"
    title = f"{what}{' (ten crops)' if crops == 10 else ''} on the {split} split"

    def view(console):
        from .render import eval_tables
        eval_tables(m, console, title)
    emit(m, as_json, view)


@command()
def runs(root: Path = typer.Argument(Path("runs"), help="directory holding runs"),
         as_json: bool = typer.Option(False, "--json")):
    """List runs: name, date, epochs, best validation accuracy, checkpoint."""
    from ..train.runs import list_runs
    rows = list_runs(root)

    def view(console):
        from .render import runs_table
        runs_table(rows, console, root)
    emit(rows, as_json, view)
