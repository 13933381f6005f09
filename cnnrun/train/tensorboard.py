"""TensorBoard event files for a run (``log: [tensorboard]``), through tensorboardX.

Scalars per logged step (loss, learning rate) and per epoch (every metric of the
epoch row), a histogram of every parameter at each epoch's end, and the model's
summary table as text. metrics.jsonl stays the record; this is a view of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


class TensorBoardLog:
    def __init__(self, log_dir: Path, summary_text: str):
        try:
            from tensorboardX import SummaryWriter  # noqa: PLC0415 - optional extra
        except ImportError as e:
            raise UserError("log: [tensorboard] needs tensorboardX: pip install "
                            "'cnnrun[tensorboard]' (or remove 'tensorboard' from log:).") from e
        self.writer = SummaryWriter(str(log_dir))
        self.writer.add_text("model", "```\n" + summary_text + "\n```", 0)

    def step(self, row: dict) -> None:
        for key in ("loss", "lr"):
            if key in row:
                self.writer.add_scalar(f"step/{key}", row[key], row["step"])

    def epoch(self, row: dict, weights: dict) -> None:
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, row["epoch"])
        for name, arr in weights.items():
            self.writer.add_histogram(f"weights/{name}", np.asarray(arr, dtype=np.float64),
                                      row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
