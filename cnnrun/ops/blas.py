"""Which matrix-multiply kernels the loaded BLAS runs, and whether the CPU has faster ones.

Nearly all of a convolution's time is BLAS's (see ``ops/conv``), so the kernel OpenBLAS
picked decides the speed more than anything in the engine: on one AVX-512 machine its
SkylakeX kernels multiplied 1024² float32 matrices at 440-465 GFLOP/s on 2 cores, its
Haswell (AVX2) kernels at 240. OpenBLAS picks by the CPU, unless the environment
variable OPENBLAS_CORETYPE names a kernel; that choice is the environment's to make, so
cnnrun reports it (``cnnrun bench``) and never overrides it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# OpenBLAS's kernel names (threadpoolctl's 'architecture') by the widest vectors they use.
_AVX512_KERNELS = {"skylakex", "cooperlake", "sapphirerapids"}
_AVX2_KERNELS = {"haswell", "zen", "skylake", "excavator"}


def _cpuinfo(key: str) -> str | None:
    """The first value of a /proc/cpuinfo field ('model name', 'flags'); None off Linux."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str | None:
    """The CPU's model name ('AMD EPYC'), where the OS says it."""
    return _cpuinfo("model name")


def cpu_vectors() -> str | None:
    """'AVX-512', 'AVX2' or None: the widest float vectors this CPU's flags announce
    (Linux's /proc/cpuinfo; None elsewhere)."""
    flags = set((_cpuinfo("flags") or "").split())
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None


def kernel_vectors(architecture: str | None) -> str | None:
    """The widest vectors an OpenBLAS kernel uses, from its name; None if unknown."""
    name = (architecture or "").lower()
    return "AVX-512" if name in _AVX512_KERNELS else "AVX2" if name in _AVX2_KERNELS else None


def blas_info() -> dict:
    """The BLAS NumPy loaded: library, version, kernel and threads (threadpoolctl's view),
    the CPU's widest vectors, OPENBLAS_CORETYPE if set, and a note where the kernel uses
    narrower vectors than the CPU has."""
    import numpy  # noqa: F401 - threadpoolctl sees only libraries already loaded

    from .parallel import blas_controller  # the engine's one handle on BLAS's threads
    info = {"library": None, "version": None, "kernel": None, "threads": None,
            "cpu_vectors": cpu_vectors(), "coretype_env": os.environ.get("OPENBLAS_CORETYPE")}
    ctl = blas_controller()
    blas = next((lib for lib in ctl.info() if lib.get("user_api") == "blas"), None) if ctl \
        else None
    if blas:
        info.update(library=blas.get("internal_api"), version=blas.get("version"),
                    kernel=blas.get("architecture"), threads=blas.get("num_threads"))
    info["note"] = _narrow_kernel_note(info)
    return info


def _narrow_kernel_note(info: dict) -> str | None:
    if info["cpu_vectors"] != "AVX-512" or kernel_vectors(info["kernel"]) != "AVX2":
        return None
    why = (f"OPENBLAS_CORETYPE={info['coretype_env']} in the environment selects them"
           if info["coretype_env"] else "OpenBLAS chose them for this CPU")
    return (f"this CPU has AVX-512 but OpenBLAS runs its {info['kernel']} (AVX2) kernels: {why}; "
            "OPENBLAS_CORETYPE=SkylakeX selects its AVX-512 ones (time both with cnnrun bench)")


def describe(info: dict) -> str:
    """One line: 'OpenBLAS 0.3.31, Haswell kernels, 2 threads, set by OPENBLAS_CORETYPE=Haswell'."""
    if not info["library"]:
        return "BLAS unknown (threadpoolctl cannot see it)"
    name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(info["library"],
                                                                    info["library"])
    text = f"{name} {info['version']}, {info['kernel']} kernels, {info['threads']} threads"
    if info["coretype_env"] and info["library"] == "openblas":  # only OpenBLAS reads it
        text += f", set by OPENBLAS_CORETYPE={info['coretype_env']}"
    return text
