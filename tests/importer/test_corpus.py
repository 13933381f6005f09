"""The onnx package's own test corpus: PyTorch's module tests exported to ONNX with their inputs
and expected outputs (onnx/backend/test/data/pytorch-converted). Every case is imported; the
ones inside cnnrun's operator list must match the expected output within the corpus's
tolerance, and every other one must be refused with the reason listed here."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from cnnrun.errors import UserError  # noqa: E402
from cnnrun.ops.layout import to_engine, to_external  # noqa: E402
from cnnrun.tools.onnx_import import import_onnx  # noqa: E402
from cnnrun.train.trained import load_trained  # noqa: E402

CORPUS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "model.onnx").exists())

# The cases cnnrun refuses, each with the words its one-paragraph refusal must contain.
# 3-D convolution, pooling and batch norm; PReLU is elementwise, so a 3-D map's imports.
THREE_D = [c for c in CASES if "3d" in c and c.startswith(("test_Conv3d", "test_AvgPool3d",
                                                             "test_MaxPool3d", "test_BatchNorm3d"))]
REFUSED = {
    **{c: "3-D" for c in THREE_D},
    "test_AvgPool1d": "(Unsqueeze): this operator has no cnnrun layer",  # 1-D pooling
    "test_AvgPool1d_stride": "(Unsqueeze): this operator has no cnnrun layer",
    "test_MaxPool1d": "1-D pooling",
    "test_MaxPool1d_stride": "1-D pooling",
    "test_MaxPool1d_stride_padding_dilation": "1-D pooling",
    "test_ConstantPad2d": "constant padding with value 2",
    "test_ReflectionPad2d": "reflect padding",
    "test_ReplicationPad2d": "edge padding",
    "test_ELU": "(Elu): this operator has no cnnrun layer",
    "test_SELU": "(Selu): this operator has no cnnrun layer",
    "test_Softplus": "(Softplus): this operator has no cnnrun layer",
    "test_Softsign": "(Abs): this operator has no cnnrun layer",
    "test_Softmin": "(Neg): this operator has no cnnrun layer",
    "test_PoissonNLLLLoss_no_reduce": "(Exp): this operator has no cnnrun layer",
    "test_Embedding": "not floats",
    "test_Embedding_sparse": "not floats",
    "test_GLU": "extra outputs",  # Split
    "test_GLU_dim": "extra outputs",
    "test_PixelShuffle": "it reshapes (1, 9, 4, 4) to (1, 1, 3, 3, 4, 4)",
    "test_log_softmax_dim3": "over axis 3",
    "test_softmax_functional_dim3": "over axis 3",
}
IMPORTED = [c for c in CASES if c not in REFUSED]


def tensor(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def test_corpus_is_the_one_we_listed():
    """A newer onnx with new cases fails here, so every case is decided, not silently run."""
    assert len(CASES) == 82 and set(REFUSED) <= set(CASES)
    assert len(IMPORTED) == 46 and len(REFUSED) == 36


@pytest.mark.parametrize("case", IMPORTED)
def test_case_imports_and_matches_its_expected_output(case, tmp_path):
    data = CORPUS / case / "test_data_set_0"
    x, expected = tensor(data / "input_0.pb"), tensor(data / "output_0.pb")
    import_onnx(CORPUS / case / "model.onnx", tmp_path, "m", check=False)
    trained = load_trained(tmp_path / "m.safetensors")
    ours, _ = trained.model.forward(trained.state, to_engine(x.astype(np.float32)))
    np.testing.assert_allclose(to_external(np.asarray(ours)), expected, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_case_outside_the_operator_list_is_refused_with_its_reason(case, tmp_path):
    with pytest.raises(UserError) as e:
        import_onnx(CORPUS / case / "model.onnx", tmp_path, "m", check=False)
    assert REFUSED[case] in str(e.value)
    assert not list(tmp_path.iterdir())  # nothing written for a refused model
