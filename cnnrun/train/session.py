"""One training run from the command line's arguments: the config read and overridden, the
run directory chosen (new, given, or the resumed run's), then the trainer."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..config.loader import locate
from ..errors import ConfigValueError, UserError
from ..engine.parallel.world import World
from ..ops.allocator import keep_freed_memory
from .progress import make_reporter
from .runs import checkpoint_path, new_run_dir
from .trainer import Trainer


def resume_path(resume: str | None, name: str, root: Path = Path("runs")) -> Path | None:
    """The checkpoint ``--resume`` names; 'auto' is the newest run of this config's name."""
    if resume is None:
        return None
    if resume != "auto":
        return Path(resume)
    found = sorted(p for p in (root / name).glob("*") if checkpoint_path(p, "last").exists())
    if not found:
        raise UserError(f"--resume auto: no runs/{name}/*/checkpoints/last.safetensors to "
                        f"resume; train once first or name a checkpoint.")
    return checkpoint_path(found[-1], "last")


def run_training(config: Path, overrides: list[str], out: Path | None = None,
                 resume: str | None = None, init_weights: Path | None = None,
                 quiet: bool = False, describe=None, force: bool = False) -> dict:
    """Train as ``cnnrun train`` does; the trainer's result (run directory, test metrics).

    Under ``mpiexec`` every rank runs this: rank 0 makes the run directory and tells the
    others its path, and alone shows progress and writes."""
    world = World.detect()
    cfg = load_config(config, overrides)
    ckpt = resume_path(resume, cfg.name)
    run_dir = None
    if world.is_root:
        run_dir = Path(out) if out else (ckpt.parent.parent if ckpt else None)
        run_dir = new_run_dir(cfg.name, str(run_dir) if run_dir else None,
                              resuming=ckpt is not None, force=force)
    run_dir = Path(world.broadcast_text(str(run_dir) if run_dir else None))
    keep_freed_memory()
    reporter = make_reporter(quiet) if world.is_root else None
    try:
        trainer = Trainer(cfg, run_dir, reporter, ckpt, init_weights, describe, world)
    except UserError as e:  # refused before its first write: leave no empty run behind
        if world.is_root:
            _remove_if_empty(run_dir)
        if isinstance(e, ConfigValueError):  # point at the key's line in the file
            raise UserError(f"{locate(config, overrides, e.key)} {e}") from e
        raise
    return trainer.run()


def _remove_if_empty(run_dir: Path) -> None:
    """The run directory and its checkpoints folder, if a refused run wrote nothing there."""
    for folder in (run_dir / "checkpoints", run_dir):
        try:
            folder.rmdir()  # only succeeds on an empty folder
        except OSError:
            return
