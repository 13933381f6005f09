"""cnnrun against PyTorch's CPU build on the same network, measured side by side.

    python benchmarks/compare_torch.py                 # the README table
    python benchmarks/compare_torch.py --rounds 7 --only lenet5
    python benchmarks/compare_torch.py --profile      # and where each step goes

Each measurement runs in a fresh process (at least 1 s of warm-up steps, then at least
2 s of timed steps); the two engines alternate (A B A B …)
for ``--rounds`` rounds, and the table reports the median of the per-round
ratios t_torch / t_cnnrun (above 1: cnnrun is faster) with its min–max. These
machines drift ±20–40 % between runs, so only an interleaved ratio means
anything. Both engines use every core of the machine, in float32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARMUP_S, TIMED_S = 1.0, 2.0
CASES = [("lenet5", 64), ("lenet5", 256), ("vgg11-cifar10", 128), ("resnet20-cifar10", 128)]


def worker(engine: str, config: str, batch: int, mode: str, steps: int) -> dict:
    """One timed measurement in this process; prints JSON."""
    import numpy as np

    from cnnrun.allocator import keep_freed_memory
    from cnnrun.bench import peak_rss_mb
    from cnnrun.config import load_config
    from cnnrun.model import Model, flatten
    cfg = load_config(ROOT / "configs" / f"{config}.yaml")
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *cfg.model.input_shape), dtype=np.float32)
    y = rng.integers(0, model.output_shape[0], batch)
    if engine == "torch":
        import torch
        sys.path.insert(0, str(Path(__file__).parent))
        from torch_model import training_twin
        net, train_step = training_twin(model, flatten(state), x, y)
        xt = torch.from_numpy(x)

        def step():
            if mode == "train":
                net.train()
                train_step()
            else:
                net.eval()
                with torch.inference_mode():
                    net(xt)
    else:
        from cnnrun.config.schema import SGD
        from cnnrun.layout import to_engine
        from cnnrun.optim import build_optimizer
        keep_freed_memory()
        flat = flatten(state)
        opt = build_optimizer(SGD(lr=0.01, momentum=0.9), sorted(model.trainable_names()))
        loss = cfg.train.loss

        def step():
            xe = to_engine(x)
            out, cache = model.forward(state, xe, train=mode == "train",
                                       rng=np.random.default_rng(0))
            if mode == "train":
                _, g = loss.value_and_grad(out, y)
                _, grads = model.backward(state, cache, g)
                opt.step(flat, flatten(grads), 0.01)
    # Both engines speed up over their first steps (oneDNN builds its kernels, allocators
    # settle): PyTorch's LeNet step takes ~20 steps to reach its steady time. So warm up for
    # at least WARMUP_S, then time at least `steps` steps and TIMED_S seconds.
    _repeat(step, 3, WARMUP_S)
    n, seconds = _repeat(step, steps, TIMED_S)
    return {"seconds": seconds / n, "steps": n, "peak_rss_mb": peak_rss_mb()}


def _repeat(step, min_steps: int, min_seconds: float) -> tuple[int, float]:
    """Run step until both minimums are met; (steps run, seconds taken)."""
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < min_seconds:
        step()
        n += 1
    return n, time.perf_counter() - t0


def check_outputs_agree(config: str) -> float:
    """The two engines compute the same function on the same weights (eval mode)."""
    import numpy as np
    import torch
    sys.path.insert(0, str(Path(__file__).parent))
    from torch_model import build, copy_weights

    from cnnrun.config import load_config
    from cnnrun.layout import to_engine
    from cnnrun.model import Model, flatten
    cfg = load_config(ROOT / "configs" / f"{config}.yaml")
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0)
    x = np.random.default_rng(1).random((4, *cfg.model.input_shape), dtype=np.float32)
    ours = model.forward(state, to_engine(x))[0].T
    net = build(model.root, model.input_shape)
    copy_weights(net, flatten(state))
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))
    assert err < 1e-4, f"{config}: outputs differ (relative {err:.2e})"
    return err


def _subprocess(*args) -> dict | list:
    out = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(engine, config, batch, mode, steps) -> dict:
    return _subprocess("worker", engine, config, batch, mode, steps)


def machine() -> str:
    """CPU model, cores, and the libraries that do the arithmetic."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np
    from cnnrun.blas import blas_info, cpu_model, describe
    cpu = cpu_model() or platform.machine()  # not Linux: the architecture only
    info = blas_info()
    try:
        torch = f", PyTorch {version('torch')} ({_torch_vectors()} kernels)"
    except PackageNotFoundError:  # the table cannot be made, but say what is here
        torch = ""
    return (f"{cpu} ({info['cpu_vectors'] or 'no AVX2'}), {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, NumPy {np.__version__} ({describe(info)}){torch}")


def _torch_vectors() -> str:
    """The vector width PyTorch's CPU kernels were dispatched for, from a fresh process
    (importing torch here would load its own OpenMP and BLAS beside NumPy's)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _cases(only):
    return [(config, batch) for config, batch in CASES if not only or config == only]


def timing_table(rounds: int, only) -> list[str]:
    """The README table: per network, batch and mode, the interleaved ratio."""
    lines = [(f"machine: {machine()}; {rounds} interleaved rounds per cell; "
              f"ratio = t_torch / t_cnnrun (above 1: cnnrun faster), median (min–max)"), "",
             "| network | batch | mode | cnnrun ms | PyTorch ms | ratio | peak MiB cnnrun / PyTorch |",
             "| --- | ---: | --- | ---: | ---: | --- | --- |"]
    for config, batch in _cases(only):
        check_outputs_agree(config)
        steps = 30 if config == "lenet5" else 3
        for mode in ("train", "infer"):
            ours, theirs = [], []
            for _ in range(rounds):
                ours.append(measure("cnnrun", config, batch, mode, steps))
                theirs.append(measure("torch", config, batch, mode, steps))
            ratios = [t["seconds"] / o["seconds"] for o, t in zip(ours, theirs)]
            row = (f"| {config} | {batch} | {mode} | "
                   f"{1e3 * statistics.median(o['seconds'] for o in ours):.2f} | "
                   f"{1e3 * statistics.median(t['seconds'] for t in theirs):.2f} | "
                   f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
                   f"{max(o['peak_rss_mb'] for o in ours):.0f} / "
                   f"{max(t['peak_rss_mb'] for t in theirs):.0f} |")
            print(row, flush=True)
            lines.append(row)
    return lines


def profile_section(only) -> list[str]:
    """Per network, each engine's costliest parts of a training step (profiles.py)."""
    lines = ["## Where a training step goes", "",
             profiles.__doc__.split("\n\n")[1].replace("\n", " "), ""]
    for config, batch in _cases(only):
        steps = 20 if config == "lenet5" else 3
        lines += profiles.markdown(config, batch,
                                   _subprocess("profile", "cnnrun", config, batch, steps),
                                   _subprocess("profile", "torch", config, batch, steps))
        print(f"profiled {config} at batch {batch}", flush=True)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="0: no timing (with --profile)")
    ap.add_argument("--only", default=None, help="one config name")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    ap.add_argument("--profile", action="store_true",
                    help="then profile one training run of each network in each engine")
    args = ap.parse_args()
    if args.rounds < 1 and not args.profile:
        ap.error("--rounds 0 measures nothing without --profile")
    lines = timing_table(args.rounds, args.only) + [""] if args.rounds > 0 else \
        [f"machine: {machine()}", ""]
    if args.profile:
        lines += profile_section(args.only)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import profiles
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        e, c, b, m, s = sys.argv[2:7]
        print(json.dumps(worker(e, c, int(b), m, int(s))))
    elif len(sys.argv) > 1 and sys.argv[1] == "profile":
        e, c, b, s = sys.argv[2:6]
        rows = (profiles.cnnrun_rows if e == "cnnrun" else profiles.torch_rows)(c, int(b), int(s))
        print(json.dumps(rows))
    else:
        main()
