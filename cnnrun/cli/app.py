"""The Typer app and the one decorator every command goes through.

A command's function parses its arguments, calls one library function and hands the result
to ``emit``: JSON under ``--json``, else its rich view. ``@command()`` registers it and turns
what it raises into one paragraph and an exit code (2 for bad input, 1 for a failed run,
130 for Ctrl-C), with the traceback only under ``--debug``. Heavy imports happen inside the
commands, so ``cnnrun --help`` stays fast."""

from __future__ import annotations

import functools
import os
import sys

import typer

from ..errors import CnnrunError
from ..safe_io import dumps_json

# pydantic looks for plugins by reading the entry points of every installed distribution
# (tens of ms at each start on a full environment); the CLI uses none. An explicit setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="Define, train and understand convolutional networks from YAML.")
STATE = {"debug": False}


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks.")):
    STATE["debug"] = debug


def command(name: str | None = None):
    """Register a command on ``app``, guarded: errors become one paragraph and an exit code."""
    def decorate(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except CnnrunError as e:
                fail(str(e), e.exit_code)
            except (typer.Exit, typer.Abort):
                raise
            except KeyboardInterrupt:  # Ctrl-C outside training (which saves and exits itself)
                fail("interrupted (Ctrl-C); nothing was half-written.", 130)
            except BrokenPipeError:  # `cnnrun … | head -1`: the reader left; stop quietly
                _quiet_stdout()
                raise typer.Exit(141) from None
            except OSError as e:  # the disk, not cnnrun: full, read-only, a directory
                where = f"{e.filename}: " if e.filename else ""
                fail(f"{where}{e.strerror or e}. Check the path, its permissions and the free "
                     f"space, then run again.", 2)
            except Exception as e:  # noqa: BLE001 - the last line of defence of a CLI
                if STATE["debug"]:
                    raise
                fail(f"internal error: {type(e).__name__}: {e}. This is a bug in cnnrun; run "
                     f"again with --debug for the traceback and report it.", 1)
        return app.command(name)(guarded)
    return decorate


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def fail(message: str, code: int):
    if STATE["debug"]:
        import traceback
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    if code not in (130, 143):  # a signal reaches every rank, and all stop at the same step
        _end_the_world(code)
    raise typer.Exit(code)


def _end_the_world(code: int) -> None:
    """Under mpiexec, a rank that fails ends every rank (the others would wait for it in
    their next collective), as ``python -m mpi4py`` does. Imports nothing new."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() \
            and mpi.COMM_WORLD.Get_size() > 1:
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(code)


def is_follower_rank() -> bool:
    """A rank other than 0 of an MPI job: it prints nothing but its errors."""
    rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    return rank != "0"


def emit(result, as_json: bool, view=None) -> None:
    """Print a command's result: JSON, or ``view(console)`` (its rich tables)."""
    if is_follower_rank():
        return
    if as_json:
        typer.echo(dumps_json(result))
    elif view is not None:
        from rich.console import Console
        view(Console())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
