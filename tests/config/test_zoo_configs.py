"""Every file in configs/: it validates, builds, its summary totals are the published ones,
and a training step runs. The numbers below come from the papers, torchvision's model
definitions and hand counts (see each config's header), never from cnnrun itself."""

from pathlib import Path

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.ops.layout import to_engine
from cnnrun.engine.model import Model, flatten
from cnnrun.tools.summary import summarize
from helpers.nets import SMALL_INPUT

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))

EXPECTED = {  # (parameters, MACs per sample)
    "lenet5": (61_706, 416_520),
    "lenet5-1998": (60_850, 332_824),
    "mnist-base": (431_080, 2_293_000),
    "alexnet": (61_100_840, 714_188_480),
    "vgg11": (132_863_336, 7_609_090_048),
    "vgg13": (133_047_848, 11_308_466_176),
    "vgg16": (138_357_544, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464),
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 4_089_184_256),
    "densenet121": (7_978_856, 2_834_161_664),
    "resnet20-cifar10": (272_474, 40_813_184),
    "vgg11-cifar10": (9_231_114, 152_769_536),
    "densenet-bc-cifar10": (176_122, 72_365_352),
}
AT_FULL_SIZE = {"vgg16", "resnet18", "resnet50"}  # 224×224, batch 1, at least once
def test_every_config_has_expected_numbers():
    assert {p.stem for p in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_summary_totals(path):
    cfg = load_config(path)
    s = summarize(Model(cfg.model.layers, cfg.model.input_shape), cfg.train)
    assert (s["total_params"], s["total_macs"]) == EXPECTED[path.stem]
    assert s["total_flops"] == 2 * s["total_macs"]
    assert sum(r["macs"] for r in s["layers"] if r["depth"] == 0) == s["total_macs"]
    assert f"{EXPECTED[path.stem][0]:,}" in path.read_text()  # the header states it too


def train_step(cfg, batch):
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0)
    x = np.random.default_rng(0).random((batch, *cfg.model.input_shape), dtype=np.float32)
    y, cache = model.forward(state, to_engine(x), train=True, rng=np.random.default_rng(0))
    loss, g = cfg.train.loss.value_and_grad(y, np.arange(batch) % y.shape[0])
    _, grads = model.backward(state, cache, g)
    assert np.isfinite(float(loss))
    assert set(flatten(grads)) == model.trainable_names()
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in flatten(grads).values())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_step(path):
    overrides = []
    if path.stem in SMALL_INPUT:
        overrides.append(f"model.input_shape={SMALL_INPUT[path.stem]}")
    train_step(load_config(path, overrides), batch=2)


@pytest.mark.parametrize("name", sorted(AT_FULL_SIZE))
def test_imagenet_configs_train_one_step_at_224(name):
    train_step(load_config(Path(__file__).parents[2] / "configs" / f"{name}.yaml"), batch=1)


def rows(name):
    cfg = load_config(Path(__file__).parents[2] / "configs" / f"{name}.yaml")
    return summarize(Model(cfg.model.layers, cfg.model.input_shape))["layers"]


def test_vgg16_receptive_fields_match_the_published_table():
    """Araujo, Norris & Sim (Distill 2019), and Wu's VGG-16 table at pool5."""
    expected = {"features.0": (3, 1), "features.2": (5, 1), "features.4": (6, 2),  # pool1
                "features.5": (10, 2), "features.7": (14, 2), "features.9": (16, 4),
                "features.10": (24, 4), "features.12": (32, 4), "features.14": (40, 4),
                "features.16": (44, 8), "features.17": (60, 8), "features.19": (76, 8),
                "features.21": (92, 8), "features.23": (100, 16), "features.24": (132, 16),
                "features.26": (164, 16), "features.28": (196, 16),
                "features.30": (212, 32)}  # pool5, torchvision's index
    got = {r["name"]: (r["receptive_field"][0], r["jump"][0]) for r in rows("vgg16")}
    assert {k: got[k] for k in expected} == expected


def test_alexnet_receptive_fields_match_the_published_table():
    expected = {"features.0": (11, 4), "features.2": (19, 8), "features.3": (51, 8),
                "features.5": (67, 16), "features.6": (99, 16), "features.8": (131, 16),
                "features.10": (163, 16), "features.12": (195, 32)}
    got = {r["name"]: (r["receptive_field"][0], r["jump"][0]) for r in rows("alexnet")}
    assert {k: got[k] for k in expected} == expected


def test_lenet5_1998_reproduces_the_papers_counts():
    """LeCun et al. 1998, §II-B: trainable parameters and connections per layer."""
    expected = {"C1": (156, 122_304), "S2": (12, 5_880), "C3": (1_516, 151_600),
                "S4": (32, 2_000), "C5": (48_120, 48_120), "F6": (10_164, 10_164)}
    got = {r["name"]: (r["params"], r["connections"]) for r in rows("lenet5-1998")}
    assert {k: got[k] for k in expected} == expected
    assert sum(p for p, _ in expected.values()) == 60_000


def test_resnet_and_densenet_names_follow_torchvision():
    names18 = set(Model(load_config(Path("configs/resnet18.yaml")).model.layers,
                        (3, 224, 224)).param_shapes())
    assert {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.weight", "layer4.1.bn2.bias", "fc.weight"} <= names18
    dense = Model(load_config(Path("configs/densenet121.yaml")).model.layers, (3, 224, 224))
    names = set(dense.param_shapes()) | set(dense.buffer_shapes())
    assert {"features.conv0.weight", "features.denseblock1.denselayer1.norm1.running_mean",
            "features.denseblock4.denselayer16.conv2.weight", "features.transition3.conv.weight",
            "features.norm5.weight", "classifier.weight"} <= names


def test_wu_extents_for_pool5_match_his_vgg16_table():
    """Wu (2017), VGG-16 table, 'r. size': the extent in each layer's input for one pool5 unit."""
    from cnnrun.engine.state import sequential_leaves
    from cnnrun.tools.summary import extents_to_target
    cfg = load_config(Path(__file__).parents[2] / "configs" / "vgg16.yaml")
    model = Model(cfg.model.layers, cfg.model.input_shape)
    ext = extents_to_target(model, "features.30")  # pool5
    order = [n for n, _, _ in sequential_leaves(model.root, model.input_shape)]
    got = [ext[n][0] for n in order if n in ext]
    assert got == [212, 210, 210, 208, 208, 104, 102, 102, 100, 100, 50, 48, 48, 46, 46, 44, 44,
                   22, 20, 20, 18, 18, 16, 16, 8, 6, 6, 4, 4, 2, 2]


def test_rf_target_through_the_cli_and_on_branching_nets():
    from typer.testing import CliRunner
    from cnnrun.cli import app
    import json
    r = CliRunner().invoke(app, ["summary", "configs/vgg16.yaml", "--rf-target", "features.30",
                                 "--json"])
    rows = {row["name"]: row for row in json.loads(r.output)["layers"]}
    assert rows["features"]["extent_to_target"] == [212, 212]
    assert rows["features.30"]["extent_to_target"] == [2, 2]
    r = CliRunner().invoke(app, ["summary", "configs/resnet18.yaml", "--rf-target", "fc"])
    assert r.exit_code == 2 and "branches" in r.output


@pytest.mark.parametrize("name", ["resnet20-cifar10", "vgg11-cifar10", "densenet-bc-cifar10"])
def test_cifar_configs_train_a_few_steps_on_synthetic_data(name, tmp_path):
    import io
    from cnnrun.train.progress import PlainReporter
    from cnnrun.train.trainer import Trainer
    cfg = load_config(Path(__file__).parents[2] / "configs" / f"{name}.yaml", [
        "data.dataset=synthetic", "data.synthetic.shape=[3, 32, 32]",
        "data.synthetic.train_size=48", "data.synthetic.test_size=16", "data.val_split=16",
        "train.epochs=1", "train.batch_size=16"])
    result = Trainer(cfg, tmp_path, PlainReporter(stream=io.StringIO())).run()
    assert result["epochs"] == 1 and np.isfinite(result["test"]["loss"])
    assert (tmp_path / "checkpoints" / "best.safetensors").exists()
