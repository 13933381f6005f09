"""cnnrun against PyTorch's CPU build on the same network, measured side by side.

    python benchmarks/compare_torch.py                 # the README table
    python benchmarks/compare_torch.py --rounds 7 --only lenet5
    python benchmarks/compare_torch.py --profile      # and where each step goes

Each round starts one fresh process per engine. Both warm up (at least 1 s of steps
each), then they take turns, A B B A A B …, in BURSTS short bursts of at least
BURST_S seconds, one engine idle while the other runs, with GAP_S between bursts so
that neither's spinning BLAS or OpenMP threads take cores from the other's turn. A
round's time per step is its bursts' total time over their steps, and the table
reports the median of the per-round ratios t_torch / t_cnnrun (above 1: cnnrun is
faster) with its min–max over ``--rounds`` rounds. These machines drift ±20–40 %
within seconds, so only a finely interleaved ratio means anything: with one 2 s
measurement per engine and round, LeNet-5's ratio at batch 64 once spread over
0.85–1.51. What bursts cannot cancel is PyTorch's own bimodality: each of its
processes settles into one of two speeds (LeNet-5 at batch 256: about 10 or 18 ms
a step) and keeps it, so the rounds are 7 by default, and a round's min–max shows
which modes were drawn. Both engines use every core of the machine, in float32.
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
WARMUP_S = 1.0
BURSTS, BURST_S, GAP_S = 8, 0.25, 0.2  # per engine and round; see the module's docstring
REPLY = "@@ "  # marks the protocol's lines in a worker's stdout
CASES = [("lenet5", 64), ("lenet5", 256), ("vgg11-cifar10", 128), ("resnet20-cifar10", 128),
         ("densenet-bc-cifar10", 64)]
# the 224×224 zoo (--imagenet): minutes per cell on a small machine
IMAGENET = [("alexnet", 64), ("vgg16", 16), ("resnet18", 16), ("resnet50", 16),
            ("densenet121", 16)]


def make_step(engine: str, config: str, batch: int, mode: str):
    """One training step or inference pass of the network, in this process (cnnrun's
    cut over processes as ``cnnrun train`` cuts it), and a function giving the peak
    resident memory of the processes it started (0 for none)."""
    import numpy as np

    from cnnrun.ops.allocator import keep_freed_memory
    from cnnrun.config import load_config
    from cnnrun.engine.model import Model, flatten
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
        return step, lambda: 0.0
    else:
        from cnnrun.config.schema import SGD
        from cnnrun.engine.parallel.replicas import use_processes, workers_peak_rss_mb
        from cnnrun.ops.layout import to_engine
        from cnnrun.optim import build_optimizer
        keep_freed_memory()
        use_processes(model, cfg.train.processes)  # as cnnrun train would
        flat = flatten(state)
        opt = build_optimizer(SGD(lr=0.01, momentum=0.9), sorted(model.trainable_names()))
        loss = cfg.train.loss

        def step():
            xe = to_engine(x)
            out, cache = model.forward(state, xe, train=mode == "train",
                                       rng=np.random.default_rng(0),
                                       keep_caches=mode == "train")  # as eval/predict run
            if mode == "train":
                _, g = loss.value_and_grad(out, y)
                _, grads = model.backward(state, cache, g)
                opt.step(flat, flatten(grads), 0.01)
        return step, lambda: workers_peak_rss_mb(model)


def serve(engine: str, config: str, batch: int, mode: str) -> None:
    """A worker process: builds the step, then answers the driver's commands on stdin,
    one JSON line each: ``warm``, ``run SECONDS`` (steps and seconds taken), ``quit``
    (peak resident memory)."""
    from cnnrun.ops.allocator import peak_rss_mb
    step, workers_rss_mb = make_step(engine, config, batch, mode)
    _reply({})
    for line in sys.stdin:
        command, *args = line.split()
        if command == "warm":
            # Both engines speed up over their first steps (oneDNN builds its kernels,
            # allocators settle): PyTorch's LeNet step takes ~20 steps to reach its steady
            # time.
            _repeat(step, 3, WARMUP_S)
            _reply({})
        elif command == "run":
            n, seconds = _repeat(step, 1, float(args[0]))
            _reply({"steps": n, "seconds": seconds})
        else:
            _reply({"peak_rss_mb": peak_rss_mb() + workers_rss_mb()})  # all its processes
            return


def _reply(answer: dict) -> None:
    print(REPLY + json.dumps(answer), flush=True)


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
    from cnnrun.ops.layout import to_engine
    from cnnrun.engine.model import Model, flatten
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


class Worker:
    """A fresh process running one engine's step (``serve``), driven over pipes."""

    def __init__(self, engine, config, batch, mode):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", engine, config, str(batch), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.steps, self.seconds = 0, 0.0

    def ask(self, *command) -> dict:
        if command:
            self.process.stdin.write(" ".join(map(str, command)) + "\n")
            self.process.stdin.flush()
        for line in self.process.stdout:  # skip whatever else the engine prints
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"a benchmark worker exited with {self.process.wait()}")

    def burst(self):
        answer = self.ask("run", BURST_S)
        self.steps += answer["steps"]
        self.seconds += answer["seconds"]

    def close(self) -> dict:
        try:
            return self.ask("quit")
        finally:
            self.process.kill()
            self.process.wait()


def measure_round(config, batch, mode) -> tuple[dict, dict]:
    """One round: cnnrun's and PyTorch's seconds per step and peak memory, in bursts."""
    ours, theirs = (Worker(e, config, batch, mode) for e in ("cnnrun", "torch"))
    try:
        for w in (ours, theirs):
            w.ask()  # built
        for w in (ours, theirs):
            w.ask("warm")
        for k in range(BURSTS):
            for w in ((ours, theirs) if k % 2 == 0 else (theirs, ours)):
                time.sleep(GAP_S)
                w.burst()
    finally:
        results = [{"seconds": w.seconds / max(w.steps, 1), **w.close()}
                   for w in (ours, theirs)]
    return results[0], results[1]


def machine() -> str:
    """CPU model, cores, and the libraries that do the arithmetic."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np
    from cnnrun.ops.blas import blas_info, cpu_model, describe
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


def _cases(only, imagenet=False):
    cases = CASES + (IMAGENET if imagenet else [])
    return [(config, batch) for config, batch in cases if not only or config == only]


def timing_table(rounds: int, only, imagenet=False) -> list[str]:
    """The README table: per network, batch and mode, the interleaved ratio."""
    lines = [(f"machine: {machine()}; {rounds} rounds per cell, each of {BURSTS} "
              f"interleaved bursts per engine; "
              f"ratio = t_torch / t_cnnrun (above 1: cnnrun faster), median (min–max)"), "",
             "| network | batch | mode | cnnrun ms | PyTorch ms | ratio | peak MiB cnnrun / PyTorch |",
             "| --- | ---: | --- | ---: | ---: | --- | --- |"]
    for config, batch in _cases(only, imagenet):
        check_outputs_agree(config)
        for mode in ("train", "infer"):
            ours, theirs = [], []
            for _ in range(rounds):
                o, t = measure_round(config, batch, mode)
                ours.append(o)
                theirs.append(t)
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
    ap.add_argument("--rounds", type=int, default=7, help="0: no timing (with --profile)")
    ap.add_argument("--only", default=None, help="one config name")
    ap.add_argument("--imagenet", action="store_true",
                    help="also the 224×224 networks (alexnet, vgg16, resnet18/50, densenet121)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    ap.add_argument("--profile", action="store_true",
                    help="then profile one training run of each network in each engine")
    args = ap.parse_args()
    if args.rounds < 1 and not args.profile:
        ap.error("--rounds 0 measures nothing without --profile")
    lines = timing_table(args.rounds, args.only, args.imagenet) + [""] if args.rounds > 0 else \
        [f"machine: {machine()}", ""]
    if args.profile:
        lines += profile_section(args.only)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import profiles
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        e, c, b, m = sys.argv[2:6]
        serve(e, c, int(b), m)
    elif len(sys.argv) > 1 and sys.argv[1] == "profile":
        e, c, b, s = sys.argv[2:6]
        rows = (profiles.cnnrun_rows if e == "cnnrun" else profiles.torch_rows)(c, int(b), int(s))
        print(json.dumps(rows))
    else:
        main()
