"""The side-by-side benchmark's machinery (benchmarks/compare_torch.py) runs: both engines'
worker processes answer the burst protocol, and a round gives times and memory.

No time is asserted: only that the steps ran and were counted.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
compare_torch = pytest.importorskip("compare_torch")


def test_a_round_times_both_engines_in_bursts(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(compare_torch, "BURSTS", 2)
    monkeypatch.setattr(compare_torch, "BURST_S", 0.05)
    monkeypatch.setattr(compare_torch, "GAP_S", 0.0)
    ours, theirs = compare_torch.measure_round("lenet5", 8, "train")
    for result in (ours, theirs):
        assert result["seconds"] > 0 and result["peak_rss_mb"] > 0


def test_a_worker_counts_its_steps():
    worker = compare_torch.Worker("cnnrun", "lenet5", 4, "infer")
    try:
        assert worker.ask() == {}  # built
        worker.burst()
        worker.burst()
        assert worker.steps >= 2 and worker.seconds > 0
    finally:
        assert worker.close()["peak_rss_mb"] > 0


def test_a_dead_worker_is_an_error():
    worker = compare_torch.Worker("cnnrun", "no-such-config", 4, "infer")
    with pytest.raises(RuntimeError, match="exited with"):
        worker.ask()
    worker.process.wait()


@pytest.mark.parametrize("config", ["densenet-bc-cifar10", "resnet20-cifar10", "lenet5",
                                    "vgg11-cifar10", "alexnet", "densenet121"])
def test_the_pytorch_twin_computes_the_same_function(config):
    """The benchmark compares like with like: each twin's eval output is cnnrun's (dense and
    concat twins included), so a ratio is never one of two different networks."""
    pytest.importorskip("torch")
    assert compare_torch.check_outputs_agree(config) < 1e-4
