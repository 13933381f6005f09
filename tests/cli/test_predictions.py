"""`eval --predictions FILE`: one row per image (index, file for image folders, label,
prediction, top-k), agreeing with eval's own accuracy; .csv or .jsonl, nothing else."""

import csv
import io
import json

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.train.progress import PlainReporter
from cnnrun.train.trainer import Trainer
from helpers.cli import best, invoke


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_rows_agree_with_the_accuracy(run, tmp_path, suffix):
    out = tmp_path / f"p{suffix}"
    r = invoke("eval", best(run), "--predictions", out, "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert all(len(row["top"]) == 5 and row["top"][0]["class"] == row["predicted"]
                   for row in rows)
        correct = [row["correct"] for row in rows]
    else:
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        correct = [row["correct"] == "True" for row in rows]
    assert len(rows) == m["count"] and sum(correct) / len(rows) == pytest.approx(m["accuracy"])


def test_other_formats_are_refused(run, tmp_path):
    r = invoke("eval", best(run), "--predictions", tmp_path / "p.txt")
    assert r.exit_code == 2 and "a .csv or a .jsonl file" in r.output


def test_image_folder_rows_name_their_files(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "img" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (4, 4), dtype=np.uint8)).save(
                    tmp_path / "img" / split / cls / f"{i}.png")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"""model:
  input_shape: [1, 4, 4]
  layers: [{{type: flatten}}, {{type: linear, out_features: 2}}]
data: {{dataset: image_folder, root: {tmp_path / 'img'}}}
train: {{epochs: 1, batch_size: 2, processes: 1}}
""")
    Trainer(load_config(cfg_path), tmp_path / "r", PlainReporter(stream=io.StringIO())).run()
    out = tmp_path / "p.csv"
    r = invoke("eval", tmp_path / "r/checkpoints/last.safetensors", "--predictions", out)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(row["file"].split("/")[-2:], row["label"]) for row in rows] == \
        [(["a", f"{i}.png"], "a") for i in range(3)] + [(["b", f"{i}.png"], "b") for i in range(3)]
