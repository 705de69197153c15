"""The performance page's generator (docs/scripts/make_perf_page.py) on the committed results."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def perf():
    path = ROOT / "docs" / "scripts" / "make_perf_page.py"
    spec = importlib.util.spec_from_file_location("_make_perf_page", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page(perf, tmp_path_factory):
    images = tmp_path_factory.mktemp("images")
    return perf.render(RESULTS, images, "IMG"), images


XEON_META = {
    "date": "2026-11-29T06:53:57+00:00",
    "machine": {"cpu": "Intel(R) Xeon(R) Processor", "cpu_count": 2},
    "python": "3.11.7",
    "numpy": "2.4.6",
    "torch": "2.13.0+cpu",
    "xpconv": "0.1.0",
    "blas": {
        "libraries": [
            {"internal_api": "openblas", "version": "0.3.31.188.0", "architecture": "SkylakeX"}
        ]
    },
    "threads": {"requested": 2, "torch": 2, "xpconv": 2, "blas:openblas": 2},
    "backend": "numpy",
    "compare": "torch",
    "device": "cpu",
    "workspace_bytes": 16 * 2**20,
}


def test_a_run_is_named_by_its_machine_in_words(perf):
    assert perf.run_title(XEON_META, "?") == "2-core Intel Xeon: NumPy against PyTorch CPU"
    assert perf.environment(XEON_META) == (
        "Measured on 2026-11-29 on the 2-core Intel Xeon with Python 3.11.7, NumPy 2.4.6, "
        "PyTorch 2.13.0+cpu, xpconv 0.1.0; OpenBLAS 0.3.31 (SkylakeX kernels); 2 CPU threads "
        "for every library; a 16 MiB workspace."
    )


def test_sections_are_named_by_machine_not_by_timestamp(page, perf):
    text, _ = page
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## At a glance"
    cpu_meta = json.loads((RESULTS / "cpu-numpy.json").read_text())["meta"]
    assert f"## {perf.run_title(cpu_meta, '?')}" in headings
    assert "## NVIDIA H200: CuPy against PyTorch CUDA (cuDNN)" in headings
    assert not [h for h in headings if re.search(r"\d{4}-\d\d-\d\dT|\d\d:\d\d", h)]
    assert len(set(headings)) == len(headings)


def test_environment_is_a_sentence_not_a_python_dict(page, perf):
    text, _ = page
    assert "{'" not in text
    assert "'libraries'" not in text
    cpu_meta = json.loads((RESULTS / "cpu-numpy.json").read_text())["meta"]
    assert perf.environment(cpu_meta).removesuffix(".") in text


def test_the_page_opens_with_the_cpu_and_gpu_ratio_picture(page, perf):
    text, images = page
    first = text.split("\n## ", 1)[0]
    assert "![xpconv time over PyTorch time per layer](IMG/perf-overview.png)" in first
    assert (images / "perf-overview.png").stat().st_size > 10_000
    # The run of each kind of device that compares the most layers: not the workspace study.
    runs = perf.overview_runs(perf.result_files(RESULTS))
    assert [path.name for path, _, _ in runs] == ["cpu-numpy.json", "gpu-cupy-h200.json"]


def test_summary_ratios_are_the_measured_times(page):
    """The table's xpconv / torch column is total_ms over total_ms from the JSON."""
    text, _ = page
    rows = json.loads((RESULTS / "cpu-numpy.json").read_text())["results"]
    total = {(r["layer"], r["dtype"], r["impl"]): r["total_ms"] for r in rows}
    ratio = total["mnist", "float32", "xpconv"] / total["mnist", "float32", "torch"]
    line = next(line for line in text.splitlines() if line.startswith("| mnist | float32 |"))
    assert f"| {ratio:.2f} |" in line


@pytest.mark.parametrize(
    ("meta", "name"),
    [
        ({"device": "NVIDIA H200", "machine": {"cpu": "x", "cpu_count": 16}}, "NVIDIA H200"),
        (
            {"device": "cpu", "machine": {"cpu": "AMD EPYC 7B13", "cpu_count": 2}},
            "2-core AMD EPYC 7B13",
        ),
        ({"machine": "Intel(R) Xeon(R) Processor (2 CPUs)"}, "2-core Intel Xeon"),
        ({}, "unnamed machine"),
    ],
)
def test_machine_names(perf, meta, name):
    assert perf.machine_name(meta) == name


def test_charts_never_repeat_a_colour(perf):
    assert len(set(perf.PALETTE)) == len(perf.PALETTE)
    impls = {r["impl"] for path in perf.result_files(RESULTS) for r in perf.load(path)[1]}
    assert len(impls) <= len(perf.PALETTE)
