"""The note on a BLAS that runs slower kernels than the processor can (``xpconv info``, bench)."""

from __future__ import annotations

import json

import pytest

import xpconv.__main__
from xpconv.__main__ import main
from xpconv._blas_kernels import AVX512_KERNELS, _cpu_flags, blas_kernel_notes, kernel_notes

AVX512 = frozenset({"avx2", "fma", "avx512f", "avx512bw"})
AVX2 = frozenset({"avx2", "fma"})


def _openblas(arch: str) -> dict[str, str]:
    return {
        "user_api": "blas",
        "internal_api": "openblas",
        "version": "0.3.31",
        "architecture": arch,
        "filepath": "/lib/libopenblas.so",
    }


def test_haswell_kernels_on_an_avx512_processor_get_a_note():
    (note,) = blas_kernel_notes([_openblas("Haswell")], AVX512)
    assert "OpenBLAS 0.3.31 runs its Haswell kernels" in note
    assert "OPENBLAS_CORETYPE=SkylakeX" in note
    assert "/lib/libopenblas.so" in note


@pytest.mark.parametrize("arch", ["SkylakeX", "Cooperlake", "SapphireRapids", "skylakex"])
def test_avx512_kernels_get_no_note(arch):
    assert blas_kernel_notes([_openblas(arch)], AVX512) == []


def test_no_note_without_avx512_or_for_other_libraries():
    assert blas_kernel_notes([_openblas("Haswell")], AVX2) == []
    assert blas_kernel_notes([_openblas("Haswell")], frozenset()) == []
    mkl = {"user_api": "blas", "internal_api": "mkl", "version": "2025", "architecture": None}
    openmp = {"user_api": "openmp", "internal_api": "openmp"}
    assert blas_kernel_notes([mkl, openmp], AVX512) == []


def test_one_note_per_openblas_library():
    pools = [_openblas("Haswell"), _openblas("Zen"), _openblas("SkylakeX")]
    notes = blas_kernel_notes(pools, AVX512)
    assert [("Haswell" in n, "Zen" in n) for n in notes] == [(True, False), (False, True)]


def test_the_notes_of_this_process_follow_its_processor():
    flags = _cpu_flags()
    assert isinstance(flags, frozenset)
    notes = kernel_notes()
    assert all("OPENBLAS_CORETYPE" in note for note in notes)
    if "avx512f" not in flags:
        assert notes == []
        return
    from threadpoolctl import threadpool_info

    slower = [
        p
        for p in threadpool_info()
        if p.get("internal_api") == "openblas"
        and str(p.get("architecture")).lower() not in AVX512_KERNELS
    ]
    assert len(notes) == len(slower)


def test_info_prints_the_note(capsys, monkeypatch):
    monkeypatch.setattr(xpconv.__main__, "kernel_notes", lambda: ["OpenBLAS X runs its Y kernels"])
    assert main(["info"]) == 0
    assert "note: OpenBLAS X runs its Y kernels" in capsys.readouterr().out


def test_bench_prints_the_note_and_records_it(tmp_path, capsys, monkeypatch):
    from xpconv import bench

    monkeypatch.setattr(bench, "kernel_notes", lambda: ["OpenBLAS X runs its Y kernels"])
    out = tmp_path / "r.json"
    argv = ["--layers", "mnist", "--batch", "2", "--dtype", "float32", "--repeat", "1"]
    argv += ["--compare", "none", "--no-seed", "--json", str(out)]
    assert bench.main(argv) == 0
    assert "note: OpenBLAS X runs its Y kernels" in capsys.readouterr().out
    meta = json.loads(out.read_text())["meta"]
    assert meta["blas"]["kernel_notes"] == ["OpenBLAS X runs its Y kernels"]
