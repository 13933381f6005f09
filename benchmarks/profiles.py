"""Where each engine's training step goes: the profile summary of compare_torch.py --profile.

cnnrun's side is ``cnnrun bench --profile`` (every leaf layer timed, leaves alike
summed: type, weight shape, input shape). PyTorch's is torch.profiler's self CPU
time per operator, grouped by the shapes of its operands (the table gives the first
two: a convolution's input and weight, its backward's output gradient and input).
Both profile a separate run from the timed ones: the profilers slow the steps they
watch (PyTorch's by about a fifth), so the shares, not the milliseconds, are what
compare.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = 10  # rows per engine and network


def _dims(shape) -> str:
    return "×".join(str(n) for n in shape)


def _operands(shapes) -> str:
    """The first two tensor operands' full shapes (batch first, as PyTorch gives them): an
    activation and a weight for a convolution, the output gradient and the input for its
    backward."""
    return "; ".join([_dims(s) for s in shapes if s][:2])


def cnnrun_rows(config: str, batch: int, steps: int) -> list[dict]:
    from cnnrun.tools.bench import bench
    from cnnrun.config import load_config
    return bench(load_config(ROOT / "configs" / f"{config}.yaml"), batch, steps,
                 warmup=2, profile=True)["profile"]


def torch_rows(config: str, batch: int, steps: int) -> list[dict]:
    """Self CPU time per (operator, input shapes) per step, costliest first, as shares of
    the profiled steps' wall time; the remainder is one row, "rest"."""
    import time

    import numpy as np
    from torch.profiler import profile
    from torch_model import training_twin

    from cnnrun.config import load_config
    from cnnrun.engine.model import Model, flatten
    cfg = load_config(ROOT / "configs" / f"{config}.yaml")
    model = Model(cfg.model.layers, cfg.model.input_shape)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *cfg.model.input_shape), dtype=np.float32)
    y = rng.integers(0, model.output_shape[0], batch)
    net, step = training_twin(model, flatten(model.init(seed=0)), x, y)
    net.train()
    for _ in range(max(3, steps)):  # oneDNN builds its kernels over the first steps
        step()
    t0 = time.perf_counter()
    with profile(record_shapes=True) as prof:
        for _ in range(steps):
            step()
    wall_us = (time.perf_counter() - t0) * 1e6
    events = [e for e in prof.key_averages(group_by_input_shape=True)
              if e.self_cpu_time_total > 0]
    events.sort(key=lambda e: -e.self_cpu_time_total)
    rows = [{"op": e.key, "input": _operands(e.input_shapes), "calls": e.count / steps,
             "ms": e.self_cpu_time_total / steps / 1e3, "share": e.self_cpu_time_total / wall_us}
            for e in events[:TOP]]
    rest_us = wall_us - sum(e.self_cpu_time_total for e in events[:TOP])
    return rows + [{"op": "rest", "input": "", "calls": None, "ms": rest_us / steps / 1e3,
                    "share": rest_us / wall_us}]


def markdown(config: str, batch: int, ours: list[dict], theirs: list[dict]) -> list[str]:
    """Two tables for one network: cnnrun's costliest leaves, PyTorch's costliest operators."""
    lines = [f"### {config}, batch {batch}, training", "",
             "| cnnrun leaf | weight | input | n | forward ms | backward ms | share |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    leaves, outside = ours[:-1], ours[-1]
    for r in leaves[:TOP]:
        lines.append(f"| {r['type']} | {_dims(r['weight'] or ())} | {_dims(r['input'])} | "
                     f"{r['calls']:g} | "
                     f"{r['forward_ms']:.2f} | {r['backward_ms']:.2f} | {r['share']:.1%} |")
    rest = sum(r["share"] for r in leaves[TOP:]) + outside["share"]
    lines += [(f"| everything else (other leaves, containers, loss, optimizer) | | | | | | "
               f"{rest:.1%} |"), "",
              "| PyTorch operator | operands | n | self ms | share |",
              "| --- | --- | ---: | ---: | ---: |"]
    for r in theirs[:-1]:
        lines.append(f"| {r['op']} | {r['input']} | {r['calls']:g} | {r['ms']:.2f} | "
                     f"{r['share']:.1%} |")
    lines += [(f"| everything else (other operators, autograd, Python, the profiler) | | | | "
               f"{theirs[-1]['share']:.1%} |"), ""]
    return lines
