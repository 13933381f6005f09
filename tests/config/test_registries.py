"""Every declared kind has one registry, and the schema, `summary` and `cnnrun layers` read
it: each registered optimizer, schedule and loss validates and summarises, and a key of a
sibling type is named as such."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnrun.cli import app
from cnnrun.engine.losses import LOSSES
from cnnrun.optim import OPTIMIZERS, SCHEDULES

LENET = str(Path(__file__).parents[2] / "configs" / "lenet5.yaml")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("key, tag", [("optimizer", t) for t in OPTIMIZERS.names()] +
                         [("loss", t) for t in LOSSES.names()] +
                         [("schedule", t) for t in SCHEDULES.names()])
def test_summary_and_validate_take_every_registered_type(key, tag):
    override = f"train.{key}={{type: {tag}}}"
    r = invoke("validate", LENET, "--set", override)
    assert r.exit_code == 0, r.output
    r = invoke("summary", LENET, "--set", override, "--json")
    assert r.exit_code == 0, r.output
    memory = json.loads(r.output)["memory"]
    if key == "optimizer":
        cls = OPTIMIZERS.get(tag)
        slots = cls.model_validate({"type": tag}).slots()
        assert memory["optimizer_bytes"] == slots * memory["gradients_bytes"]


def test_the_optimizer_memory_counts_each_types_state():
    """Slots as the optimizers create them: SGD with momentum one, Adam two, SDLM its
    curvature (the slot table that once forgot sdlm crashed summary)."""
    counts = {t: OPTIMIZERS.get(t).model_validate({"type": t}).slots() for t in OPTIMIZERS.names()}
    assert counts == {"adam": 2, "adamw": 2, "rmsprop": 1, "sdlm": 1, "sgd": 0}
    assert OPTIMIZERS.get("sgd").model_validate({"momentum": 0.9}).slots() == 1


def test_a_key_of_a_sibling_type_is_named_as_such():
    r = invoke("validate", LENET, "--set", "train.optimizer={type: sgd, momentum: 0.9}",
               "--set", "train.optimizer.type=sdlm")
    assert r.exit_code == 2
    assert ("--set train.optimizer.momentum: `momentum` is not a field of `sdlm` "
            "(it belongs to sgd, rmsprop)") in r.output


def test_a_misspelt_key_still_gets_its_suggestion():
    r = invoke("validate", LENET, "--set", "train.optimizer.momentm=0.9")
    assert r.exit_code == 2
    assert "train.optimizer.momentm: unknown key (did you mean 'momentum'?)" in r.output


@pytest.mark.parametrize("kind, registry", [("layers", None), ("optimizers", OPTIMIZERS),
                                            ("schedules", SCHEDULES), ("losses", LOSSES)])
def test_cnnrun_layers_lists_every_kind(kind, registry):
    r = invoke("layers", "--kind", kind, "--json")
    assert r.exit_code == 0, r.output
    types = [row["type"] for row in json.loads(r.output)]
    if registry is not None:
        assert types == registry.names()
    assert invoke("layers", "--kind", "nonsense").exit_code == 2
