"""Commands that look at a network: ``summary``, ``validate``, ``predict``, ``gradcheck``,
``hessian``, ``bench`` and ``layers``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import command, emit


@command()
def summary(config: Path = typer.Argument(..., help="YAML config file"),
            set_: Optional[List[str]] = typer.Option(None, "--set"),
            depth: Optional[int] = typer.Option(None, "--depth", help="fold nested blocks"),
            rf_target: Optional[str] = typer.Option(
                None, "--rf-target", help="also give Wu's extents: per layer, the input extent "
                                          "one unit of this layer needs"),
            as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Shapes, parameters, MACs and receptive fields per layer, then totals and memory."""
    from ..tools.summary import summarize_config
    s = summarize_config(config, set_, rf_target)

    def view(console):
        from .render import summary_table
        summary_table(s, console, depth)
    emit(s, as_json, view)


@command()
def validate(config: Path = typer.Argument(..., help="YAML config file"),
             set_: Optional[List[str]] = typer.Option(None, "--set")):
    """Check a config (schema and shapes) without training."""
    from ..tools.summary import load_model
    _, m = load_model(config, set_)
    typer.echo(f"{config}: ok — {m.n_params():,} parameters, output {m.output_shape}")


@command()
def predict(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
            images: List[Path] = typer.Argument(
                ..., help="PNG or JPEG files, or one .npy array (N, C, H, W) taken as it is"),
            top_k: int = typer.Option(3, "--top-k", min=1),
            explain: bool = typer.Option(False, "--explain",
                                         help="also draw each layer's feature maps (PNGs)"),
            out: Path = typer.Option(Path("explain"), "-o", "--out",
                                     help="where --explain writes its pictures"),
            config: Optional[Path] = typer.Option(
                None, "--config", help="build the network from this config (weights-only file)"),
            as_json: bool = typer.Option(False, "--json")):
    """Classify image files with a trained model, or run it on a NumPy array (--json: the
    network's final outputs per sample, under "outputs")."""
    if len(images) == 1 and images[0].suffix == ".npy" and not explain:
        from ..tools.predict_array import predict_array
        result = predict_array(checkpoint, images[0], top_k, config)

        def array_view(console):
            from .render import predictions_table
            predictions_table(result["predictions"], console)
        emit(result, as_json, array_view)
        return
    from ..tools.predict import predict_files, unlike_warning
    results = predict_files(checkpoint, images, top_k, out if explain else None, config)
    warning = unlike_warning(results)
    if warning:  # said once, on stderr, so --json's stdout stays one document
        typer.echo(warning, err=True)

    def view(console):
        from .render import predictions_table
        predictions_table(results, console)
        if explain:
            typer.echo(f"feature maps written under {out}/")
    emit(results, as_json, view)


@command()
def gradcheck(config: Path = typer.Argument(..., help="YAML config file"),
              set_: Optional[List[str]] = typer.Option(None, "--set"),
              samples: int = typer.Option(5, "--samples", min=1, help="coordinates per tensor"),
              eps: float = typer.Option(1e-6, "--eps", help="finite-difference step"),
              batch: int = typer.Option(2, "--batch", min=1),
              dtype: str = typer.Option("float64", "--dtype"),
              as_json: bool = typer.Option(False, "--json")):
    """Check every backward pass of a config against central finite differences (float64)."""
    from ..tools.gradcheck import check_config, raise_if_failed
    rows = check_config(config, set_ or [], batch, samples, eps, dtype)

    def view(console):
        from .render import gradcheck_table
        gradcheck_table(rows, console)
    emit([r.__dict__ for r in rows], as_json, view)
    raise_if_failed(rows)


@command()
def hessian(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
            top_k: int = typer.Option(3, "--top-k", min=1, help="largest eigenvalues"),
            batch: int = typer.Option(256, "--batch", min=1,
                                      help="the first N training images, in file order"),
            iters: int = typer.Option(20, "--iters", min=2, help="Lanczos steps"),
            trace_samples: int = typer.Option(10, "--trace-samples", min=1),
            gauss_newton: bool = typer.Option(False, "--gauss-newton",
                                              help="the Gauss–Newton matrix instead"),
            as_json: bool = typer.Option(False, "--json")):
    """Top eigenvalues (Lanczos) and trace (Hutchinson) of the loss Hessian on a batch."""
    from ..tools.hessian import analyze_checkpoint
    from .render import progress_bar
    with progress_bar(as_json) as step:
        result = analyze_checkpoint(checkpoint, top_k, batch, iters, trace_samples,
                                    gauss_newton, step)

    def view(console):
        from .render import hessian_table
        hessian_table(result, console)
    emit(result, as_json, view)


@command()
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
    from ..config import load_config
    from ..tools.bench import bench as run_bench
    result = run_bench(load_config(config, set_ or []), batch_size, steps, warmup, profile)

    def view(console):
        from .render import bench_tables
        bench_tables(result, console)
    emit(result, as_json, view)


@command()
def layers(kind: str = typer.Option("layers", "--kind",
                                    help="layers, optimizers, schedules or losses"),
           as_json: bool = typer.Option(False, "--json")):
    """A registry of declared kinds (layers by default): each type, its fields and defaults."""
    from ..tools.describe import describe_kind
    rows = describe_kind(kind)

    def view(console):
        from .render import layers_table
        layers_table(rows, console)
    emit(rows, as_json, view)
