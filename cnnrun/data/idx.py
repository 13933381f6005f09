"""The IDX format of the original MNIST files (gzipped or raw).

Header: two zero bytes, a type code (0x08 = uint8), the number of
dimensions, then each dimension as a big-endian uint32; the payload follows.
Magic 2051 (0x00000803) marks images, 2049 (0x00000801) labels.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import UserError

DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    path = Path(path)
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError as e:
        raise UserError(f"{path}: file not found.") from e
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read this IDX file ({e}); it may be truncated or not "
                        f"gzip data. Delete it and fetch it again.") from e
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in DTYPES:
        raise UserError(f"{source}: not an IDX file (bad magic number {raw[:4].hex()}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{source}: truncated IDX header.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(f"{source}: IDX payload is {len(raw) - header} bytes but the header "
                        f"{dims} says {expected}; the file is truncated or corrupt.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped if the name ends in .gz); used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)
