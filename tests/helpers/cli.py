"""Running the CLI in-process, and what its outputs are checked with."""

import struct
from pathlib import Path

from typer.testing import CliRunner

from cnnrun.cli import app

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])

def best(run):
    return run / "checkpoints" / "best.safetensors"

def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height
