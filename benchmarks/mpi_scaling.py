"""Data parallelism over MPI, measured on this machine and modelled beyond it.

    python benchmarks/mpi_scaling.py measure [--rounds 5]   # step times and allreduce costs
    python benchmarks/mpi_scaling.py model                  # the README's scaling table

``measure`` times a training step of LeNet-5 (batch 64) and ResNet-20 (batch 128) four ways,
in alternating fresh processes: one process on one core, ``train.processes: 2`` (local
workers over pipes and shared memory), ``mpiexec -n 2`` over MPICH's shared-memory
transport, and ``mpiexec -n 2`` over TCP on loopback (``MPIR_CVAR_NOLOCAL=1`` with libfabric's
tcp provider), each rank on one core. It also fits α + β·bytes to Allreduce times of 8 B to
64 MB on both transports. Results go to benchmarks/mpi_measured.json.

``model`` predicts images/s and scaling efficiency for resnet20-cifar10, resnet50 and vgg16
on 2 to 64 nodes at 10 and 100 Gb/s, with and without overlapping the gradient allreduce
with the backward pass, from: the compute per sample (``cnnrun bench`` here, in the json),
a ring allreduce's 2(K−1)/K·bytes/bandwidth + 2(K−1)·α, and batch norm's sums, three small
allreduces per layer and step (latency-bound: 2·log2(K)·α each). Weak scaling: each node
keeps its batch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_name("mpi_measured.json")
CASES = {"lenet5": 64, "resnet20-cifar10": 128}
SIZES = [8, 1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 23, 1 << 26]  # Allreduce bytes
TCP_ENV = {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp",
           "FI_TCP_IFACE": "lo"}
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"


# ---- inside one process (or rank) ---------------------------------------------
def step_times(config: str, batch: int, steps: int, processes: int) -> None:
    """Seconds per training step of this rank (rank 0 prints), synthetic data."""
    import tempfile

    import numpy as np

    from cnnrun.config import load_config
    from cnnrun.engine.parallel.world import World
    from cnnrun.ops.allocator import keep_freed_memory
    from cnnrun.train.trainer import Trainer
    keep_freed_memory()
    world = World.detect()
    cfg = load_config(ROOT / "configs" / f"{config}.yaml",
                      [f"train.batch_size={batch}", f"train.processes={processes}",
                       "data.dataset=synthetic", "data.val_split=0", "data.augment={}"])
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, Path(tmp), None, world=world)
        rng = np.random.default_rng(0)
        x = rng.random((batch, *cfg.model.input_shape)).astype(cfg.train.dtype)
        y = rng.integers(0, t.model.output_shape[0], batch)
        lo, hi = world.share(batch)
        for _ in range(2):  # warm-up
            t.train_step(x[lo:hi], y)
        times = []
        for _ in range(steps):
            if world.comm is not None:
                world.comm.Barrier()
            t0 = time.perf_counter()
            t.train_step(x[lo:hi], y)
            times.append(time.perf_counter() - t0)
        t.model.close()
    if world.is_root:
        print(json.dumps({"step_s": statistics.median(times)}))


def allreduce_times(sizes: list[int], repeat: int) -> None:
    from mpi4py import MPI

    import numpy as np
    comm = MPI.COMM_WORLD
    out = {}
    for nbytes in sizes:
        a = np.ones(max(nbytes // 8, 1))
        b = np.empty_like(a)
        for _ in range(3):
            comm.Allreduce(a, b)
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(repeat):
            comm.Allreduce(a, b)
        out[nbytes] = (time.perf_counter() - t0) / repeat
    if comm.Get_rank() == 0:
        print(json.dumps(out))


# ---- driving fresh processes ---------------------------------------------------
def _run(cmd, env=None) -> dict:
    full_env = {**os.environ, **(env or {})}
    r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _me(*args):
    return [sys.executable, __file__, *map(str, args)]


def measure(rounds: int) -> dict:
    ways = {"1 process": ([], {}, 1), "processes: 2": ([], {}, 2),
            "mpiexec -n 2 (shared memory)": ([MPIEXEC, "-n", "2"], {}, 1),
            "mpiexec -n 2 (TCP loopback)": ([MPIEXEC, "-n", "2"], TCP_ENV, 1)}
    result = {"steps": {}, "allreduce": {}}
    for config, batch in CASES.items():
        times = {w: [] for w in ways}
        for r in range(rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for w in order:
                head, env, processes = ways[w]
                cmd = head + _me("_steps", config, batch, 10 if config == "lenet5" else 3,
                                 processes)
                times[w].append(_run(cmd, env)["step_s"])
        result["steps"][config] = {w: {"median_ms": 1e3 * statistics.median(v),
                                        "min_ms": 1e3 * min(v), "max_ms": 1e3 * max(v)}
                                   for w, v in times.items()}
    for name, env in (("shared memory", {}), ("TCP loopback", TCP_ENV)):
        t = _run([MPIEXEC, "-n", "2"] + _me("_allreduce", 20), env)
        alpha, beta = _fit({int(k): v for k, v in t.items()})
        result["allreduce"][name] = {"alpha_us": alpha * 1e6, "beta_GBps": 1e-9 / beta,
                                     "points": t}
    return result


def _fit(points: dict) -> tuple[float, float]:
    """α + β·bytes: α the smallest message's time (latency), β the slope between the two
    largest (bandwidth; a least-squares line is dominated by them anyway and can put α
    below zero)."""
    sizes = sorted(points)
    (s1, s2) = sizes[-2:]
    beta = (points[s2] - points[s1]) / (s2 - s1)
    return points[sizes[0]], beta


# ---- the model -----------------------------------------------------------------
NETWORKS = {  # config, per-node batch, float32 gradient bytes, batch-norm layers
    "resnet20-cifar10": ("resnet20-cifar10", 128, 0.27e6 * 4, 19),
    "resnet50": ("resnet50", 32, 25.6e6 * 4, 53),
    "vgg16": ("vgg16", 16, 138.4e6 * 4, 0),
}
NODES = [2, 4, 8, 16, 32, 64]
LINKS = {"10 Gb/s": (10e9 / 8, 20e-6), "100 Gb/s": (100e9 / 8, 5e-6)}  # bytes/s, α per hop


def predict(per_sample_s: float, batch: int, grad_bytes: float, bn_layers: int, K: int,
            bandwidth: float, alpha: float, overlap: bool) -> float:
    """Seconds of one step on K nodes, each with ``batch`` samples (weak scaling)."""
    compute = per_sample_s * batch
    ring = 2 * (K - 1) / K * grad_bytes / bandwidth + 2 * (K - 1) * alpha
    bn = 3 * bn_layers * 2 * math.log2(K) * alpha  # small sums, latency-bound
    backward = compute * 2 / 3  # a step is about one forward and two forward-sized backwards
    comm = max(ring - backward, 0.0) if overlap else ring
    return compute + bn + comm


def model_table(speedup: float = 1.0) -> str:
    """``speedup``: compute that many times faster than this machine's (a GPU, say), the
    network unchanged: where communication starts to matter."""
    measured = json.loads(OUT.read_text()) if OUT.exists() else {}
    per_sample = {k: v / speedup for k, v in measured.get("per_sample_s", {}).items()}
    lines = ["| network | per-node batch | link | overlap | " +
             " | ".join(f"{k} nodes" for k in NODES) + " |",
             "|---|---:|---|---|" + "---:|" * len(NODES)]
    for name, (config, batch, grad_bytes, bn) in NETWORKS.items():
        if name not in per_sample:
            continue
        s1 = per_sample[name]
        for link, (bw, alpha) in LINKS.items():
            for overlap in (False, True):
                cells = []
                for K in NODES:
                    t = predict(s1, batch, grad_bytes, bn, K, bw, alpha, overlap)
                    ips = K * batch / t
                    cells.append(f"{ips:,.0f}" if ips >= 100 else f"{ips:.3g}")
                    cells[-1] += f" ({ips * s1 / K:.0%})"
                lines.append(f"| {name} | {batch} | {link} | {'yes' if overlap else 'no'} | " +
                             " | ".join(cells) + " |")
    return "\n".join(lines)


def per_sample_compute() -> dict:
    """Seconds per training sample of one process here, from ``cnnrun bench``."""
    out = {}
    for name, (config, batch, _, _) in NETWORKS.items():
        small = max(2, batch // 4) if name != "resnet20-cifar10" else batch
        r = subprocess.run([sys.executable, "-m", "cnnrun", "bench", f"configs/{config}.yaml",
                            "--batch-size", str(small), "--steps", "2", "--json"],
                           capture_output=True, text=True, cwd=ROOT, check=True)
        out[name] = json.loads(r.stdout)["train_step_ms"] / 1e3 / small
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_steps":
        step_times(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_allreduce":
        allreduce_times(SIZES, int(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["measure", "model", "compute", "refit"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--speedup", type=float, default=1.0,
                    help="model: compute this many times faster than measured here")
    a = ap.parse_args()
    if a.what == "measure":
        data = json.loads(OUT.read_text()) if OUT.exists() else {}
        data.update(measure(a.rounds))
        OUT.write_text(json.dumps(data, indent=1))
        print(json.dumps(data, indent=1))
    elif a.what == "refit":  # α and β again from the stored Allreduce times
        data = json.loads(OUT.read_text())
        for v in data["allreduce"].values():
            alpha, beta = _fit({int(k): t for k, t in v["points"].items()})
            v.update(alpha_us=alpha * 1e6, beta_GBps=1e-9 / beta)
        OUT.write_text(json.dumps(data, indent=1))
        print({k: (round(v["alpha_us"], 1), round(v["beta_GBps"], 2))
               for k, v in data["allreduce"].items()})
    elif a.what == "compute":
        data = json.loads(OUT.read_text()) if OUT.exists() else {}
        data["per_sample_s"] = per_sample_compute()
        OUT.write_text(json.dumps(data, indent=1))
        print(data["per_sample_s"])
    else:
        print(model_table(a.speedup))


if __name__ == "__main__":
    main()
