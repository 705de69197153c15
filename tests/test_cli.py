"""The ``xpconv`` command line: error paths (one line, no traceback), info, demo, bench."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import xpconv
import xpconv.demo
from xpconv.__main__ import main


def _one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    line = lines[0]
    assert line.startswith("xpconv"), line
    assert "error" in line
    for needle in needles:
        assert needle in line
    return line


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
        (["demo", "--epochs", "0"], "--epochs: must be a positive integer, got '0'"),
        (["demo", "--epochs", "ten"], "--epochs"),
        (["demo", "--batch-size", "-4"], "--batch-size"),
        (["demo", "--batch-size", "1.5"], "--batch-size"),
        (["demo", "--lr", "0"], "--lr: must be a positive number"),
        (["demo", "--lr", "nan"], "--lr"),
        (["demo", "--lr", "inf"], "--lr"),
        (["demo", "--seed", "-1"], "--seed"),
        (["demo", "--dtype", "float16"], "--dtype"),
        (["demo", "--frobnicate"], "unrecognized arguments"),
        (["train"], "invalid choice: 'train'"),
        (["--nope"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, needle):
    assert main(argv) == 2
    _one_error_line(capsys, needle)


# --------------------------------------------------------------------------- environment errors


@pytest.mark.parametrize(
    ("backend", "module"),
    [
        ("cupy", "cupy"),
        ("jax", "jax.numpy"),
        ("torch", "torch"),
        ("dask", "dask.array"),
        ("array_api_strict", "array_api_strict"),
    ],
)
def test_backend_not_installed(capsys, monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    assert main(["demo", "--backend", backend]) == 1
    line = _one_error_line(capsys, f"backend '{backend}' is not installed", "pip install")
    assert "xpconv demo: error:" in line


def test_cupy_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setattr(xpconv.demo, "gpu_available", lambda library: False)
    assert main(["demo", "--backend", "cupy"]) == 1
    _one_error_line(capsys, "no working CUDA GPU")


def test_torch_cuda_without_a_gpu(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(xpconv.demo, "gpu_available", lambda library: False)
    assert main(["demo", "--backend", "torch", "--device", "cuda"]) == 1
    _one_error_line(capsys, "CUDA")


def test_device_is_for_torch_only(capsys):
    assert main(["demo", "--device", "cpu"]) == 1
    _one_error_line(capsys, "--device")


@pytest.mark.parametrize(
    ("module", "package"), [("sklearn", "scikit-learn"), ("matplotlib", "matplotlib")]
)
def test_missing_demo_extra_names_the_install_command(capsys, monkeypatch, module, package):
    if module != "sklearn":
        pytest.importorskip("sklearn")  # checked first
    monkeypatch.setitem(sys.modules, module, None)
    assert main(["demo", "--epochs", "1"]) == 1
    _one_error_line(capsys, package, 'pip install "xpconv[demo]"')


def test_out_that_is_a_file(capsys, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert main(["demo", "--epochs", "1", "--out", str(blocker)]) == 1
    _one_error_line(capsys, "--out", "file.txt")


# --------------------------------------------------------------------------- success paths


def test_demo_runs_and_writes_the_picture(capsys, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "pictures"
    status = main(["demo", "--epochs", "1", "--batch-size", "64", "--out", str(out), "--seed", "3"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Traceback" not in captured.err
    assert "epoch 1/1:" in captured.out  # stderr is not a terminal: one line per epoch
    assert "test accuracy:" in captured.out
    assert "time per epoch:" in captured.out
    png = out / "xpconv-demo.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert png.stat().st_size > 10_000


def test_info_in_process(capsys):
    assert main(["info"]) == 0
    captured = capsys.readouterr()
    assert f"xpconv {xpconv.__version__}" in captured.out
    assert "numpy" in captured.out
    assert "usable" in captured.out
    assert "BLAS" in captured.out
    assert captured.err == ""


def test_info_as_a_module_in_a_subprocess():
    done = subprocess.run(
        [sys.executable, "-m", "xpconv", "info"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"xpconv {xpconv.__version__}\n")
    assert "array API backends:" in done.stdout
    assert "Traceback" not in done.stderr


def test_help_and_version(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "info" in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"xpconv {xpconv.__version__}"


# --------------------------------------------------------------------------- bench


def test_bench_forwards_its_arguments(monkeypatch):
    seen = []
    fake = types.ModuleType("xpconv.bench")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "xpconv.bench", fake)
    assert main(["bench", "--quick", "--backend", "numpy"]) == 7
    assert seen == [["--quick", "--backend", "numpy"]]


def test_bench_argparse_exit_becomes_a_status(monkeypatch):
    def fake_main(argv):
        raise SystemExit(2)

    fake = types.ModuleType("xpconv.bench")
    fake.main = fake_main
    monkeypatch.setitem(sys.modules, "xpconv.bench", fake)
    assert main(["bench", "--bad"]) == 2


def test_bench_missing_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "xpconv.bench", None)
    assert main(["bench"]) == 1
    _one_error_line(capsys, "xpconv.bench")


def test_bench_also_workspace_runs_both_and_reports_the_bound(tmp_path, capsys):
    """A real (tiny) run: xpconv under the default limit and under 1 MiB,
    interleaved, with the memory bound of the performance issue printed."""
    from xpconv import bench

    out = tmp_path / "r.json"
    argv = ["--layers", "mnist", "--batch", "2", "--dtype", "float32", "--repeat", "1"]
    argv += ["--compare", "none", "--no-seed", "--also-workspace", "1M", "--json", str(out)]
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    assert "xpconv-ws1MiB: time / xpconv" in text
    assert "bound (arrays + limit) * 1.1" in text
    data = json.loads(out.read_text())
    assert data["meta"]["also_workspace_bytes"] == 2**20
    impls = {r["impl"]: r for r in data["results"]}
    assert set(impls) == {"xpconv", "xpconv-ws1MiB"}
    # x, w, b, grad_output, output and gradients of a (2, 1, 28, 28) -> 32-channel layer
    expected = 2 * (2 * 28 * 28 + 32 * 9 + 32 + 2 * 32 * 28 * 28) * 4 / 2**20
    assert impls["xpconv-ws1MiB"]["array_mib"] == round(expected, 2)


def test_bench_times_each_library_in_blocks_after_a_warm_up():
    """Two rounds; in each, every implementation gets one untimed call and
    then a block of timed ones, so no library is timed right after another."""
    from xpconv import bench

    calls: list[str] = []

    def impl(name: str) -> bench.Impl:
        return bench.Impl(name, lambda: calls.append(name), lambda _y: None, lambda _a: None, None)

    impls = [impl("a"), impl("b")]
    bench._run_layer(impls, repeat=5, settle=0)
    assert calls == ["a"] * 4 + ["b"] * 4 + ["a"] * 4 + ["b"] * 4  # (1 warm-up + 3) x 2 rounds
    assert all(len(i.times_f) == len(i.times_b) == 6 for i in impls)


def test_bench_cuda_variants_name_their_cudnn_flags():
    """The PyTorch CUDA rows: plain "torch" is always the ratio's reference, and
    "torch-fp32" (TF32 off) is added for float32 only."""
    from xpconv.bench import _cuda_variants

    both = _cuda_variants("both", "both", "float32")
    assert both == {
        "torch": {"benchmark": False},
        "torch-cudnn-benchmark": {"benchmark": True},
        "torch-fp32": {"benchmark": False, "allow_tf32": False},
    }
    assert "torch-fp32" not in _cuda_variants("both", "both", "float64")
    assert _cuda_variants("on", "default", "float32") == {"torch": {"benchmark": True}}
    off = _cuda_variants("both", "off", "float64")
    assert all(flags["allow_tf32"] is False for flags in off.values())
