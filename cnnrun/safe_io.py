"""Reading a file a user names, safely: only a regular file, and only after its size is
known to be below a bound. And writing JSON that every parser reads (no NaN).

A FIFO as a config blocks ``open`` for ever, ``/dev/zero`` reads until memory runs out, a
directory raises an OSError that names nothing useful. ``read_bytes`` opens without
blocking (``O_NONBLOCK``), checks with ``fstat`` that it holds a regular file, checks the
size against ``limit``, and only then reads; every refusal is one ``UserError`` paragraph
that says which file and what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UserError

MB = 1 << 20


def read_bytes(path, what: str, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes; ``what`` names it for people
    ("config", "checkpoint")."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as e:
        raise UserError(f"{path}: no such {what} file.") from e
    except IsADirectoryError as e:
        raise UserError(f"{path}: a directory, not a {what} file.") from e
    except OSError as e:
        raise UserError(f"{path}: cannot open this {what} file ({e.strerror}).") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else \
                "a pipe" if stat.S_ISFIFO(info.st_mode) else "a device or special file"
            raise UserError(f"{path}: {kind}, not a regular {what} file; give the path of the "
                            f"file itself.")
        if info.st_size > limit:
            raise UserError(f"{path}: {info.st_size / MB:,.1f} MB, more than a {what} file can "
                            f"be ({limit / MB:,.0f} MB); is this the right file?")
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(min(limit, info.st_size) + 1)  # read(n) reserves n bytes first
    except OSError as e:
        raise UserError(f"{path}: cannot read this {what} file ({e.strerror}).") from e
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > info.st_size:  # it grew while we read it
        raise UserError(f"{path}: the {what} file grew while it was read; run again once "
                        f"whatever writes it has finished.")
    return data


def dumps_json(obj, **kwargs) -> str:
    """JSON that other tools can parse: NaN and ±inf, which ``json.dumps`` writes as the
    non-standard NaN/Infinity, become null (the README says so)."""
    import json
    import math

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    return json.dumps(clean(obj), allow_nan=False, **kwargs)


def memory_shortfall(need: int) -> str | None:
    """None when ``need`` bytes fit in what this machine can still give, else the words an
    error uses ("need 1,192.1 GiB of memory, more than the 22.9 GiB this machine has free")."""
    free = available_memory()
    if need <= free:
        return None
    return (f"need {need / 2**30:,.1f} GiB of memory, more than the {free / 2**30:,.1f} GiB "
            f"this machine has free")


def available_memory() -> int:
    """Bytes this machine could still give (MemAvailable), or a large number if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62
