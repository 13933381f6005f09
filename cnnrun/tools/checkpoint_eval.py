"""``cnnrun eval``: a checkpoint, or an ensemble of them, scored on a split of its data set,
optionally over ten crops."""

from __future__ import annotations

from pathlib import Path

from ..data import check_input_shape, check_labels, prepare
from ..data.sources import ROOT_OPTION
from ..errors import UserError
from ..safe_io import memory_shortfall
from ..engine.parallel.world import World
from ..train.evaluate import averaged_logits, metric_sums, metrics_from_sums
from ..train.trained import load_trained


def evaluate_checkpoints(checkpoints: list[Path], data: Path | None = None, split: str = "test",
                         crops: int = 1, crop_pad: int | None = None,
                         config: Path | None = None, predictions: Path | None = None) -> dict:
    """Loss, top-1/top-5, per-class accuracy and confusion of the members' averaged outputs."""
    if split not in ("test", "train"):
        raise UserError(f"--split {split}: expected 'test' or 'train'.")
    if crops not in (1, 10):
        raise UserError(f"--crops {crops}: expected 1 or 10.")
    members = [load_trained(c, config) for c in checkpoints]
    first = members[0]
    for c, m in zip(checkpoints[1:], members[1:]):
        if m.model.input_shape != first.model.input_shape or m.classes != first.classes:
            raise UserError(f"{c}: its input shape or classes differ from "
                            f"{checkpoints[0]}'s, so the two cannot be averaged.")
    if data and first.cfg.data.dataset == "synthetic":
        raise UserError(f"--data {data}: {checkpoints[0]} was trained on synthetic data, which "
                        f"is generated, not read from files; drop --data, or evaluate a "
                        f"checkpoint trained on mnist, fashion_mnist, cifar10 or image_folder.")
    dcfg = first.cfg.data.model_copy(update={"root": str(data)}) if data else first.cfg.data
    token = ROOT_OPTION.set("--data" if data else "data.root")
    try:
        bundle = prepare(dcfg, first.cfg.train.seed, first.cfg.train.dtype, stats=first.stats,
                         splits=(split,))
    finally:
        ROOT_OPTION.reset(token)
    part = bundle.test if split == "test" else bundle.train
    check_labels(bundle, first.model.output_shape, dcfg.dataset)
    check_input_shape(bundle, first.model.input_shape, dcfg.dataset)
    pad = dcfg.augment.random_crop_padding if crop_pad is None else crop_pad
    if crops == 10:
        _check_padded_fits(part.x, pad)
    world = World.detect()  # under mpiexec each rank scores its part and the sums are added
    lo, hi = world.share(len(part.y)) if predictions is None else (0, len(part.y))
    logits = averaged_logits(members, part.x[lo:hi], crops, pad if crops == 10 else 0,
                             bundle.fill)
    K = first.model.output_shape[0]
    sums = metric_sums(logits, part.y[lo:hi], first.cfg.train.loss, K)
    sums = world.allreduce(sums) if predictions is None else sums  # each rank: all rows
    if predictions is not None and world.is_root:
        write_predictions(Path(predictions), logits, part,
                          first.cfg.train.loss.type == "cross_entropy")
    m = metrics_from_sums(sums, K, part.classes)
    m.update(checkpoints=[str(c) for c in checkpoints], crops=crops)
    return m


def write_predictions(path: Path, logits, part, probabilities: bool, top_k: int = 5) -> Path:
    """One row per image: index, file (image folders), label, predicted class, whether it is
    right, and the top-k classes with their probabilities (or raw outputs where the loss is
    not cross-entropy). ``.csv`` or ``.jsonl``, written whole or not at all."""
    import csv
    import io
    import os

    import numpy as np

    from ..ops.softmax import softmax
    from ..safe_io import dumps_json
    if path.suffix not in (".csv", ".jsonl"):
        raise UserError(f"--predictions {path}: name a .csv or a .jsonl file.")
    scores = softmax(logits.astype(np.float64), axis=1) if probabilities else logits
    order = np.argsort(-scores, axis=1, kind="stable")[:, :min(top_k, scores.shape[1])]
    names, classes = part.names, part.classes
    what = "probability" if probabilities else "output"
    rows = [{"index": i, "file": None if names is None else str(names[i]),
             "label": classes[part.y[i]], "predicted": classes[order[i, 0]],
             "correct": bool(order[i, 0] == part.y[i]),
             "top": [{"class": classes[k], what: float(scores[i, k])} for k in order[i]]}
            for i in range(len(part.y))]
    text = io.StringIO()
    if path.suffix == ".jsonl":
        text.writelines(dumps_json(r) + "\n" for r in rows)
    else:
        head = ["index", "file", "label", "predicted", "correct"]
        head += [f"{c}_{j + 1}" for j in range(order.shape[1]) for c in ("class", what)]
        w = csv.writer(text)
        w.writerow(head)
        for r in rows:
            w.writerow([r["index"], r["file"] or "", r["label"], r["predicted"], r["correct"]] +
                       [v for t in r["top"] for v in (t["class"], f"{t[what]:.6g}")])
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text.getvalue(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"--predictions {path}: cannot write it ({e.strerror}).") from e
    return path


def _check_padded_fits(x, pad: int) -> None:
    """Ten crops pad every image first: refuse a pad whose images the memory cannot hold."""
    N, C, H, W = x.shape
    short = memory_shortfall(N * C * (H + 2 * pad) * (W + 2 * pad) * x.dtype.itemsize * 2)
    if short:
        raise UserError(f"--crop-pad {pad}: the padded images {short}; pad by a few pixels "
                        f"(the training's random_crop_padding, typically 2 to 4).")
