"""Block templates: expansion rules, and each block type of the zoo gradient- and RF-checked."""

import textwrap
from pathlib import Path

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.config.blocks import arithmetic
from cnnrun.errors import UserError
from cnnrun.tools.gradcheck import check_layer
from cnnrun.layers import RF
from helpers.checks import supports


def cfg_from(tmp_path, text):
    (tmp_path / "configs").mkdir(exist_ok=True)
    import shutil
    from pathlib import Path
    shutil.copytree(Path(__file__).parents[2] / "configs" / "blocks", tmp_path / "configs" / "blocks",
                    dirs_exist_ok=True)
    p = tmp_path / "configs" / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return load_config(p)


def test_repeat_first_and_names(tmp_path):
    cfg = cfg_from(tmp_path, """\
        extends: blocks/resnet.yaml
        model:
          input_shape: [2, 8, 8]
          layers:
            - {use: basic, name: layer2, repeat: 3, channels: 4, first: {stride: 2, downsample: true}}
        """)
    stage = cfg.model.layers[0]
    assert stage.type == "sequential" and [b.name for b in stage.layers] == ["0", "1", "2"]
    assert stage.layers[0].body[0].stride == 2 and len(stage.layers[0].shortcut) == 2
    assert stage.layers[1].body[0].stride == 1 and stage.layers[1].shortcut == []


def test_arithmetic_is_a_whitelist_not_eval():
    assert arithmetic("width * 4 + 1", {"width": 16}, "here") == 65
    with pytest.raises(UserError, match="numbers, parameters"):
        arithmetic("__import__('os').system('true')", {}, "here")
    with pytest.raises(UserError, match="unknown block parameter 'depth'"):
        arithmetic("depth * 2", {"width": 1}, "here")


def test_unknown_block_and_parameter_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="unknown block 'basik'"):
        cfg_from(tmp_path, """\
            extends: blocks/resnet.yaml
            model: {input_shape: [2, 8, 8], layers: [{use: basik}]}
            """)
    with pytest.raises(UserError, match="has no parameter chanels"):
        cfg_from(tmp_path, """\
            extends: blocks/resnet.yaml
            model: {input_shape: [2, 8, 8], layers: [{use: basic, chanels: 3}]}
            """)


BLOCKS = {  # a tiny instance of every block type the zoo uses, float64
    "basic-projection": ("resnet", "{use: basic, channels: 3, stride: 2, downsample: true}", (2, 6, 6)),
    "bottleneck": ("resnet", "{use: bottleneck, width: 2, downsample: true}", (3, 5, 5)),
    "dense": ("densenet", "{use: dense_layer, growth: 2, bn_size: 2}", (3, 5, 5)),
    "transition": ("densenet", "{use: transition, channels: 2}", (3, 6, 6)),
    "vgg-bn": ("vgg", "{use: conv3, channels: 2, bn: true}", (2, 5, 5)),
    # Inception-style parallel branches joined on channels (identity, 1×1, 3×3, pooled 1×1)
    "concat": ("vgg", "{type: concat, branches: [[], [{type: conv2d, out_channels: 2, kernel_size: 1}], "
                      "[{use: conv3, channels: 2}], [{type: maxpool2d, kernel_size: 3, stride: 1, "
                      "padding: 1}, {type: conv2d, out_channels: 1, kernel_size: 1}]]}", (2, 5, 5)),
}


def block(tmp_path, name):
    family, use, shape = BLOCKS[name]
    cfg = cfg_from(tmp_path, f"""\
        extends: blocks/{family}.yaml
        model:
          input_shape: {list(shape)}
          layers: [{use}]
        """)
    return cfg.model.layers[0], shape


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_gradients(tmp_path, name):
    layer, shape = block(tmp_path, name)
    for train in (True, False):
        for r in check_layer(layer, shape, train=train):
            np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-7, err_msg=r.name)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_receptive_field_equals_gradient_support(tmp_path, name):
    layer, shape = block(tmp_path, name)
    rf = layer.receptive_field(RF.of_input(shape[1:]), shape)
    units, reach = supports(layer, shape, seed=1)
    extents = [tuple(int(i.max() - i.min() + 1) for i in np.nonzero(r)) for r in reach if r.any()]
    assert max(extents) == tuple(min(a, b) for a, b in zip(rf.size, shape[1:]))


@pytest.mark.parametrize("library", sorted((Path(__file__).parents[2] / "configs" / "blocks")
                                            .glob("*.yaml")), ids=lambda p: p.stem)
def test_a_block_library_given_as_a_config_says_what_it_is(library):
    """`summary configs/blocks/vgg.yaml` once answered "model: required"."""
    with pytest.raises(UserError, match=r"a block library .* 'extends: " + library.name):
        load_config(library)
