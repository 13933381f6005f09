"""CLI commands beyond train/eval/summary, one module per theme; importing a module
registers its commands on ``cli.app``. Each imports its library code inside the
command, so ``cnnrun --help`` stays fast."""

from . import engine, export, look, runs  # noqa: F401 - registration
