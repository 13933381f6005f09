"""Config loading: every error at once with its file:line:col, extends, --set, numbers."""

import textwrap

import pytest

from cnnrun.config import load_config
from cnnrun.errors import UserError

MODEL = """\
model:
  input_shape: [1, 12, 12]
  layers:
    - {type: conv2d, out_channels: 4, kernel_size: 3}
    - type: flatten
    - {type: linear, out_features: 10}
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def errors_of(path, overrides=()):
    with pytest.raises(UserError) as info:
        load_config(path, list(overrides))
    return str(info.value)


def test_every_error_is_reported_with_its_location(tmp_path):
    p = write(tmp_path, "bad.yaml", """\
        model:
          input_shape: [1, 28, 28]
          layers:
            - {type: conv2d, out_channels: 6, kernel_size: 5}
            - type: relu
            - type: conv2d
              out_chanels: 4
              kernel_size: 0
            - type: convv2d
        train:
          optimizer: {type: sgd, lr: 0.1, momentun: 0.9}
          epochs: 0
        """)
    lines = errors_of(p).splitlines()
    assert lines[0] == f"{p}: 6 problems in this config; fix them and run again:"
    assert lines[1:4] == [
        f"  {p}:6:7 model.layers[2].out_channels: required, but missing",
        f"  {p}:7:7 model.layers[2].out_chanels: unknown key (did you mean 'out_channels'?)",
        f"  {p}:8:7 model.layers[2].kernel_size: must be ≥ 1, got 0",
    ]
    assert lines[4].startswith(f"  {p}:9:7 model.layers[3]: unknown type 'convv2d' "
                               f"(did you mean 'conv2d'?); known types: adaptive_avgpool2d,")
    assert "maxpool2d" in lines[4]
    assert lines[5] == f"  {p}:11:35 train.optimizer.momentun: unknown key (did you mean 'momentum'?)"
    assert lines[6] == f"  {p}:12:3 train.epochs: must be ≥ 1, got 0; 0 epochs trains nothing: to score a model as it is, run cnnrun eval CHECKPOINT (with --config CONFIG for a weights-only file)"


def test_lr_written_as_5e_4_loads_as_a_number(tmp_path):
    """PyYAML reads 5e-4 (no dot) as a string; the schema must still give a float."""
    p = write(tmp_path, "c.yaml", MODEL + "train:\n  optimizer: {type: adam, lr: 5e-4}\n")
    cfg = load_config(p)
    assert cfg.train.optimizer.lr == 5e-4 and isinstance(cfg.train.optimizer.lr, float)


def test_shape_error_points_at_the_layer(tmp_path):
    p = write(tmp_path, "s.yaml", """\
        model:
          input_shape: [1, 6, 6]
          layers:
            - {type: conv2d, out_channels: 4, kernel_size: 3}
            - type: residual
              body:
                - {type: conv2d, name: c3, out_channels: 4, kernel_size: 7}
        """)
    assert errors_of(p) == (f"{p}:7:11 model.layers[1].body[0]: c3: kernel 7×7 (dilation 1) does "
                            f"not fit its padded input; input shape (4, 4, 4), padding 0")


def test_linear_mismatch_names_layer_and_shapes(tmp_path):
    p = write(tmp_path, "l.yaml", """\
        model:
          input_shape: [1, 6, 6]
          layers:
            - {type: conv2d, out_channels: 4, kernel_size: 3}
            - {type: linear, name: fc, out_features: 3}
        """)
    assert "model.layers[1]: fc: linear expects a flat (features,) input, got shape (4, 4, 4)" \
        in errors_of(p)


def test_malformed_yaml_points_at_the_line(tmp_path):
    p = write(tmp_path, "m.yaml", "model:\n  layers: [1, 2\n  input_shape: 3\n")
    msg = errors_of(p)
    assert msg.startswith(f"{p}:3:") and "not valid YAML" in msg


def test_missing_file(tmp_path):
    assert "no such config file" in errors_of(tmp_path / "nope.yaml")


def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    write(tmp_path, "base.yaml", MODEL + "train:\n  epochs: 7\n  optimizer: {type: sgd, lr: 0.1, "
                                         "momentum: 0.9}\n")
    child = write(tmp_path, "child.yaml", """\
        extends: base.yaml
        model:
          layers:
            - type: flatten
            - {type: linear, out_features: 5}
        train:
          optimizer: {lr: 0.2}
        """)
    cfg = load_config(child)
    assert cfg.model.input_shape == (1, 12, 12)  # from the base
    assert [l.type for l in cfg.model.layers] == ["flatten", "linear"]  # list replaced
    assert cfg.train.epochs == 7 and cfg.train.optimizer.momentum == 0.9  # merged
    assert cfg.train.optimizer.lr == 0.2
    assert cfg.name == "child"


def test_extends_error_locations_come_from_the_right_file(tmp_path):
    base = write(tmp_path, "base.yaml", MODEL + "train:\n  epochs: 0\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\ntrain:\n  batch_size: 0\n")
    msg = errors_of(child)
    assert f"{base}:8:3 train.epochs: must be ≥ 1, got 0; 0 epochs trains nothing: to score a model as it is, run cnnrun eval CHECKPOINT (with --config CONFIG for a weights-only file)" in msg
    assert f"{child}:3:3 train.batch_size: must be ≥ 1, got 0" in msg


def test_extends_cycle_shows_the_chain(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    msg = errors_of(tmp_path / "a.yaml")
    assert "'extends' forms a cycle" in msg and "a.yaml → " in msg and "b.yaml → " in msg


def test_set_overrides_scalars_and_list_items(tmp_path):
    p = write(tmp_path, "c.yaml", MODEL)
    cfg = load_config(p, ["train.epochs=1", "model.layers[0].out_channels=8",
                          "train.optimizer.lr=5e-4", "data.augment.hflip=true"])
    assert cfg.train.epochs == 1 and cfg.model.layers[0].out_channels == 8
    assert cfg.train.optimizer.lr == 5e-4 and cfg.data.augment.hflip is True


def test_set_errors_name_the_override(tmp_path):
    p = write(tmp_path, "c.yaml", MODEL)
    assert "  --set train.epochs: must be ≥ 1, got 0" in errors_of(p, ["train.epochs=0"])
    assert "model.layers[9] does not exist" in errors_of(p, ["model.layers[9].out_channels=3"])
    assert "expected key.path=value" in errors_of(p, ["train.epochs"])
    assert "not a key path" in errors_of(p, ["train..epochs=3"])


@pytest.mark.parametrize("layers, where, owner", [
    ("    - {type: relu, name: a}\n    - {type: tanh, name: a}\n", "3:3 model.layers",
     "the model's layers"),
    ("    - type: residual\n      body:\n        - {type: relu, name: a}\n"
     "        - {type: tanh, name: a}\n", "4:7 model.layers[0]", "residual"),
])
def test_duplicate_layer_names_are_a_located_config_error(tmp_path, layers, where, owner):
    p = write(tmp_path, "dup.yaml", "model:\n  input_shape: [1, 4, 4]\n  layers:\n" + layers)
    msg = errors_of(p)
    assert f"{p}:{where}: {owner}: two children are named 'a'; names must be unique" in msg
    assert "got" not in msg  # the validator's sentence, not a dump of the whole block


def _model_defaults():
    """Every field of the config schema whose default is itself a config section."""
    from pydantic import BaseModel

    from cnnrun.config import schema
    models = [v for v in vars(schema).values()
              if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == schema.__name__]
    return [(f"{m.__name__}.{name}", field.default) for m in models
            for name, field in m.model_fields.items() if isinstance(field.default, BaseModel)]


@pytest.mark.parametrize("where,default", _model_defaults(), ids=lambda v: v if isinstance(v, str) else "")
def test_section_defaults_equal_a_validated_empty_section(where, default):
    """Section defaults are built with model_construct (no validator is compiled at import,
    which `cnnrun summary`'s start-up pays for); they must be what validating {} gives."""
    validated = type(default).model_validate({})
    assert default == validated and default.model_dump() == validated.model_dump(), where


def test_there_are_section_defaults_to_check():
    assert {"RunConfig.train", "RunConfig.data", "TrainConfig.optimizer"} <= \
        {where for where, _ in _model_defaults()}
