"""Memory two processes map at once: a file in /dev/shm (RAM), holding named arrays.

The creator makes the file and maps it; the other process maps it by path; the
creator then removes the name (``unlink``), so no file outlives the processes even
if both are killed: the memory lives while a mapping does. Arrays are NumPy views
of the mapping, laid out by ``layout`` (each aligned to a cache line), so neither
process copies through a pipe what both can read in place.
"""

from __future__ import annotations

import math
import mmap
import os
import tempfile

import numpy as np

ALIGN = 64  # bytes: each array starts on its own cache line


def layout(entries) -> tuple[dict, int]:
    """{name: (offset, shape, dtype)} for entries (name, shape, dtype), and the bytes in all."""
    places, end = {}, 0
    for name, shape, dtype in entries:
        dtype = np.dtype(dtype)
        end = -(-end // ALIGN) * ALIGN
        places[name] = (end, tuple(shape), dtype.str)
        end += math.prod(shape) * dtype.itemsize
    return places, max(end, 1)


def _directory() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None  # else the temporary directory


def sweep_orphans() -> list[str]:
    """Remove blocks whose owning process is gone (a kill between a block's creation and its
    unlink, the moment no other process has it mapped yet); the removed paths."""
    directory = _directory() or tempfile.gettempdir()
    removed = []
    for name in os.listdir(directory):
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != "cnnrun" or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        try:
            os.kill(pid, 0)
            continue  # its owner still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's process: alive
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


class SharedBlock:
    """One mapped file and the arrays laid out in it."""

    def __init__(self, path: str, places: dict, size: int, create: bool):
        self.path, self.places, self.size = path, places, size
        if create:
            sweep_orphans()
            # the owner's pid in the name, so a later run can tell an orphan from a live block
            fd, self.path = tempfile.mkstemp(prefix=f"cnnrun-{os.getpid()}-", dir=_directory())
            os.ftruncate(fd, size)
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._arrays = {}

    @classmethod
    def create(cls, entries) -> "SharedBlock":
        places, size = layout(entries)
        return cls("", places, size, create=True)

    @classmethod
    def attach(cls, path: str, places: dict, size: int) -> "SharedBlock":
        return cls(path, {k: tuple(v) for k, v in places.items()}, size, create=False)

    def describe(self) -> dict:
        """What the other process needs to attach (JSON-ready)."""
        return {"path": self.path, "places": self.places, "size": self.size}

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def array(self, name: str, shape=None) -> np.ndarray:
        """The named array, or the leading ``shape`` of its room (a smaller batch's share)."""
        offset, room, dtype = self.places[name]
        shape = tuple(room if shape is None else shape)
        key = (name, shape)
        if key not in self._arrays:
            count = math.prod(shape)
            if count > math.prod(room):
                raise ValueError(f"{name}: {shape} does not fit its room {room}")
            self._arrays[key] = np.frombuffer(self._map, dtype=dtype, count=count,
                                              offset=offset).reshape(shape)
        return self._arrays[key]

    def close(self) -> None:
        self._arrays.clear()  # the views must go before the mapping can
        try:
            self._map.close()
        except BufferError:  # a caller still holds a view: the mapping goes with it
            pass
