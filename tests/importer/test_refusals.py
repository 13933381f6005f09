"""What cnnrun import refuses: bad files and graphs outside its reach, each with exit 2, one
paragraph naming the node or file and what to do, no traceback, and nothing written."""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from graphs import model, node, rand, save  # noqa: E402
from helpers.cli import invoke  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402


def refused(tmp_path, path, *words, args=()):
    out = tmp_path / "out"
    r = invoke("import", path, "-o", out, *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.output.startswith("error: ")
    for w in words:
        assert w in r.output.replace("\n", " "), r.output
    assert not out.exists() or not any(out.iterdir())
    return r.output


def conv_model():
    return model([node("Conv", ["x", "w"], "c"), node("Relu", ["c"], "y")], {"w": rand(2, 3, 3, 3)})


def test_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_text("name: not a model\n")
    refused(tmp_path, path, "not an ONNX model")


def test_a_truncated_model(tmp_path):
    data = conv_model().SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data[: len(data) // 2])
    refused(tmp_path, path, "not an ONNX model", "truncated")


def test_a_directory_and_a_fifo(tmp_path):
    refused(tmp_path, tmp_path, "a directory")
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    refused(tmp_path, fifo, "a pipe")  # read without blocking: nothing hangs


def test_an_unsupported_operator_names_its_node(tmp_path):
    proto = model([node("Elu", ["x"], "y", name="/features/act/Elu")])
    refused(tmp_path, save(proto, tmp_path / "m.onnx"), "node '/features/act/Elu' (Elu)",
            "this operator has no cnnrun layer", "cnnrun imports")


def test_an_lstm_is_not_a_cnn(tmp_path):
    w, r = rand(1, 16, 3), rand(1, 16, 4)
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["h"], name="lstm", hidden_size=4)
    graph = helper.make_graph(
        [lstm, node("Relu", ["h"], "y")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(r, "R")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    refused(tmp_path, save(proto, tmp_path / "m.onnx"), "(LSTM)", "recurrent")


def test_a_graph_that_is_not_series_parallel(tmp_path):
    nodes = [node("Relu", ["x"], "a"), node("Sigmoid", ["x"], "b"), node("Add", ["a", "b"], "c"),
             node("Add", ["a", "c"], "y", name="/cross/Add")]
    refused(tmp_path, save(model(nodes), tmp_path / "m.onnx"), "series-parallel")


def test_multiplying_two_data_tensors_is_refused(tmp_path):
    nodes = [node("Sigmoid", ["x"], "g"), node("Mul", ["x", "g"], "y", name="/se/Mul")]
    refused(tmp_path, save(model(nodes), tmp_path / "m.onnx"), "node '/se/Mul' (Mul)",
            "two data tensors")


def test_missing_external_weights(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(conv_model(), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    (tmp_path / "m.onnx.data").unlink()
    refused(tmp_path, path, "m.onnx.data", "no such external weights file")


def test_external_weights_outside_the_model_folder(tmp_path):
    proto = conv_model()
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    refused(tmp_path, save(proto, tmp_path / "m.onnx"), "outside the model's folder")


def test_external_weights_shorter_than_the_tensor(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(conv_model(), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    refused(tmp_path, path, "truncated")


def test_a_huge_constant_is_refused_before_it_is_made(tmp_path):
    nodes = [node("ConstantOfShape", ["shape"], "big"), node("Add", ["x", "big"], "y")]
    proto = model(nodes, {"shape": np.array([1, 3, 100000, 100000], np.int64)})
    refused(tmp_path, save(proto, tmp_path / "m.onnx"), "(ConstantOfShape)", "elements")


def test_existing_files_are_kept_without_force(tmp_path):
    path = save(conv_model(), tmp_path / "m.onnx")
    assert invoke("import", path, "-o", tmp_path / "out").exit_code == 0
    (tmp_path / "out" / "m.yaml").write_text("mine\n")
    r = invoke("import", path, "-o", tmp_path / "out")
    assert r.exit_code == 2 and "--force" in r.output
    assert (tmp_path / "out" / "m.yaml").read_text() == "mine\n"
    assert invoke("import", path, "-o", tmp_path / "out", "--force").exit_code == 0


def test_symbolic_sizes_need_an_input_shape(tmp_path):
    proto = conv_model()
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    path = save(proto, tmp_path / "m.onnx")
    refused(tmp_path, path, "--input-shape")
    r = invoke("import", path, "-o", tmp_path / "out", "--input-shape", "3,10,9")
    assert r.exit_code == 0, r.output
    assert "input_shape: [3, 10, 9]" in (tmp_path / "out" / "m.yaml").read_text()
