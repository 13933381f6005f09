"""The ``cnnrun`` command: parse, call the library, render. Heavy imports happen inside
commands, so ``cnnrun --help`` stays fast."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

# pydantic looks for plugins by reading the entry points of every installed distribution
# (tens of ms at each start on a full environment); the CLI uses none. An explicit setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="Define, train and understand convolutional networks from YAML.")
STATE = {"debug": False}


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks.")):
    STATE["debug"] = debug


def run_guarded(fn):
    """Run a command body: user errors become one paragraph and an exit code, no traceback."""
    from .errors import CnnrunError
    try:
        return fn()
    except CnnrunError as e:
        _fail(str(e), e.exit_code)
    except Exception as e:  # noqa: BLE001 - the last line of defence of a CLI
        from .train.trainer import Interrupted
        if isinstance(e, Interrupted):
            _fail(str(e), 130)
        if STATE["debug"]:
            raise
        _fail(f"internal error: {type(e).__name__}: {e}. This is a bug in cnnrun; run again with "
              f"--debug for the traceback and report it.", 1)


def _fail(message: str, code: int):
    if STATE["debug"]:
        import traceback
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_model(config, overrides):
    """The validated config and its model (shapes checked, no weights allocated)."""
    from .config import load_config
    from .model import Model
    cfg = load_config(config, overrides or [])
    return cfg, Model(cfg.model.layers, cfg.model.input_shape)


def _console():
    from rich.console import Console
    return Console()


@app.command()
def train(config: Path = typer.Argument(..., help="YAML config file"),
          set_: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value override"),
          out: Optional[Path] = typer.Option(None, "--out", help="run directory (exactly)"),
          resume: Optional[str] = typer.Option(None, "--resume", help="checkpoint, or 'auto'"),
          init_weights: Optional[Path] = typer.Option(None, "--init-weights",
                                                      help="load weights only (fine-tuning)"),
          quiet: bool = typer.Option(False, "--quiet", help="plain lines, no live display")):
    """Train a model; writes runs/<name>/<time>/ with config, metrics and checkpoints."""
    def body():
        from .allocator import keep_freed_memory
        from .config import load_config
        from .train.progress import make_reporter
        from .train.runs import new_run_dir
        from .train.trainer import Trainer
        cfg = load_config(config, set_ or [])
        ckpt = _resume_path(resume, cfg.name)
        run_dir = Path(out) if out else (ckpt.parent.parent if ckpt else None)
        run_dir = new_run_dir(cfg.name, str(run_dir) if run_dir else None)
        keep_freed_memory()
        result = Trainer(cfg, run_dir, make_reporter(quiet), ckpt, init_weights).run()
        t = result["test"]
        typer.echo(f"test accuracy {t['accuracy']:.2%} (top-5 {t['top5']:.2%}, loss "
                   f"{t['loss']:.4f}) on {t['count']} images; checkpoints in "
                   f"{result['run_dir']}/checkpoints/")
    run_guarded(body)


def _resume_path(resume: str | None, name: str) -> Path | None:
    from .errors import UserError
    if resume is None:
        return None
    if resume != "auto":
        return Path(resume)
    found = sorted(Path("runs", name).glob("*/checkpoints/last.safetensors"))
    if not found:
        raise UserError(f"--resume auto: no runs/{name}/*/checkpoints/last.safetensors to "
                        f"resume; train once first or name a checkpoint.")
    return found[-1]


@app.command("eval")
def evaluate_cmd(checkpoints: List[Path] = typer.Argument(
                     ..., help="one .safetensors checkpoint, or several: an ensemble"),
                 data: Optional[Path] = typer.Option(None, "--data", help="dataset directory"),
                 split: str = typer.Option("test", "--split", help="test or train"),
                 crops: int = typer.Option(1, "--crops", help="1, or 10: average the four "
                                                               "corners, centre and mirrors"),
                 crop_pad: Optional[int] = typer.Option(
                     None, "--crop-pad", min=0, help="pad images by this much before ten-crop "
                                                     "(default: the training random-crop padding)"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Loss, top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint
    (several checkpoints: their averaged probabilities, an ensemble)."""
    def body():
        from .data import prepare
        from .errors import UserError
        from .evaluate import averaged_logits, metrics
        from .inference import load_trained
        if split not in ("test", "train"):
            raise UserError(f"--split {split}: expected 'test' or 'train'.")
        if crops not in (1, 10):
            raise UserError(f"--crops {crops}: expected 1 or 10.")
        members = [load_trained(c) for c in checkpoints]
        first = members[0]
        for c, m in zip(checkpoints[1:], members[1:]):
            if m.model.input_shape != first.model.input_shape or m.classes != first.classes:
                raise UserError(f"{c}: its input shape or classes differ from "
                                f"{checkpoints[0]}'s, so the two cannot be averaged.")
        dcfg = first.cfg.data.model_copy(update={"root": str(data)}) if data else first.cfg.data
        bundle = prepare(dcfg, first.cfg.train.seed, first.cfg.train.dtype, stats=first.stats,
                         splits=(split,))
        part = bundle.test if split == "test" else bundle.train
        pad = dcfg.augment.random_crop_padding if crop_pad is None else crop_pad
        logits = averaged_logits(members, part.x, crops, pad if crops == 10 else 0, bundle.fill)
        m = metrics(logits, part.y, first.cfg.train.loss, part.classes)
        m.update(checkpoints=[str(c) for c in checkpoints], crops=crops)
        if as_json:
            typer.echo(json.dumps(m))
        else:
            from .render import eval_tables
            what = str(checkpoints[0]) if len(members) == 1 else \
                f"an ensemble of {len(members)} checkpoints"
            eval_tables(m, _console(), f"{what}{' (ten crops)' if crops == 10 else ''} on the "
                                       f"{split} split")
    run_guarded(body)


@app.command()
def summary(config: Path = typer.Argument(..., help="YAML config file"),
            set_: Optional[List[str]] = typer.Option(None, "--set"),
            depth: Optional[int] = typer.Option(None, "--depth", help="fold nested blocks"),
            rf_target: Optional[str] = typer.Option(
                None, "--rf-target", help="also give Wu's extents: per layer, the input extent "
                                          "one unit of this layer needs"),
            as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Shapes, parameters, MACs and receptive fields per layer, then totals and memory."""
    def body():
        from .summary import attach_extents, extents_to_target, summarize
        cfg, model = _load_model(config, set_)
        s = summarize(model, cfg.train)
        if rf_target:
            attach_extents(s, rf_target, extents_to_target(model, rf_target))
        if as_json:
            typer.echo(json.dumps(s))
        else:
            from .render import summary_table
            summary_table(s, _console(), depth)
    run_guarded(body)


@app.command()
def validate(config: Path = typer.Argument(..., help="YAML config file"),
             set_: Optional[List[str]] = typer.Option(None, "--set")):
    """Check a config (schema and shapes) without training."""
    def body():
        _, m = _load_model(config, set_)
        typer.echo(f"{config}: ok — {m.n_params():,} parameters, output {m.output_shape}")
    run_guarded(body)


@app.command()
def predict(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
            images: List[Path] = typer.Argument(..., help="PNG or JPEG files"),
            top_k: int = typer.Option(3, "--top-k", min=1),
            explain: bool = typer.Option(False, "--explain",
                                         help="also draw each layer's feature maps (PNGs)"),
            out: Path = typer.Option(Path("explain"), "-o", "--out",
                                     help="where --explain writes its pictures"),
            as_json: bool = typer.Option(False, "--json")):
    """Classify image files with a trained model."""
    def body():
        from .predict import predict_files
        results = predict_files(checkpoint, images, top_k, out if explain else None)
        if as_json:
            typer.echo(json.dumps(results))
        else:
            from .render import predictions_table
            predictions_table(results, _console())
            if explain:
                typer.echo(f"feature maps written under {out}/")
    run_guarded(body)


@app.command()
def gradcheck(config: Path = typer.Argument(..., help="YAML config file"),
              set_: Optional[List[str]] = typer.Option(None, "--set"),
              samples: int = typer.Option(5, "--samples", min=1, help="coordinates per tensor"),
              eps: float = typer.Option(1e-6, "--eps", help="finite-difference step"),
              batch: int = typer.Option(2, "--batch", min=1),
              dtype: str = typer.Option("float64", "--dtype"),
              as_json: bool = typer.Option(False, "--json")):
    """Check every backward pass of a config against central finite differences (float64)."""
    def body():
        from .errors import RunFailed, UserError
        from .gradcheck import check_model
        if dtype != "float64":
            raise UserError(f"--dtype {dtype}: gradcheck runs in float64 only; float32 round-off "
                            f"(about 1e-7 relative) swamps any finite difference.")
        cfg, model = _load_model(config, set_)
        rows = check_model(model, cfg.train.loss, batch=batch, samples=samples, eps=eps,
                           seed=cfg.train.seed)
        if as_json:
            typer.echo(json.dumps([r.__dict__ for r in rows]))
        else:
            from .render import gradcheck_table
            gradcheck_table(rows, _console())
        failed = [r for r in rows if not r.passed]
        if failed:
            raise RunFailed(f"{len(failed)} of {len(rows)} gradient checks failed (worst "
                            f"{max(r.max_rel_error for r in failed):.2e}, at "
                            f"{failed[0].layer}.{failed[0].parameter}).")
    run_guarded(body)


@app.command()
def hessian(checkpoint: Path = typer.Argument(..., help="a .safetensors checkpoint"),
            top_k: int = typer.Option(3, "--top-k", min=1, help="largest eigenvalues"),
            batch: int = typer.Option(256, "--batch", min=1, help="training images used"),
            iters: int = typer.Option(20, "--iters", min=2, help="Lanczos steps"),
            trace_samples: int = typer.Option(10, "--trace-samples", min=1),
            gauss_newton: bool = typer.Option(False, "--gauss-newton",
                                              help="the Gauss–Newton matrix instead"),
            as_json: bool = typer.Option(False, "--json")):
    """Top eigenvalues (Lanczos) and trace (Hutchinson) of the loss Hessian on a batch."""
    def body():
        import numpy as np
        from .data import prepare
        from .hessian import analyze
        from .inference import load_trained
        from .layout import to_engine
        tr = load_trained(checkpoint)
        cfg = tr.cfg
        data = prepare(cfg.data.model_copy(update={"train_limit": batch}), cfg.train.seed,
                       np.float64, stats=tr.stats, splits=("train",))
        state = {k: v for k, v in tr.state.items()}
        from .model import _map
        state = _map(state, lambda a: a.astype(np.float64))  # exact products in float64
        x, y = to_engine(data.train.x[:batch]), data.train.y[:batch]
        with _progress(as_json) as step:
            result = analyze(tr.model, state, x, y, cfg.train.loss, top_k, iters, trace_samples,
                             cfg.train.seed, gauss_newton, step)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            from .render import hessian_table
            hessian_table(result, _console())
    run_guarded(body)


def _progress(quiet: bool):
    """A context giving a step(phase, i, n) callback that drives a rich bar (or nothing)."""
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        if quiet or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import Progress
        with Progress(transient=True) as bar:
            tasks = {}

            def step(phase, i, n):
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=n)
                bar.update(tasks[phase], completed=i)
            yield step
    return ctx()


from . import commands  # noqa: E402,F401 - registers export, schema, runs, plot, embed, …

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
