"""The ``xpconv`` command line: error paths (one line, no traceback), info, demo, bench."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import xpconv
import xpconv._backend
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


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every GPU probe says no (the registry looks xpconv._backend's up when called)."""
    monkeypatch.setattr(xpconv._backend, "gpu_available", lambda library: False)
    monkeypatch.setattr(xpconv.demo, "gpu_available", lambda library: False)


def test_cupy_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    _no_gpu(monkeypatch)
    assert main(["demo", "--backend", "cupy"]) == 1
    _one_error_line(capsys, "no working CUDA GPU")


def test_torch_cuda_without_a_gpu(capsys, monkeypatch):
    pytest.importorskip("torch")
    _no_gpu(monkeypatch)
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


# --------------------------------------------------------------------------- the backend registry


def test_registry_loads_from_its_file_without_xpconv():
    """nox reads the registry without xpconv installed: the file imports only the stdlib."""
    from pathlib import Path

    path = Path(xpconv.__file__).parent / "_registry.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_reg', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['_reg'] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        "('xpconv', 'numpy', 'torch', 'jax', 'dask', 'cupy')], sorted(sys.modules)\n"
        "print(','.join(module.names()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ",".join(xpconv._registry.names())


def test_every_backend_list_is_the_registry():
    """The demo, the bench, the test matrix and nox all read xpconv._registry."""
    from conftest import SLOW_BACKENDS, Backend
    from xpconv import _registry, bench

    assert [b.value for b in Backend] == list(_registry.names())
    assert Backend.NUMPY.value == "numpy"
    assert Backend.TORCH_CUDA.value == "torch-cuda"
    assert str(Backend.ARRAY_API_STRICT) == "array_api_strict"
    assert SLOW_BACKENDS == ("jax", "dask")
    assert tuple(xpconv.demo.BACKENDS) == _registry.cli_names()
    choices = next(a.choices for a in bench._parser()._actions if a.dest == "backend")
    assert tuple(choices) == _registry.cli_names()


def test_noxfile_sessions_come_from_the_registry():
    pytest.importorskip("nox")
    import importlib.util
    from pathlib import Path

    from xpconv import _registry

    path = Path(__file__).resolve().parents[1] / "noxfile.py"
    if not path.is_file():
        pytest.skip("no noxfile next to the tests (an installed copy)")
    spec = importlib.util.spec_from_file_location("_xpconv_noxfile", path)
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    cpu = [s for s in _registry.BACKENDS if s.device == "cpu"]
    assert {s.name: list(s.nox_packages) for s in cpu} == noxfile.BACKEND_PACKAGES
    assert [n for n in noxfile.nox.options.sessions if n.startswith("tests(")] == [
        s.nox_session for s in cpu if s.nox_default
    ]
    assert [s.name for s in noxfile.GPU_BACKENDS] == ["cupy", "torch-cuda"]


# --------------------------------------------------------------------------- bench: CLI reliability

# A fast, real setup: one tiny 2-D layer, no PyTorch, no seed, no pauses.
TINY = ["--layers", "mnist", "--batch", "2", "--repeat", "1", "--dtype", "float32"]
TINY += ["--compare", "none", "--no-seed", "--settle", "0", "--no-memory"]


def _fake_timings(monkeypatch, forward, backward, interrupt_at=None):
    """Replace the timing loop: every implementation 'measures' the given per-call times;
    the ``interrupt_at``-th layer (counting from 0) is stopped by Ctrl-C instead."""
    from xpconv import bench

    calls = []

    def run_layer(impls, repeat, settle=0.0):
        calls.append([i.name for i in impls])
        if interrupt_at is not None and len(calls) > interrupt_at:
            raise KeyboardInterrupt
        for impl in impls:
            impl.times_f, impl.times_b = list(forward), list(backward)

    monkeypatch.setattr(bench, "_run_layer", run_layer)
    return calls


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--workspace", "abc"], "--workspace: must be a positive size"),
        (["--workspace", ""], "--workspace"),
        (["--workspace", "-5"], "--workspace"),
        (["--workspace", "0"], "--workspace"),
        (["--also-workspace", "0"], "--also-workspace: must be a positive size"),
        (["--also-workspace", "none"], "--also-workspace"),
        (["--batch", "0"], "--batch: must be a positive integer, got '0'"),
        (["--batch", "-3"], "--batch"),
        (["--threads", "-1"], "--threads"),
        (["--repeat", "0"], "--repeat"),
        (["--settle", "-1"], "--settle"),
        (["--layers", ""], "selects no layer"),
        (["--layers", " , "], "selects no layer"),
        (["--layers", "mnist,nope"], "unknown layer 'nope'"),
        (["--dtype", ""], "--dtype"),
        (["--dtype", "float16"], "--dtype"),
        (["--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
        (["--device", "cuda"], "--device is only supported with --backend torch"),
    ],
)
def test_bench_bad_arguments_give_one_line_and_status_2(capsys, monkeypatch, argv, needle):
    calls = _fake_timings(monkeypatch, [1.0], [1.0])
    assert main(["bench", *TINY, *argv]) == 2
    line = _one_error_line(capsys, needle)
    assert line.startswith("xpconv bench: error:")
    assert calls == []


def test_bench_unwritable_json_fails_before_the_run(capsys, monkeypatch, tmp_path):
    calls = _fake_timings(monkeypatch, [1.0], [1.0])
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert main(["bench", *TINY, "--json", str(blocker / "r.json")]) == 2
    _one_error_line(capsys, "--json", "cannot be written")
    assert calls == []  # nothing was measured, so nothing was lost
    assert main(["bench", *TINY, "--json", str(tmp_path)]) == 2
    _one_error_line(capsys, "--json", "is a folder")
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert bench_ok(main(["bench", *TINY, "--json", str(existing)]), capsys)
    assert json.loads(existing.read_text())["results"]  # the check kept it, the run wrote it


def bench_ok(status, capsys):
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Traceback" not in captured.err
    return True


def test_bench_ctrl_c_writes_what_was_measured_and_exits_130(capsys, monkeypatch, tmp_path):
    calls = _fake_timings(monkeypatch, [1.0], [2.0], interrupt_at=1)
    out = tmp_path / "partial.json"
    argv = [*TINY, "--layers", "mnist,conv64,pointwise", "--json", str(out)]
    try:
        status = main(["bench", *argv])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped from xpconv bench as a traceback")
    assert status == 130
    assert len(calls) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert "interrupted after 1 of 3" in err[0]
    assert str(out) in err[0]
    data = json.loads(out.read_text())
    assert data["meta"]["interrupted"] is True
    assert [r["layer"] for r in data["results"]] == ["mnist"]
    assert "mnist" in captured.out


def test_bench_ctrl_c_before_measuring_is_one_line(capsys, monkeypatch):
    from xpconv import bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "_runtime", interrupted)
    try:
        status = main(["bench", *TINY])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped from xpconv bench as a traceback")
    assert status == 130
    assert capsys.readouterr().err.strip() == "xpconv bench: interrupted"


def test_bench_device_nonsense_says_what_is_accepted(capsys):
    pytest.importorskip("torch")
    assert main(["bench", *TINY, "--backend", "torch", "--device", "nonsense"]) == 3
    _one_error_line(capsys, "--device must be 'cpu', 'cuda' or 'cuda:N'", "'nonsense'")


def test_bench_without_torch_suggests_compare_none(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    argv = [a for a in TINY if a not in ("--compare", "none")]
    assert main(["bench", *argv]) == 3
    _one_error_line(capsys, "needs PyTorch", "--compare none")


def test_bench_accepts_the_dask_backend(capsys):
    pytest.importorskip("dask.array")
    status = main(["bench", *TINY, "--backend", "dask"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "backend=dask" in captured.out
    assert "mnist" in captured.out


def test_bench_total_is_one_call_and_noisy_medians_are_pointed_out(capsys, monkeypatch, tmp_path):
    """The numbers of the issue: median fwd 9.49 + median bwd 10.87 = 20.36 ms, while
    the median of fwd + bwd per call is 13.97 ms (calls: 9.49 + 4.48, 2 + 10.87,
    20 + 20). total_ms is the latter, labelled so, and the gap is pointed out."""
    _fake_timings(monkeypatch, [9.49, 2.0, 20.0], [4.48, 10.87, 20.0])
    out = tmp_path / "r.json"
    assert main(["bench", *TINY, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    row = json.loads(out.read_text())["results"][0]
    assert (row["forward_ms"], row["backward_ms"], row["total_ms"]) == (9.49, 10.87, 13.97)
    assert row["total_all_ms"] == [13.97, 12.87, 40.0]
    assert "fwd+bwd" in text
    assert "median of forward + backward in the same call" in text
    note = next(line for line in text.splitlines() if line.startswith("note: mnist"))
    assert "20.36" in note
    assert "13.97" in note
    assert "--repeat" in note


def test_bench_explains_the_seed_column(capsys, monkeypatch):
    from xpconv import bench

    _fake_timings(monkeypatch, [1.0], [1.0])
    assert main(["bench", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "/seed: fwd+bwd over the seed formulation" in help_text
    assert "benchmarks/seed_formulation.py" in help_text
    monkeypatch.setattr(bench, "_load_seed", lambda: None)  # an installed xpconv
    argv = [a for a in TINY if a != "--no-seed"]
    assert main(["bench", *argv]) == 0
    text = capsys.readouterr().out
    assert "/seed: empty" in text
    assert "--no-seed" in text


# --------------------------------------------------------------------------- bench: N-d layers


def test_bench_two_d_layers_keep_their_json_fields():
    """Results stay comparable with benchmarks/results/cpu-numpy.json: same fields, same
    values for the layers it has."""
    from pathlib import Path

    from xpconv.bench import LAYERS

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu-numpy.json"
    if not path.is_file():
        pytest.skip("no committed results next to the tests")
    for old in json.loads(path.read_text())["results"]:
        new = LAYERS[old["layer"]].describe()
        for key in ("shape", "groups", "dilation", "padding"):
            assert new[key] == old[key], (old["layer"], key)


def test_bench_nd_layers_run_against_torch(capsys, tmp_path):
    """A real run of a 1-D and a 3-D layer (small batches) against PyTorch."""
    pytest.importorskip("torch")
    from xpconv import bench

    out = tmp_path / "nd.json"
    argv = ["--layers", "wave1d-stem,video3d-stem", "--batch", "1", "--repeat", "1"]
    argv += ["--dtype", "float32", "--settle", "0", "--json", str(out)]
    assert bench.main(argv) == 0
    rows = {(r["layer"], r["impl"]): r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {
        (la, i) for la in ("wave1d-stem", "video3d-stem") for i in ("xpconv", "torch")
    }
    wave = rows["wave1d-stem", "xpconv"]
    assert wave["shape"] == [1, 1, 16000, 64, 80, 4]
    assert (wave["rank"], wave["x_shape"], wave["w_shape"]) == (1, [1, 1, 16000], [64, 1, 80])
    assert wave["padding"] == 0
    video = rows["video3d-stem", "torch"]
    assert video["shape"] == [1, 3, 16, 112, 112, 64, 3, 7, 7, 1, 2, 2]
    assert (video["padding"], video["stride"]) == ([1, 3, 3], [1, 2, 2])
    # out (16, 56, 56): 2 * N * O * prod(out) * C * prod(kernel) FLOPs, 3x for fwd + bwd
    flops = 3 * 2 * 64 * 16 * 56 * 56 * 3 * 3 * 7 * 7
    assert video["gflops"] == pytest.approx(flops / (video["total_ms"] * 1e-3) / 1e9, rel=1e-2)
    assert video["peak_mem_mib"] is not None
    assert "/seed" not in capsys.readouterr().err


def test_bench_layer_groups():
    from xpconv.bench import LAYER_GROUPS, _layer_names

    assert LAYER_GROUPS["1d"] == ("audio1d", "wave1d-stem")
    assert LAYER_GROUPS["3d"] == ("vol3d", "video3d-stem")
    assert _layer_names("3d,vol3d,mnist") == ["vol3d", "video3d-stem", "mnist"]


# --------------------------------------------------------------------------- demo: seed range


def test_demo_seed_beyond_what_scikit_learn_takes(capsys):
    assert main(["demo", "--seed", "4294967296"]) == 2
    _one_error_line(capsys, "--seed: must be an integer from 0 to 4294967295")
    with pytest.raises(xpconv.demo.DemoError, match="seed must be an integer from 0 to"):
        xpconv.demo.run_demo(xpconv.demo.DemoConfig(seed=2**32, plot=False), stream=None)


# ------------------------------------------------------------------ benchmarks/gemm_floor.py


def test_gemm_floor_products_follow_the_route():
    """The floor's products do the route's arithmetic: the forward and weight-gradient
    products 2*N*O*L*C*K FLOPs each, the input gradient as much (col2im) or the
    transposed convolution's 2*N*C*prod(in)*O*K."""
    import importlib.util
    import math
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gemm_floor.py"
    if not path.is_file():
        pytest.skip("no benchmarks folder next to the tests")
    spec = importlib.util.spec_from_file_location("_gemm_floor", path)
    floor = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = floor
    try:
        spec.loader.exec_module(floor)
    finally:
        del sys.modules[spec.name]
    layers = floor._gemm_layers()
    assert {"audio1d", "wave1d-stem", "vol3d", "video3d-stem", "mnist"} <= set(layers)
    assert "depthwise" not in layers
    for name in layers:
        layer = floor.LAYERS[name]
        route = floor._route(floor._geometry(layer), "float32")
        by_name = {p.name: floor._flops(p) for p in floor._products(layer, "float32")}
        assert by_name["forward"] == layer.forward_flops, name
        assert by_name["weight"] == layer.forward_flops, name
        if route.input_grad_by == "transposed":
            volume = layer.n * math.prod(layer.size) * math.prod(layer.kernel)
            assert by_name["input"] == 2 * layer.c * layer.o * volume, name
        else:
            assert by_name["input"] == layer.forward_flops, name
        assert len(floor._copies(layer, "float32")) == (0 if route.kernel == "pointwise" else 3)
