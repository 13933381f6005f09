"""SIGKILL, SIGTERM and SIGINT while `train.processes: 2` starts its workers and takes its
first steps: no worker outlives the run, the next run removes any shared block the kill left
in /dev/shm before it was unlinked, and a SIGTERM or SIGINT still ends in 143 or 130."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """\
model:
  input_shape: [1, 28, 28]
  layers:
    - {type: conv2d, name: conv1, out_channels: 4, kernel_size: 5}
    - {type: relu}
    - {type: flatten}
    - {type: linear, name: fc, out_features: 10}
data: {train_limit: 2048, test_limit: 64}
train: {epochs: 30, batch_size: 64, processes: 2}
"""
SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir() or not hasattr(os, "fork"),
                                reason="needs /dev/shm and fork")


def descendants(pid: int) -> set[int]:
    """Processes whose parent chain reaches pid (read from /proc)."""
    parents = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def blocks_of(pid: int) -> list[str]:
    return [p.name for p in SHM.iterdir() if p.name.startswith(f"cnnrun-{pid}-")]


def start(tmp_path, name, *sets):
    """The run to signal lasts several seconds, well past the last signal time below."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    return subprocess.Popen([sys.executable, "-m", "cnnrun", "train", str(tmp_path / "c.yaml"),
                             "--out", str(tmp_path / name), "--quiet", *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143),
                                       (signal.SIGINT, 130)])
@pytest.mark.parametrize("delay", [0.6, 1.0, 1.6])
def test_a_signal_during_worker_start_up(tmp_path, sig, code, delay):
    proc = start(tmp_path, "run")
    time.sleep(delay)
    children = descendants(proc.pid)
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not end within 30 s of the signal")
    err = proc.stderr.read()
    assert rc == code, err
    assert err.count("error:") == (0 if sig == signal.SIGKILL else 1), err  # said once
    assert "Traceback" not in err, err
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)
    alive = [c for c in children if Path(f"/proc/{c}").exists()
             and "(Z)" not in (Path(f"/proc/{c}/stat").read_text()[:60] if
                               Path(f"/proc/{c}/stat").exists() else "")]
    assert not alive, f"workers outlived the run: {alive}"
    if sig != signal.SIGKILL:
        assert not blocks_of(proc.pid), blocks_of(proc.pid)
    after = start(tmp_path, "next", "--set", "data.train_limit=128",  # it sweeps what a
                  "--set", "train.epochs=1")  # SIGKILL left
    assert after.wait(timeout=120) == 0, after.stderr.read()
    assert not blocks_of(proc.pid)
