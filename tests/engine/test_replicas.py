"""Batches cut over processes (replicas.py): the same numbers as one process, real workers."""

import copy
import os

import numpy as np
import pytest

from cnnrun.errors import RunFailed
from cnnrun.layers.streams import SampleStreams
from cnnrun.engine.model import Model, flatten
from cnnrun.engine.parallel.replicas import (Replicas, processes_for, shares, sum_gradients,
                                            use_processes)
from cnnrun.engine.parallel.shared_block import ALIGN, SharedBlock, layout

from helpers.layers import EXAMPLES, build

SMALL_NET = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
             {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
             {"type": "conv2d", "out_channels": 6, "kernel_size": 3},
             {"type": "tanh"}, {"type": "flatten"},
             {"type": "linear", "out_features": 5}]


# Batch norm of every kind: its batch statistics are summed across the processes.
BN_NET = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
          {"type": "batchnorm2d"}, {"type": "relu"},
          {"type": "conv2d", "out_channels": 6, "kernel_size": 3},
          {"type": "batchnorm2d", "affine": False, "momentum": 0.3}, {"type": "flatten"},
          {"type": "linear", "out_features": 5}, {"type": "batchnorm1d"}]


def _net(layers=SMALL_NET, shape=(2, 10, 10), dtype="float64"):
    model = Model(layers, shape)
    return model, model.init(seed=3, dtype=dtype)


@pytest.fixture
def split_net():
    """The small net in float64, cut over two processes; the workers stopped afterwards."""
    model, state = _net()
    use_processes(model, 2)
    yield model, state, np.ones((2, 10, 10, 4))
    model.close()


def _pass(model, state, x, gy_seed=5):
    y, cache = model.forward(state, x, train=True)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(y.dtype)
    gx, grads = model.backward(state, cache, gy, need_gx=True)
    return y, gx, flatten(grads)


@pytest.mark.parametrize("processes,batch", [(2, 8), (3, 7), (2, 3)])
def test_a_split_pass_equals_one_process(processes, batch):
    model, state = _net()
    x = np.random.default_rng(0).standard_normal((2, 10, 10, batch))
    want = _pass(model, state, x)
    assert use_processes(model, processes) == processes
    try:
        got = _pass(model, state, x)
        assert model.runner.owns(model.forward(state, x, train=True)[1])  # it did cut
    finally:
        model.close()
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-13)
    assert got[2].keys() == want[2].keys()
    for name in want[2]:  # sums of shares: only the rounding of the additions differs
        np.testing.assert_allclose(got[2][name], want[2][name], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("processes,batch", [(2, 8), (3, 7)])
def test_batch_norm_across_processes_equals_one_process(processes, batch):
    """Outputs, both gradients and the running statistics of a training pass, and the
    evaluation pass after it, as in one process."""
    model, state = _net(BN_NET)
    x = np.random.default_rng(0).standard_normal((2, 10, 10, batch))
    one, split = copy.deepcopy(state), copy.deepcopy(state)
    want = _pass(model, one, x)
    want_eval = model.forward(one, x)[0]
    use_processes(model, processes)
    try:
        got = _pass(model, split, x)
        got_eval = model.forward(split, x)[0]
        assert model.runner.takes(x, True)
    finally:
        model.close()
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)
    for name in want[2]:
        np.testing.assert_allclose(got[2][name], want[2][name], rtol=1e-10, atol=1e-11)
    for name, a in flatten(one).items():  # running statistics updated once, by this process
        np.testing.assert_allclose(flatten(split)[name], a, rtol=1e-12, atol=1e-14,
                                   err_msg=name)
    assert not np.allclose(flatten(split)["1.running_var"], 1.0)
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-11, atol=1e-12)


def test_batch_norm_without_running_statistics_sums_in_evaluation_too():
    layers = [{"type": "conv2d", "out_channels": 3, "kernel_size": 3},
              {"type": "batchnorm2d", "track_running_stats": False}]
    model, state = _net(layers)
    x = np.random.default_rng(4).standard_normal((2, 10, 10, 6))
    want = model.forward(state, x)[0]
    use_processes(model, 2)
    try:
        got = model.forward(state, x)[0]
    finally:
        model.close()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_failure_between_two_sums_stops_the_waiting_workers(monkeypatch):
    """This process fails after a worker sent its partial sum and waits for the total: the
    worker must not be left waiting, and the next pass starts afresh."""
    from cnnrun.engine.parallel.replicas import CrossShares
    model, state = _net(BN_NET)
    x = np.random.default_rng(1).standard_normal((2, 10, 10, 4))
    use_processes(model, 2)
    real = CrossShares.total

    def failing(self, partial):
        self.workers[0].expect_sum()  # the worker's partial has arrived; it waits now
        raise FloatingPointError("this process failed mid-pass")
    try:
        model.forward(state, x, train=True)  # the workers start
        proc = model.runner._workers[0].proc
        monkeypatch.setattr(CrossShares, "total", failing)
        with pytest.raises(FloatingPointError):
            model.forward(state, x, train=True)
        assert proc.wait(timeout=10) == 0  # it saw its input end and left
        monkeypatch.setattr(CrossShares, "total", real)
        got = model.forward(state, x, train=True)[0]  # fresh workers
    finally:
        model.close()
    want = Model(BN_NET, (2, 10, 10)).forward(state, x, train=True)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_workers_read_the_parameters_as_they_are_at_each_pass():
    """The optimizer updates this process's arrays in place; a worker must see it."""
    model, state = _net()
    x = np.random.default_rng(1).standard_normal((2, 10, 10, 6))
    use_processes(model, 2)
    try:
        first = model.forward(state, x)[0].copy()
        for a in flatten(state).values():
            a *= 1.5
        second = model.forward(state, x)[0]
    finally:
        model.close()
    want = Model(SMALL_NET, (2, 10, 10)).forward(state, x)[0]
    np.testing.assert_allclose(second, want, rtol=1e-12)
    assert not np.allclose(first, second)


def test_a_larger_batch_later_gets_a_larger_block_and_float32_stays_float32():
    model, state = _net(dtype="float32")
    rng = np.random.default_rng(2)
    use_processes(model, 2)
    try:
        for n in (4, 12, 6):
            x = rng.standard_normal((2, 10, 10, n)).astype(np.float32)
            y, gx, grads = _pass(model, state, x)
            assert y.dtype == gx.dtype == np.float32 and y.shape[-1] == n
            assert all(g.dtype == np.float32 for g in grads.values())
    finally:
        model.close()


def test_a_backward_of_an_older_pass_is_refused(split_net):
    model, state, x = split_net
    y, old = model.forward(state, x, train=True)
    model.forward(state, x, train=True)
    with pytest.raises(RuntimeError, match="must follow its forward"):
        model.backward(state, old, np.ones_like(y))


def test_a_dead_worker_is_a_failed_run_with_what_to_do(split_net):
    model, state, x = split_net
    model.forward(state, x)
    worker = model.runner._workers[0]
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(RunFailed, match=r"exited with code -9 .*train.processes: 1"):
        model.forward(state, x)
    y, _ = model.forward(state, x)  # the failed pass's workers went; fresh ones start
    np.testing.assert_allclose(y, Model(SMALL_NET, (2, 10, 10)).forward(state, x)[0], rtol=1e-12)


def test_a_stopped_worker_ends_the_pass_instead_of_hanging_it(split_net, monkeypatch):
    """SIGSTOP on a worker (a debugger, a job-control slip): the pass fails after the grace
    period with a message naming the process, and the next pass starts fresh workers."""
    import signal
    import time
    from cnnrun.engine.parallel import pipes
    monkeypatch.setattr(pipes, "STOPPED_GRACE", 1)
    model, state, x = split_net
    model.forward(state, x)
    proc = model.runner._workers[0].proc
    os.kill(proc.pid, signal.SIGSTOP)
    t0 = time.perf_counter()
    try:
        with pytest.raises(RunFailed, match=rf"worker process {proc.pid} .* stopped"):
            model.forward(state, x)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
    assert time.perf_counter() - t0 < 5  # the grace, then the stopped worker is killed
    model.forward(state, x)  # fresh workers


def test_blocks_whose_owner_died_are_swept_and_live_ones_kept(tmp_path, monkeypatch):
    import subprocess
    from cnnrun.engine.parallel import shared_block
    monkeypatch.setattr(shared_block, "_directory", lambda: str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    (tmp_path / f"cnnrun-{dead.pid}-abc").write_bytes(b"x")
    (tmp_path / f"cnnrun-{os.getpid()}-def").write_bytes(b"x")
    (tmp_path / "cnnrun-notapid").write_bytes(b"x")
    assert shared_block.sweep_orphans() == [f"cnnrun-{dead.pid}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"cnnrun-{os.getpid()}-def",
                                                          "cnnrun-notapid"]


def test_workers_stop_on_close():
    model, state = _net()
    use_processes(model, 2)
    model.forward(state, np.ones((2, 10, 10, 4)))
    proc = model.runner._workers[0].proc
    model.close()
    assert proc.poll() == 0


def test_the_auto_rule(monkeypatch):
    from cnnrun.ops import parallel
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)  # a 2-core machine, anywhere
    lenet = Model([{"type": "conv2d", "out_channels": 6, "kernel_size": 5},
                   {"type": "flatten"}, {"type": "linear", "out_features": 10}], (1, 28, 28))
    with_bn = Model([{"type": "conv2d", "out_channels": 6, "kernel_size": 5},
                     {"type": "batchnorm2d"}, {"type": "flatten"},
                     {"type": "linear", "out_features": 10}], (1, 28, 28))
    with_dropout = Model([{"type": "flatten"}, {"type": "dropout"},
                          {"type": "linear", "out_features": 10}], (1, 28, 28))
    big = Model([{"type": "conv2d", "out_channels": 8, "kernel_size": 5},
                 {"type": "flatten"}, {"type": "linear", "out_features": 1000}], (1, 64, 64))
    assert processes_for(lenet, 1) == 1 and processes_for(lenet, "auto") == 2
    assert processes_for(with_bn, "auto") == 2 and processes_for(with_bn, 2) == 2
    # dropout draws per sample (layers/streams.py): such a network is cut too, but only in
    # passes given per-sample streams; one generator for the batch cannot be cut
    assert processes_for(with_dropout, "auto") == 2 and processes_for(with_dropout, 2) == 2
    x = np.ones((1, 28, 28, 128))
    assert Replicas(with_dropout, 2, forced=True).takes(x, True, SampleStreams([1]))
    assert not Replicas(with_dropout, 2, forced=True).takes(x, True, np.random.default_rng(1))
    assert Replicas(with_dropout, 2, forced=True).takes(x, False)  # no draws in evaluation
    assert processes_for(big, "auto") == 1 and processes_for(big, 2) == 2  # 29 M parameters
    replicas = Replicas(lenet, 2)  # "auto": cut only where a share is worth a round trip
    assert not replicas.takes(np.ones((1, 28, 28, 2)), True)
    assert replicas.takes(x, True)  # 64 × 120k MACs a share
    assert not Replicas(lenet, 2).takes(np.ones((1, 28, 28, 1)), True)  # fewer than k


def _leaves(layer):
    children = getattr(layer, "children", None)
    return [leaf for _, c in children() for leaf in _leaves(c)] if children else [layer]


def _couples(leaf, train):
    """The samples a leaf ties together: batch statistics (dropout's draws are per sample)."""
    if leaf.type.startswith("batchnorm"):
        return train or not leaf.track_running_stats
    return False


@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_separable_layers_are_those_that_run_per_sample(type_name, cfg, shape):
    """Where a layer says it is separable, cutting the batch leaves its output unchanged."""
    layer = build(type_name, cfg)
    model = Model([layer], shape)
    state = model.init(seed=0, dtype="float64")
    x = np.random.default_rng(0).uniform(0.1, 1.0, (*shape, 6))  # (lp-pool: positive)
    for train in (True, False):
        whole = model.forward(state, x, train=train, rng=SampleStreams([9]))[0]
        halves = np.concatenate([model.forward(state, np.ascontiguousarray(x[..., s]),
                                               train=train, rng=SampleStreams([9], s.start))[0]
                                 for s in (slice(0, 3), slice(3, 6))], axis=-1)
        assert layer.separable(train) == (not any(_couples(leaf, train) for leaf in _leaves(layer)))
        assert layer.splittable(train)  # every layer: per sample, or summed across shares
        if layer.separable(train):
            np.testing.assert_allclose(halves, whole, rtol=1e-12, atol=1e-12)
        elif type_name.startswith("batchnorm"):
            assert not np.allclose(halves, whole)  # batch statistics: it must say so
        if layer.splittable(train) and not layer.separable(train):  # summed across shares
            use_processes(model, 2)
            try:
                split = model.forward(copy.deepcopy(state), x, train=train,
                                      rng=SampleStreams([9]))[0]
                assert model.runner.takes(x, train, SampleStreams([9]))
            finally:
                model.close()
            np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)


def test_shares_cover_the_batch():
    assert shares(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert shares(64, 2) == [(0, 32), (32, 64)]


def test_sum_gradients_adds_every_share_and_leaves_them_alone():
    own = {"w": np.ones(3)}
    total = sum_gradients(own, [lambda n: np.full(3, 2.0), lambda n: np.full(3, 3.0)])
    np.testing.assert_array_equal(total["w"], 6.0)
    np.testing.assert_array_equal(own["w"], 1.0)


def test_shared_block_layout_and_views():
    places, size = layout([("a", (3,), "float32"), ("b", (2, 2), "float64")])
    assert places["a"][0] == 0 and places["b"][0] % ALIGN == 0 and size >= places["b"][0] + 32
    block = SharedBlock.create([("a", (3,), "float32"), ("b", (2, 2), "float64")])
    other = SharedBlock.attach(**block.describe())
    block.unlink()  # mapped twice now: the name can go
    block.array("b")[...] = 7.0
    assert other.array("b").dtype == np.float64 and (other.array("b") == 7.0).all()
    assert other.array("a", (2,)).shape == (2,)
    with pytest.raises(ValueError, match="does not fit"):
        other.array("a", (4,))
    block.close()
    other.close()
