"""The ``cnnrun`` command line: the Typer app (``app.py``) and one module per group of
commands, each of which parses, calls one library function and renders.

Importing this package registers every command on ``app``, in the order ``--help`` lists
them."""

from .app import app
from . import training, inspect, export, look  # noqa: E402,F401 - registration

__all__ = ["app"]
