"""``cnnrun runs``: the runs under a directory, newest last."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..cli import _console, app, run_guarded


@app.command()
def runs(root: Path = typer.Argument(Path("runs"), help="directory holding runs"),
         as_json: bool = typer.Option(False, "--json")):
    """List runs: name, date, epochs, best validation accuracy, checkpoint."""
    def body():
        from ..errors import UserError
        from ..train.runs import find_runs, summarize_run
        if not root.is_dir():
            raise UserError(f"{root}: no such directory; runs are written under runs/ by "
                            f"'cnnrun train' (or give the directory that holds them).")
        rows = [summarize_run(p) for p in find_runs(root)]
        if as_json:
            typer.echo(json.dumps(rows))
            return
        from ..render import runs_table
        runs_table(rows, _console(), root)
    run_guarded(body)
