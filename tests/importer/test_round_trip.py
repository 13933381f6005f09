"""export then import, for every config in configs/: the imported config validates, its totals
(parameters, MACs, receptive field) are the original's, and so are its outputs."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from cnnrun.config import load_config  # noqa: E402
from cnnrun.engine.model import Model  # noqa: E402
from cnnrun.export.onnx import export_onnx  # noqa: E402
from cnnrun.ops.layout import to_engine  # noqa: E402
from cnnrun.tools.onnx_import import import_onnx  # noqa: E402
from cnnrun.train.trained import load_trained  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_export_then_import_gives_the_same_network(config, tmp_path):
    cfg = load_config(config)
    original = Model(cfg.model.layers, cfg.model.input_shape)
    state = original.init(seed=3)
    onnx_path = export_onnx(original, state, tmp_path / "net.onnx")
    import_onnx(onnx_path, tmp_path, "back", check=False)
    back = load_trained(tmp_path / "back.safetensors")  # its stored config, validated again
    assert load_config(tmp_path / "back.yaml").model.model_dump() == back.cfg.model.model_dump()
    model = back.model
    assert (model.n_params(), model.macs()) == (original.n_params(), original.macs())
    assert model.receptive_field() == original.receptive_field()
    x = to_engine(np.random.default_rng(0).uniform(-1, 1, (1, *original.input_shape))
                  .astype(np.float32))
    ours, _ = model.forward(back.state, x)
    theirs, _ = original.forward(state, x)
    scale = float(np.abs(np.asarray(theirs)).max())
    assert float(np.abs(np.asarray(ours) - np.asarray(theirs)).max()) <= 1e-5 * scale
