"""`export` and `schema`: a checked ONNX file, and the JSON Schema every config validates against."""

import json

import pytest
import yaml


from helpers.cli import CONFIGS, ROOT, best, invoke, png_size, runner  # noqa: F401


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


def test_export_records_preprocessing_and_classes_and_import_reads_them(run, tmp_path):
    """metadata_props carry what a runtime elsewhere needs; cnnrun import puts them back."""
    import json

    import onnx
    import yaml
    path = tmp_path / "lenet.onnx"
    assert invoke("export", run / "checkpoints" / "best.safetensors", "-o", path).exit_code == 0
    props = {p.key: json.loads(p.value) for p in onnx.load(path).metadata_props}
    steps = props["preprocess"]["steps"]
    assert props["preprocess"]["layout"] == "NCHW" and props["preprocess"]["input_shape"] == [1, 28, 28]
    assert steps[0] == {"scale": 1 / 255} and len(steps[1]["normalize"]["mean"]) == 1
    assert props["classes"] == [str(i) for i in range(10)]
    assert invoke("import", path, "-o", tmp_path).exit_code == 0
    cfg = yaml.safe_load((tmp_path / "lenet.yaml").read_text())
    assert cfg["data"]["preprocess"]["normalize"] == steps[1]["normalize"]
