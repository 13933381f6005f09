"""Ensembles and ten crops in `eval`, `embed` with neighbours, `maximize` and `predict --explain`."""

import json
import re
from pathlib import Path

import numpy as np


from helpers.cli import CONFIGS, ROOT, best, invoke, png_size, runner  # noqa: F401


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
    # the advice names what eval itself can take, not a config key it cannot set
    assert r.exit_code == 2 and "nothing to crop" in r.output and "--crop-pad" in r.output
    assert "data.preprocess" not in r.output


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


def test_embed_table_gives_each_neighbours_training_index(run):
    r = invoke("embed", best(run), "--layer", "fc2", "--neighbours", "2", "--queries", "1",
               "-o", Path(run) / "feats.npy")
    assert r.exit_code == 0, r.output
    assert re.search(r"#\d+ \d \(\d+\.\d\d\)", r.output), r.output


def test_eval_title_keeps_the_path_whole_on_a_narrow_terminal(run):
    r = runner.invoke(__import__("cnnrun.cli", fromlist=["app"]).app, ["eval", str(best(run))],
                      env={"COLUMNS": "40"})
    assert r.exit_code == 0 and str(best(run)) in r.output, r.output


def test_eval_data_advice_names_the_flag(run, tmp_path):
    r = invoke("eval", best(run), "--data", tmp_path)
    assert r.exit_code == 2 and "Give --data the directory" in r.output
    assert "data.root" not in r.output


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


def test_predict_warns_once_about_images_unlike_the_training_data(run, tmp_path):
    from PIL import Image
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255  # a one: white strokes on black, as MNIST's digits
    Image.fromarray(img).save(tmp_path / "one.png")
    Image.fromarray(255 - img).save(tmp_path / "inverted.png")
    r = invoke("predict", best(run), tmp_path / "one.png", "--json")
    assert json.loads(r.output)[0]["unlike_training"] is None
    r = invoke("predict", best(run), tmp_path / "one.png", tmp_path / "inverted.png",
               tmp_path / "inverted.png")
    assert r.exit_code == 0 and r.output.count("unlike the training images") == 1, r.output
    assert "2 of 3 images (first: " in r.output and "inverted.png" in r.output
