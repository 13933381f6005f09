"""Training over MPI ranks (`mpiexec -n K cnnrun train`): the same weights as one process,
one run directory, resume with another K, evaluation summed across ranks, and a failure on
one rank ending the job. Each test launches mpiexec itself; without the [mpi] extra they
skip."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnrun.train import checkpoint
from helpers.nets import TINY

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec (pip install -e '.[mpi]')", allow_module_level=True)

# the trainer tests' tiny run with batch norm, in float64, one process per rank
CONFIG = "name: mpi-tiny\n" + TINY.replace(
    "    - {type: relu}\n", "    - {type: batchnorm2d, name: bn}\n    - {type: relu}\n", 1).replace(
    "  schedule: {type: cosine}\n", "").replace("  seed: 3\n", "  seed: 3\n  dtype: float64\n  processes: 1\n")
CNNRUN = [sys.executable, "-m", "cnnrun"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi")
    (d / "cfg.yaml").write_text(CONFIG)
    return d


def cnnrun(work, *args, ranks=1, timeout=120):
    head = [MPIEXEC, "-n", str(ranks)] if ranks > 1 else []
    return subprocess.run(head + CNNRUN + [str(a) for a in args], cwd=work,
                          capture_output=True, text=True, timeout=timeout)


def train(work, out, *sets, ranks=1):
    args = ["train", "cfg.yaml", "--out", out, "--quiet"] + [a for s in sets for a in ("--set", s)]
    r = cnnrun(work, *args, ranks=ranks)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def weights(path):
    w, opt, _ = checkpoint.load(path)
    return {**w, **{f"optimizer.{k}": v for k, v in opt.items()}}


def assert_same_training(a, b):
    """Weights, batch-norm running statistics and momentum to 1e-9 relative; atol for the
    bias before batch norm, whose gradient is rounding noise around 0."""
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.fixture(scope="module")
def single(work):
    train(work, "one")
    return work / "one" / "checkpoints" / "last.safetensors"


@pytest.mark.parametrize("ranks, processes", [(2, 1), (3, 1), (2, 2)])
def test_ranks_train_the_same_weights_as_one_process(work, single, ranks, processes):
    """Batch norm, dropout, momentum and augmentation, float64; 32 over 3 ranks is 11/11/10,
    and with train.processes: 2 each rank cuts its share over two more processes."""
    out = f"r{ranks}p{processes}"
    r = train(work, out, f"train.processes={processes}", ranks=ranks)
    assert_same_training(single, work / out / "checkpoints" / "last.safetensors")
    assert r.stdout.count("test accuracy") == 1  # rank 0 alone prints
    rows = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if row["kind"] == "epoch"] == [1, 2]  # written once
    assert sorted(p.name for p in (work / out).iterdir()) == \
        ["checkpoints", "config.yaml", "metrics.csv", "metrics.jsonl"]
    assert not (work / "runs").exists()


def test_resume_under_mpiexec_with_another_number_of_ranks(work, single):
    train(work, "half", "train.epochs=1", ranks=2)
    ckpt = work / "half" / "checkpoints" / "last.safetensors"
    r = cnnrun(work, "train", "cfg.yaml", "--resume", ckpt, "--quiet", ranks=3)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_training(single, ckpt)
    epochs = [json.loads(line)["epoch"] for line in (work / "half" / "metrics.jsonl")
              .read_text().splitlines() if '"kind": "epoch"' in line]
    assert epochs == [1, 2]


def test_evaluation_across_ranks_equals_one_process(work, single):
    one = json.loads(cnnrun(work, "eval", single, "--json").stdout)
    r = cnnrun(work, "eval", single, "--json", ranks=3)
    assert r.returncode == 0, r.stderr
    three = json.loads(r.stdout)  # one JSON document: rank 0 alone prints
    assert (three["count"], three["accuracy"], three["top5"], three["confusion"]) == \
        (one["count"], one["accuracy"], one["top5"], one["confusion"])
    assert three["loss"] == pytest.approx(one["loss"], rel=1e-12)


def _no_orphans(work):
    time.sleep(0.5)
    found = subprocess.run(["pgrep", "-f", f"cnnrun train cfg.yaml --out {work}"],
                           capture_output=True, text=True).stdout.split()
    assert not found, f"processes left behind: {found}"


def test_a_bad_data_file_on_one_rank_ends_the_job(work):
    """Rank 1 alone is pointed at a missing data set (mpiexec's MPMD form): it fails while
    rank 0 waits in its first collective; the job ends with rank 1's exit code."""
    common = CNNRUN + ["train", "cfg.yaml", "--out", str(work / "bad"), "--quiet"]
    t0 = time.perf_counter()
    r = subprocess.run([MPIEXEC, "-n", "1", *common, ":", "-n", "1", *common,
                        "--set", "data.root=/no/such/dir"], cwd=work, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and time.perf_counter() - t0 < 30
    assert "/no/such/dir" in r.stderr and "Traceback" not in r.stderr
    _no_orphans(work / "bad")


def _rank_pid(marker: str, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd and f"PMI_RANK={rank}\0".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, None), (signal.SIGINT, 130)])
def test_a_killed_rank_or_ctrl_c_ends_the_job_and_keeps_the_checkpoint(work, sig, code):
    """SIGKILL of rank 1 mid-run ends every rank (non-zero); Ctrl-C to mpiexec stops every
    rank at the same step with exit 130. Either way `last` stays a readable checkpoint."""
    out = work / f"long-{sig.name}"
    args = [MPIEXEC, "-n", "2", *CNNRUN, "train", "cfg.yaml", "--out", str(out), "--quiet",
            "--set", "train.epochs=500", "--set", "data.train_limit=1000"]
    job = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    last = out / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 60
    while not last.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert last.exists(), "no epoch finished"
    t0 = time.perf_counter()
    if sig == signal.SIGKILL:
        os.kill(_rank_pid(str(out), 1), signal.SIGKILL)
    else:
        job.send_signal(signal.SIGINT)
    try:
        _, err = job.communicate(timeout=30)
    finally:
        job.kill()
    assert time.perf_counter() - t0 < 30
    assert job.returncode != 0 if code is None else job.returncode == code, err
    checkpoint.load(last)  # intact
    _no_orphans(out)
