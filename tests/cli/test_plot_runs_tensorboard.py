"""`plot`, `runs` and the TensorBoard logs of a short run."""

import json
import struct

import pytest


from cnnrun.train import checkpoint
from helpers.cli import CONFIGS, ROOT, best, invoke, png_size, runner  # noqa: F401


def test_plot_writes_the_four_pictures(run, tmp_path):
    r = invoke("plot", run, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    sizes = {p.name: png_size(p) for p in tmp_path.glob("*.png")}
    assert sizes == {"curves.png": (1000, 400), "lr.png": (600, 400),
                     "confusion.png": (800, 700), "filters.png": (840, 190)}


def test_plot_of_a_directory_without_metrics_is_a_user_error(tmp_path):
    r = invoke("plot", tmp_path)
    assert r.exit_code == 2 and "no epochs in metrics.jsonl" in r.output


def test_runs_lists_the_run(run):
    r = invoke("runs", run.parent.parent, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output)
    assert row["name"] == "lenet5" and row["epochs"] == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    held = checkpoint.load(run / "checkpoints" / "best.safetensors")[2]
    at = [r for r in rows if r["kind"] == "epoch" and r["epoch"] == held["epoch"]]
    assert row["best"] == at[0]["test_accuracy"] and row["best_epoch"] == held["epoch"]
    assert row["best_metric"] == "test_accuracy"  # no validation split in lenet5.yaml
    assert row["chosen_by"] == "train_loss"
    assert row["checkpoint"].endswith("best.safetensors")
    assert invoke("runs", run / "nope").exit_code == 2


def test_tensorboard_event_files_parse_back(run):
    from tensorboardX.proto import event_pb2
    (path,) = (run / "tensorboard").glob("events.out.tfevents.*")
    tags = {}
    for event in _records(path.read_bytes()):
        e = event_pb2.Event.FromString(event)
        for v in e.summary.value:
            kind = "histo" if v.HasField("histo") else "scalar" if v.HasField(
                "simple_value") else "other"
            tags.setdefault(v.tag, []).append((e.step, kind, v.simple_value))
    assert [s for s, _, _ in tags["epoch/train_loss"]] == [1, 2]
    assert tags["weights/conv1.weight"][0][1] == "histo"
    assert len(tags["step/loss"]) >= 2 and "model/text_summary" in tags
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch1 = next(r for r in rows if r["kind"] == "epoch")
    assert tags["epoch/train_loss"][0][2] == pytest.approx(epoch1["train_loss"], rel=1e-6)


def _records(data: bytes):
    """TFRecord framing: length (u64), its masked CRC, the bytes, their masked CRC."""
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        yield data[pos + 12:pos + 12 + n]
        pos += 12 + n + 4
