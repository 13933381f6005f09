"""export, plot, runs, schema, embed, maximize, ensembles and ten crops, predict --explain
and TensorBoard logs, on one short LeNet-5 run trained on shipped digits."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnrun.cli import app

for extra in ("onnx", "onnxruntime", "matplotlib", "tensorboardX", "jsonschema", "PIL"):
    pytest.importorskip(extra)  # pip install -e ".[test,onnx,plot,tensorboard]"

ROOT = Path(__file__).parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs of LeNet-5 on 600 shipped digits, with TensorBoard logging."""
    out = tmp_path_factory.mktemp("runs") / "lenet5" / "r1"
    r = invoke("train", ROOT / "configs" / "lenet5.yaml", "--out", out, "--quiet",
               "--set", "train.epochs=2", "--set", "data.train_limit=600",
               "--set", "data.test_limit=200", "--set", "log=[tensorboard]",
               "--set", "train.log_every=5")
    assert r.exit_code == 0, r.output
    return out


def best(run):
    return run / "checkpoints" / "best.safetensors"


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_export_writes_a_checked_onnx_file(run, tmp_path):
    r = invoke("export", best(run), "-o", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    assert "onnxruntime" in r.output and "agrees to" in r.output
    import onnx
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))


def test_export_refuses_other_formats_and_old_opsets(run):
    r = invoke("export", best(run), "--format", "tflite")
    assert r.exit_code == 2 and "the only export format is 'onnx'" in r.output
    r = invoke("export", best(run), "--opset", "9")
    assert r.exit_code == 2 and "opset 13 or later" in r.output


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
    assert row["best"] == max(r["test_accuracy"] for r in rows if r["kind"] == "epoch")
    assert row["best_metric"] == "test_accuracy"  # no validation split in lenet5.yaml
    assert row["checkpoint"].endswith("best.safetensors")
    assert invoke("runs", run / "nope").exit_code == 2


def test_ensemble_and_ten_crops(run):
    one = json.loads(invoke("eval", best(run), "--json").output)
    last = run / "checkpoints" / "last.safetensors"
    two = json.loads(invoke("eval", best(run), last, "--json").output)
    assert two["count"] == one["count"] == 200 and len(two["checkpoints"]) == 2
    crops = invoke("eval", best(run), "--crops", "10", "--crop-pad", "2", "--json")
    assert crops.exit_code == 0, crops.output
    m = json.loads(crops.output)
    assert m["crops"] == 10 and abs(m["accuracy"] - one["accuracy"]) < 0.15
    r = invoke("eval", best(run), "--crops", "10")
    assert r.exit_code == 2 and "nothing to crop" in r.output


def test_ten_crops_are_the_corners_centre_and_mirrors():
    from cnnrun.train.evaluate import ten_crops
    x = np.arange(2 * 1 * 4 * 5, dtype=np.float32).reshape(2, 1, 4, 5)
    c = ten_crops(x, (2, 3))
    assert c.shape == (10, 2, 1, 2, 3)
    np.testing.assert_array_equal(c[0], x[:, :, :2, :3])
    np.testing.assert_array_equal(c[3], x[:, :, 2:, 2:])
    np.testing.assert_array_equal(c[4], x[:, :, 1:3, 1:4])
    np.testing.assert_array_equal(c[5:], c[:5, ..., ::-1])


def test_embed_and_neighbours(run, tmp_path):
    out = tmp_path / "f.npy"
    r = invoke("embed", best(run), "--layer", "fc2", "-o", out, "--neighbours", "3",
               "--queries", "4", "--picture", tmp_path / "nn.png", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    feats = np.load(out)
    assert feats.shape == (200, 84) and len(np.load(tmp_path / "f-labels.npy")) == 200
    assert len(result["neighbours"]) == 4 and all(len(q["nearest"]) == 3
                                                  for q in result["neighbours"])
    d = [n["distance"] for n in result["neighbours"][0]["nearest"]]
    assert d == sorted(d)
    assert png_size(tmp_path / "nn.png")[0] > 0


def test_embed_names_a_missing_layer(run):
    r = invoke("embed", best(run), "--layer", "fc9")
    assert r.exit_code == 2 and "no layer 'fc9'" in r.output and "fc2" in r.output


def test_nearest_matches_brute_force():
    from cnnrun.tools.analysis import nearest
    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(5, 4)), rng.normal(size=(30, 4))
    idx, dist = nearest(q, p, 3)
    brute = np.linalg.norm(q[:, None] - p[None], axis=2)
    np.testing.assert_array_equal(idx, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :3])


def test_maximize_raises_the_units_activation(run, tmp_path):
    from cnnrun.tools.analysis import maximize
    from cnnrun.train.trained import load_trained
    tr = load_trained(best(run))
    rises = [h[-1] - h[0] for h in (maximize(tr.model, tr.state, "conv2", u, steps=40)[1]
                                    for u in range(4))]
    assert max(rises) > 0.5
    r = invoke("maximize", best(run), "--layer", "conv2", "--units", "0,1", "--steps", "5",
               "-o", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    assert png_size(tmp_path / "m.png")[0] > 0
    assert invoke("maximize", best(run), "--layer", "conv2", "--units", "99").exit_code == 2


def test_predict_explain_draws_each_layer(run, tmp_path):
    from PIL import Image
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255
    Image.fromarray(img).save(tmp_path / "one.png")
    r = invoke("predict", best(run), tmp_path / "one.png", "--explain", "-o", tmp_path / "ex",
               "--json")
    assert r.exit_code == 0, r.output
    maps = json.loads(r.output)[0]["feature_maps"]
    assert [Path(m).name for m in maps] == ["one-00-conv1.png", "one-01-1.png", "one-02-2.png",
                                            "one-03-conv2.png", "one-04-4.png", "one-05-5.png"]


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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_validates_against_the_json_schema(path):
    import jsonschema
    from cnnrun.config.jsonschema import config_schema
    jsonschema.validate(yaml.safe_load(path.read_text()), config_schema())


def test_the_schema_rejects_a_bad_layer_and_a_missing_model():
    import jsonschema
    from cnnrun.config.jsonschema import config_schema
    schema = config_schema()
    bad = {"model": {"input_shape": [1, 8, 8],
                     "layers": [{"type": "conv2d", "out_channels": 4, "kernel_sise": 3}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError, match="'model' is a required property"):
        jsonschema.validate({"train": {"epochs": 1}}, schema)
    jsonschema.validate({"extends": "base.yaml", "train": {"epochs": 1}}, schema)


def test_schema_command_writes_json(tmp_path):
    r = invoke("schema", "-o", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["title"] == "cnnrun config" and "UseBlock" in s["$defs"]
