"""Fixtures shared by every test folder (helpers to import live in tests/helpers/)."""

import numpy as np
import pytest

@pytest.fixture
def rng():
    return np.random.default_rng(1234)


class BandedPass:
    """Two band workers, every product large enough to split, and the bands each
    map_bands call dealt (``shares``); ``with banded:`` is a pass that works in bands."""

    def __init__(self, monkeypatch):
        from cnnrun.ops import parallel
        self.parallel, self.shares = parallel, []
        monkeypatch.setattr(parallel, "num_workers", lambda: 2)
        monkeypatch.setattr(parallel, "MATMUL_SPLIT_MACS", 0)
        real = parallel.map_bands
        monkeypatch.setattr(parallel, "map_bands", lambda work, bands, *rest:
                            self.shares.append(bands) or real(work, bands, *rest))

    def __enter__(self):
        mode = self.parallel.ThreadMode()
        mode.bands = True
        self._pass = self.parallel.engine_threads(mode)
        return self._pass.__enter__()

    def __exit__(self, *exc):
        return self._pass.__exit__(*exc)


@pytest.fixture
def banded_pass(monkeypatch):
    return BandedPass(monkeypatch)
