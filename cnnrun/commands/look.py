"""Looking at runs and networks: ``plot``, ``embed`` and ``maximize``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cli import _console, app, run_guarded


def _run_checkpoint(run_dir: Path) -> Path | None:
    for which in ("best", "last"):
        p = run_dir / "checkpoints" / f"{which}.safetensors"
        if p.exists():
            return p
    return None


@app.command()
def plot(run_dir: Path = typer.Argument(..., help="a run directory (runs/<name>/<time>)"),
         out: Optional[Path] = typer.Option(None, "-o", "--out",
                                            help="where the PNGs go (default: RUN_DIR/plots)")):
    """PNGs of a run: curves, learning rate, confusion matrix, first-layer filters."""
    def body():
        from .. import plots
        from ..errors import UserError
        from ..train.runs import read_metrics
        epochs, steps = read_metrics(run_dir)
        if not epochs:
            raise UserError(f"{run_dir}: no epochs in metrics.jsonl (is this a run directory "
                            f"from 'cnnrun train', and did it finish an epoch?).")
        dest = out or run_dir / "plots"
        written = [plots.curves(epochs, dest / "curves.png"),
                   plots.learning_rate(steps, epochs, dest / "lr.png")]
        ckpt = _run_checkpoint(run_dir)
        if ckpt is not None:
            written += _checkpoint_pictures(ckpt, dest)
        for p in written:
            typer.echo(f"wrote {p}")
    run_guarded(body)


def _checkpoint_pictures(ckpt: Path, dest: Path) -> list[Path]:
    from .. import plots
    from ..data import prepare
    from ..evaluate import evaluate
    from ..inference import load_trained
    from ..model import flatten
    tr = load_trained(ckpt)
    data = prepare(tr.cfg.data, tr.cfg.train.seed, tr.cfg.train.dtype, stats=tr.stats,
                   splits=("test",))
    m = evaluate(tr.model, tr.state, data.test, tr.cfg.train.loss)
    out = [plots.confusion(m["confusion"], tr.classes, dest / "confusion.png",
                           f"{ckpt.stem} checkpoint, test split")]
    kernels = [(n, a) for n, a in flatten(tr.state).items()
               if n.endswith("weight") and getattr(a, "ndim", 0) == 4]
    if kernels:
        name, w = kernels[0]
        out.append(plots.filters(w, dest / "filters.png", f"first-layer filters ({name})"))
    return out


@app.command()
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
    def body():
        import numpy as np
        from ..analysis import features, nearest
        from ..data import prepare
        from ..errors import UserError
        from ..inference import load_trained
        if split not in ("test", "train"):
            raise UserError(f"--split {split}: expected 'test' or 'train'.")
        tr = load_trained(checkpoint)
        need = ("train", "test") if neighbours else (split,)
        data = prepare(tr.cfg.data, tr.cfg.train.seed, tr.cfg.train.dtype, stats=tr.stats,
                       splits=need)
        part = data.test if split == "test" else data.train
        feats = features(tr.model, tr.state, part.x, layer)
        dest = out or checkpoint.with_name(f"{checkpoint.stem}-{layer}-{split}.npy")
        np.save(dest, feats)
        np.save(dest.with_name(dest.stem + "-labels.npy"), part.y)
        result = {"features": str(dest), "shape": list(feats.shape)}
        if neighbours:
            pool = features(tr.model, tr.state, data.train.x, layer)
            q = min(queries, len(part.y))
            extra = 1 if split == "train" else 0  # a training image is its own nearest
            idx, dist = nearest(feats[:q], pool, neighbours + extra)
            idx, dist = idx[:, extra:], dist[:, extra:]
            result["neighbours"] = [
                {"query": i, "label": tr.classes[part.y[i]],
                 "nearest": [{"train_index": int(j), "label": tr.classes[data.train.y[j]],
                              "distance": float(d)} for j, d in zip(idx[i], dist[i])]}
                for i in range(q)]
            if picture:
                _neighbour_picture(part, data.train, idx, tr.classes, picture, layer)
                result["picture"] = str(picture)
        if as_json:
            typer.echo(json.dumps(result))
            return
        typer.echo(f"wrote {dest}: features {tuple(feats.shape)} of layer {layer} "
                   f"({split} split), labels beside it")
        if neighbours:
            from ..render import neighbours_table
            neighbours_table(result["neighbours"], _console(), layer)
    run_guarded(body)


def _neighbour_picture(queries, train, idx, classes, path, layer):
    from .. import plots
    images, titles = [], []
    for i, row in enumerate(idx):
        images.append(queries.x[i])
        titles.append(f"query: {classes[queries.y[i]]}")
        for j in row:
            images.append(train.x[j])
            titles.append(classes[train.y[j]])
    plots.image_grid(images, path, titles, cols=idx.shape[1] + 1,
                     title=f"nearest training images in the space of {layer}")


@app.command()
def maximize(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
             layer: str = typer.Option(..., "--layer", help="dotted layer name, e.g. conv2"),
             units: Optional[str] = typer.Option(None, "--units",
                                                 help="e.g. 0,3,5 (default: every map, ≤ 64)"),
             steps: int = typer.Option(200, "--steps", min=1),
             lr: float = typer.Option(0.05, "--lr"),
             l2: float = typer.Option(1e-3, "--l2", help="norm penalty on the image"),
             out: Optional[Path] = typer.Option(None, "-o", "--out", help="PNG file")):
    """The input each unit of a layer responds to most (activation maximisation)."""
    def body():
        from .. import plots
        from ..analysis import chain_to, maximize as run_max
        from ..errors import UserError
        from ..inference import load_trained
        tr = load_trained(checkpoint)
        last = chain_to(tr.model, layer)[-1]
        n = last.layer.output_shape(last.in_shape)[0]
        try:
            chosen = list(range(min(n, 64))) if units is None else \
                [int(u) for u in units.split(",")]
        except ValueError as e:
            raise UserError(f"--units {units}: expected numbers separated by commas.") from e
        images, titles = [], []
        for u in chosen:
            x, history = run_max(tr.model, tr.state, layer, u, steps, lr, l2)
            images.append(x)
            titles.append(f"{u}: {history[-1]:.2f}")
        dest = out or checkpoint.with_name(f"{checkpoint.stem}-{layer}-maximize.png")
        plots.image_grid(images, dest, titles, title=f"what excites each unit of {layer} "
                                                     f"(final mean activation)")
        typer.echo(f"wrote {dest} ({len(chosen)} units, {steps} steps each)")
    run_guarded(body)
