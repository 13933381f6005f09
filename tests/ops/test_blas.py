"""What cnnrun says about the BLAS kernels: named right, and a note exactly where the kernel
uses narrower vectors than the CPU has (never asserts a speed)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnrun.ops import blas
from cnnrun.cli import app

LENET = Path(__file__).parents[2] / "configs" / "lenet5.yaml"


def _info(cpu, kernel, env=None):
    return {"library": "openblas", "version": "0.3.31", "kernel": kernel, "threads": 2,
            "cpu_vectors": cpu, "coretype_env": env}


@pytest.mark.parametrize("kernel, vectors", [("Haswell", "AVX2"), ("Zen", "AVX2"),
                                             ("SkylakeX", "AVX-512"), ("COOPERLAKE", "AVX-512"),
                                             ("Prescott", None), (None, None)])
def test_kernel_vectors_from_openblas_names(kernel, vectors):
    assert blas.kernel_vectors(kernel) == vectors


def test_note_names_the_environment_variable_that_pins_narrow_kernels():
    note = blas._narrow_kernel_note(_info("AVX-512", "Haswell", env="Haswell"))
    assert note.startswith("this CPU has AVX-512 but OpenBLAS runs its Haswell (AVX2) kernels: "
                           "OPENBLAS_CORETYPE=Haswell in the environment selects them;")
    assert "OPENBLAS_CORETYPE=SkylakeX" in note


def test_note_without_the_variable_says_openblas_chose():
    note = blas._narrow_kernel_note(_info("AVX-512", "Zen"))
    assert "OpenBLAS chose them for this CPU" in note


@pytest.mark.parametrize("cpu, kernel", [("AVX-512", "SkylakeX"), ("AVX2", "Haswell"),
                                         (None, "Haswell"), ("AVX-512", None)])
def test_no_note_where_the_kernel_fits_the_cpu_or_either_is_unknown(cpu, kernel):
    assert blas._narrow_kernel_note(_info(cpu, kernel)) is None


def test_describe_is_one_line_with_the_variable():
    assert blas.describe(_info("AVX2", "Haswell", env="Haswell")) == \
        "OpenBLAS 0.3.31, Haswell kernels, 2 threads, set by OPENBLAS_CORETYPE=Haswell"
    assert blas.describe({**_info(None, None), "library": None}).startswith("BLAS unknown")
    assert blas.describe({**_info("AVX2", "Haswell", env="Haswell"), "library": "mkl"}) == \
        "MKL 0.3.31, Haswell kernels, 2 threads"  # MKL does not read OPENBLAS_CORETYPE


def test_blas_info_reads_the_loaded_library_and_environment(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Whatever")
    info = blas.blas_info()
    assert info["coretype_env"] == "Whatever"
    assert info["library"] == "openblas" and info["threads"] >= 1  # NumPy's wheels ship it
    assert info["note"] == blas._narrow_kernel_note(info)


def test_bench_reports_blas_in_json_and_table():
    base = ["bench", str(LENET), "--batch-size", "2", "--steps", "1"]
    out = json.loads(CliRunner().invoke(app, base + ["--json"]).output)
    assert out["blas"]["library"] == "openblas"
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 0, r.output
    assert "BLAS" in r.output and "kernels" in r.output
    assert ("note:" in r.output) == (out["blas"]["note"] is not None)


@pytest.mark.parametrize("flags, vectors", [("fpu sse2 avx2 fma avx512f avx512bw", "AVX-512"),
                                            ("fpu sse2 avx avx2 fma", "AVX2"),
                                            ("fpu sse2 avx", None), (None, None)])
def test_cpu_vectors_from_the_flags_line(monkeypatch, flags, vectors):
    monkeypatch.setattr(blas, "_cpuinfo", lambda key: flags if key == "flags" else None)
    assert blas.cpu_vectors() == vectors


def test_cpuinfo_reads_the_named_field_only(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n"
                    "processor\t: 1\nmodel name\t: other\n")
    real_path = blas.Path
    monkeypatch.setattr(blas, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert blas.cpu_model() == "AMD EPYC" and blas._cpuinfo("flags") == "fpu avx2"
    assert blas._cpuinfo("model") is None  # a field's whole name, not a prefix
