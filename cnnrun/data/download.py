"""Fetch a file over HTTP(S) into a cache directory, verifying its SHA-256.

The file is written under a temporary name and renamed only once its
checksum matches, so a broken download never looks like a good one.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """``dest`` with the verified content of ``url`` (kept if already present and valid)."""
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{url}: download failed ({e}). Check the network, or put the files in "
                        f"a directory and set data.root to it.") from e
    got = sha256_of(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{url}: SHA-256 mismatch (expected {sha256}, got {got}); the file was "
                        f"discarded. The mirror may serve a different file.")
    os.replace(tmp, dest)
    return dest
