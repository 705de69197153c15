"""Benchmark suite: xpconv against PyTorch and the seed formulation, in one run.

Run it as ``xpconv bench [ARGS]``, ``python benchmarks/run.py [ARGS]`` or
``python -m xpconv.bench [ARGS]``; ``--help`` lists the options. Every
implementation is timed on the same data in the same run, in two rounds
(xpconv, PyTorch, the seed formulation, then again), each a block of runs
after a pause (``--settle``) and an untimed warm-up call, so that the ratios
stay meaningful on a shared, noisy machine and one library's spinning worker
threads do not slow down the next. Reported times are medians of at least
``--repeat`` runs.

What is measured, per layer and dtype:

* ``forward_ms``: ``conv2d(x, w, b)`` (PyTorch: ``F.conv2d``);
* ``backward_ms``: the input, weight and bias gradients
  (``conv2d_backward``; PyTorch: ``torch.autograd.grad`` through the graph of
  the forward call just timed; the seed formulation: its backward from the
  columns cached by its forward pass);
* ``total_ms = forward_ms + backward_ms`` and
  ``gflops = 3 * forward FLOPs / total`` (the backward pass counted as twice
  the forward's 2*N*O*OH*OW*C/groups*KH*KW);
* ``peak_mem_mib``: the largest memory allocated on top of the arrays that
  existed before the call, over one forward and one backward call (each
  measured separately, the larger is kept). NumPy: :mod:`tracemalloc` (NumPy
  reports its buffers to it). CuPy: a memory-pool hook that follows every
  allocation and free. torch CUDA: ``torch.cuda.max_memory_allocated``.
  torch CPU: the CPU allocator is invisible to tracemalloc, so the rise of the
  process's peak resident set size (``VmHWM`` after ``malloc_trim(0)`` and
  ``/proc/self/clear_refs``) is reported instead, with ``peak_mem_method`` =
  ``"rss_hwm"`` saying so; it is a lower bound (pages that were resident
  already, or allocated and never touched, do not count) and ``null`` where
  ``/proc`` is not available. Results with their outputs kept alive are
  counted (the outputs are part of the peak).

GPU timings call ``synchronize`` before every clock reading.

The JSON written by ``--json`` has the form::

    {"meta": {"date", "machine", "python", "numpy", "torch", "blas", "threads",
              "backend", "compare", "device", ...},
     "results": [{"layer", "shape": [N, C, H, W, O, K, stride], "groups",
                  "dilation", "padding", "dtype", "impl", "forward_ms",
                  "backward_ms", "total_ms", "gflops", "peak_mem_mib",
                  "peak_mem_method", "forward_all_ms", "backward_all_ms"}, ...]}

``impl`` is ``"xpconv"``, ``"torch"``, ``"seed"`` or, with
``--compare torch-cuda``, one of PyTorch's CUDA variants (:data:`CUDA_VARIANTS`):
``"torch-cudnn-benchmark"`` (``torch.backends.cudnn.benchmark = True``;
plain ``"torch"`` rows have it off) and, for float32, ``"torch-fp32"`` (cuDNN
with TF32 off, the same IEEE float32 arithmetic as xpconv; PyTorch's default
lets cuDNN round float32 convolution inputs to TF32).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpconv._threads import thread_count, thread_limit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["LAYERS", "QUICK_LAYERS", "Layer", "main"]


@dataclass(frozen=True)
class Layer:
    """A benchmark layer (N, C, H, W, O, K, stride) with its other arguments."""

    name: str
    n: int
    c: int
    h: int
    w: int
    o: int
    k: int
    stride: int
    padding: int
    dilation: int = 1
    groups: int = 1

    @property
    def shape(self) -> list[int]:
        return [self.n, self.c, self.h, self.w, self.o, self.k, self.stride]

    @property
    def out_hw(self) -> tuple[int, int]:
        def size(s: int) -> int:
            return (s + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

        return size(self.h), size(self.w)

    @property
    def forward_flops(self) -> int:
        oh, ow = self.out_hw
        return 2 * self.n * self.o * oh * ow * (self.c // self.groups) * self.k * self.k

    @property
    def conv_kwargs(self) -> dict[str, Any]:
        """stride, padding, dilation and groups, as conv2d keywords."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def array_bytes(self, itemsize: int) -> int:
        """Bytes of x, weight, bias, grad_output, the output and the three gradients."""
        oh, ow = self.out_hw
        x = self.n * self.c * self.h * self.w
        w = self.o * (self.c // self.groups) * self.k * self.k
        y = self.n * self.o * oh * ow
        return 2 * (x + w + self.o + y) * itemsize

    def with_batch(self, n: int) -> Layer:
        return Layer(
            self.name, n, self.c, self.h, self.w, self.o, self.k, self.stride,
            self.padding, self.dilation, self.groups,
        )  # fmt: skip


# The standard layers of the performance issue; padding K//2 as in real networks
# (the 7x7 stride-2 layer is the ResNet stem).
LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer("mnist", 64, 1, 28, 28, 32, 3, 1, 1),
        Layer("conv64", 32, 64, 32, 32, 64, 3, 1, 1),
        Layer("conv128", 16, 128, 28, 28, 128, 3, 1, 1),
        Layer("stem7x7", 8, 3, 224, 224, 64, 7, 2, 3),
        Layer("pointwise", 32, 256, 14, 14, 64, 1, 1, 0),
        Layer("depthwise", 32, 128, 28, 28, 128, 3, 1, 1, groups=128),
        Layer("dilated", 16, 64, 32, 32, 64, 3, 1, 2, dilation=2),
    )
}
STANDARD = ("mnist", "conv64", "conv128", "stem7x7", "pointwise")
QUICK_LAYERS = ("mnist", "conv64", "pointwise")

BACKENDS = ("numpy", "cupy", "torch", "array_api_strict", "jax")
COMPARES = ("torch", "torch-cuda", "none")
# Seconds of pause before each implementation's block of timed runs (see _run_layer).
SETTLE_S = 0.5


# --------------------------------------------------------------------------- environment


def _blas_info() -> tuple[dict[str, Any], dict[str, Any]]:
    """(BLAS description, thread counts) from threadpoolctl, if installed."""
    try:
        import threadpoolctl
    except ImportError:
        return {"note": "threadpoolctl not installed"}, {}
    info = threadpoolctl.threadpool_info()
    blas = [
        {
            k: p.get(k)
            for k in ("internal_api", "version", "architecture", "threading_layer", "filepath")
        }
        for p in info
        if p.get("user_api") == "blas"
    ]
    threads = {f"{p.get('user_api')}:{p.get('internal_api')}": p.get("num_threads") for p in info}
    return ({"libraries": blas} if blas else {"note": "no BLAS found by threadpoolctl"}), threads


def _blas_threads() -> int | None:
    try:
        import threadpoolctl
    except ImportError:
        return None
    counts = [
        p["num_threads"] for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"
    ]
    return max(counts) if counts else None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", "unknown")


# --------------------------------------------------------------------------- backends


@dataclass
class Runtime:
    """How to make arrays for the chosen backend and how to wait for them."""

    name: str
    xp: Any
    device: Any
    to_backend: Callable[[Any], Any]
    sync: Callable[[Any], None]
    is_gpu: bool


def _runtime(backend: str, device: str | None) -> Runtime:
    from xpconv._backend import synchronize

    if backend == "numpy":
        xp = importlib.import_module("array_api_compat.numpy")
        return Runtime(backend, xp, "cpu", lambda a: a, synchronize, is_gpu=False)
    if backend == "cupy":
        import array_api_compat.cupy as xp
        import cupy

        return Runtime(backend, xp, "cuda", cupy.asarray, synchronize, is_gpu=True)
    if backend == "torch":
        import array_api_compat.torch as xp
        import torch

        dev = device or "cpu"
        return Runtime(
            backend,
            xp,
            dev,
            lambda a: torch.from_numpy(a).to(dev),
            synchronize,
            is_gpu=dev != "cpu",
        )
    if backend == "array_api_strict":
        xp = importlib.import_module("array_api_strict")
        return Runtime(backend, xp, None, xp.asarray, synchronize, is_gpu=False)
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 layers
        jnp = importlib.import_module("jax.numpy")
        return Runtime(backend, jnp, None, jnp.asarray, synchronize, is_gpu=False)
    msg = f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
    raise ValueError(msg)


def _load_seed() -> Any | None:
    """benchmarks/seed_formulation.py from a source checkout, or None.

    Looked for above this file (an editable install) and above the working
    directory (an installed xpconv run from the checkout, as on a GPU machine).
    """
    here = Path(__file__).resolve()
    for root in (*here.parents, Path.cwd(), *Path.cwd().parents):
        candidate = root / "benchmarks" / "seed_formulation.py"
        if candidate.is_file():
            spec = importlib.util.spec_from_file_location("_xpconv_seed_formulation", candidate)
            if spec is None or spec.loader is None:
                return None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


# --------------------------------------------------------------------------- memory


def _proc_status_kib(field: str) -> int | None:
    """A memory figure of this process from /proc (``VmRSS``, ``VmHWM``), in KiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return None


def _malloc_trim() -> None:
    """glibc's ``malloc_trim(0)``: return free heap memory to the OS (no-op elsewhere)."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)


class _CupyPeak:
    """A CuPy memory hook that tracks the peak of bytes in use from the pool."""

    name = "xpconv-bench-peak"

    def __init__(self) -> None:
        from cupy.cuda import memory_hook

        class Hook(memory_hook.MemoryHook):
            name = "xpconv_bench_peak"

            def __init__(self) -> None:
                self.live: dict[int, int] = {}
                self.used = 0
                self.peak = 0

            def malloc_postprocess(self, **kw: Any) -> None:
                self.live[kw["mem_ptr"]] = kw["mem_size"]
                self.used += kw["mem_size"]
                self.peak = max(self.peak, self.used)

            def free_postprocess(self, **kw: Any) -> None:
                self.used -= self.live.pop(kw["mem_ptr"], kw["mem_size"])

        self.hook = Hook()


def _measure_peak(run: Callable[[], Any], kind: str, sync: Callable[[Any], None]) -> float | None:
    """Peak extra bytes (MiB) allocated while ``run()`` executes; ``kind`` picks the method."""
    gc.collect()
    if kind == "tracemalloc":
        tracemalloc.start()
        try:
            out = run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del out
        return peak / 2**20
    if kind == "cupy_pool":
        import cupy

        peak_hook = _CupyPeak().hook
        with peak_hook:
            out = run()
            sync(_first_array(out))
        del out
        cupy.get_default_memory_pool()  # keep the pool; the hook saw every malloc/free
        return peak_hook.peak / 2**20
    if kind == "torch_cuda":
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return peak / 2**20
    if kind == "rss_hwm":
        _malloc_trim()  # give freed heap pages back, so that reusing them shows as a rise
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            return None
        rss_before = _proc_status_kib("VmRSS")
        out = run()
        rss_peak = _proc_status_kib("VmHWM")
        del out
        if rss_before is None or rss_peak is None:
            return None
        return (rss_peak - rss_before) / 1024
    return None


# --------------------------------------------------------------------------- implementations


@dataclass
class Impl:
    """One implementation under test: a forward and a backward closure."""

    name: str
    forward: Callable[[], Any]
    backward: Callable[[Any], Any]  # takes what forward returned
    sync: Callable[[Any], None]
    mem_kind: str | None
    mem_note: str | None = None
    times_f: list[float] = field(default_factory=list)
    times_b: list[float] = field(default_factory=list)


def _xpconv_impl(layer: Layer, data: dict[str, Any], rt: Runtime, limit: int | None = None) -> Impl:
    """xpconv under the workspace limit in force, or under ``limit`` bytes if given."""
    import xpconv

    x, w, b, gy = (rt.to_backend(data[k]) for k in ("x", "w", "b", "gy"))
    kw = layer.conv_kwargs
    if rt.name == "cupy":
        mem = "cupy_pool"
    elif rt.name == "numpy":
        mem = "tracemalloc"
    elif rt.name == "torch" and rt.is_gpu:
        mem = "torch_cuda"
    elif rt.name == "torch":
        mem = "rss_hwm"
    else:
        mem = None
    if limit is None:
        return Impl(
            "xpconv",
            lambda: xpconv.conv2d(x, w, b, **kw),
            lambda _y: xpconv.conv2d_backward(gy, x, w, **kw),
            rt.sync,
            mem,
        )

    def fwd() -> Any:
        with xpconv.workspace_limit(limit):
            return xpconv.conv2d(x, w, b, **kw)

    def bwd(_y: Any) -> Any:
        with xpconv.workspace_limit(limit):
            return xpconv.conv2d_backward(gy, x, w, **kw)

    return Impl(f"xpconv-ws{_mib_label(limit)}", fwd, bwd, rt.sync, mem)


def _mib_label(nbytes: int) -> str:
    return f"{nbytes / 2**20:g}MiB"


@contextlib.contextmanager
def _cudnn_flags(flags: dict[str, bool] | None) -> Iterator[None]:
    """``torch.backends.cudnn`` settings (benchmark, allow_tf32) for one call, then restored."""
    if not flags:
        yield
        return
    import torch

    saved = {k: getattr(torch.backends.cudnn, k) for k in flags}
    for k, v in flags.items():
        setattr(torch.backends.cudnn, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(torch.backends.cudnn, k, v)


def _torch_impl(
    layer: Layer, data: dict[str, Any], device: str, name: str, flags: dict[str, bool] | None = None
) -> Impl:
    import torch
    import torch.nn.functional as F

    from xpconv._backend import synchronize

    def t(a: Any, grad: bool) -> Any:
        return torch.from_numpy(a).to(device).requires_grad_(grad)

    x, w, b = t(data["x"], True), t(data["w"], True), t(data["b"], True)
    gy = t(data["gy"], False)
    kw = layer.conv_kwargs

    def fwd() -> Any:
        with _cudnn_flags(flags):
            return F.conv2d(x, w, b, **kw)

    def bwd(y: Any) -> Any:
        with _cudnn_flags(flags):
            return torch.autograd.grad(y, (x, w, b), gy)

    return Impl(name, fwd, bwd, synchronize, "torch_cuda" if device != "cpu" else "rss_hwm")


# The PyTorch CUDA variants: name -> cuDNN flags. "torch" is PyTorch's default
# (cudnn.benchmark off; float32 convolutions may use TF32 tensor cores, whose
# 10-bit mantissa gives errors near 1e-3). "torch-fp32" turns TF32 off: the
# same IEEE float32 arithmetic as xpconv, the like-for-like comparison.
CUDA_VARIANTS: dict[str, dict[str, bool]] = {
    "torch": {"benchmark": False},
    "torch-cudnn-benchmark": {"benchmark": True},
    "torch-fp32": {"benchmark": False, "allow_tf32": False},
}


def _cuda_variants(benchmark: str, tf32: str, dtype: str) -> dict[str, dict[str, bool]]:
    """The PyTorch CUDA rows to time, name -> cuDNN flags, for the CLI choices.

    A single variant is named plain "torch", the reference of the ratio column.
    """
    names = {"off": ["torch"], "on": ["torch-cudnn-benchmark"]}.get(
        benchmark, ["torch", "torch-cudnn-benchmark"]
    )
    chosen = {n: dict(CUDA_VARIANTS[n]) for n in names}
    if tf32 == "off":
        for flags in chosen.values():
            flags["allow_tf32"] = False
    if len(chosen) == 1:
        chosen = {"torch": next(iter(chosen.values()))}
    if tf32 == "both" and dtype == "float32":  # TF32 only ever applies to float32
        chosen["torch-fp32"] = {**chosen["torch"], "allow_tf32": False}
    return chosen


def _seed_impl(layer: Layer, data: dict[str, Any], rt: Runtime, seed: Any) -> Impl:
    x, w, b, gy = (rt.to_backend(data[k]) for k in ("x", "w", "b", "gy"))
    kw = layer.conv_kwargs
    return Impl(
        "seed",
        lambda: seed.forward(x, w, b, **kw),
        lambda out: seed.backward(gy, out[1]),
        rt.sync,
        "cupy_pool" if rt.name == "cupy" else "tracemalloc",
    )


def _first_array(out: Any) -> Any:
    """Something to synchronize on: the first array in a (nested) result."""
    while isinstance(out, tuple | list) and out:
        out = out[0]
    return out


def _call(impl: Impl) -> tuple[float, float]:
    """One forward and backward pass; returns their times in ms."""
    start = time.perf_counter()
    y = impl.forward()
    impl.sync(_first_array(y))
    mid = time.perf_counter()
    g = impl.backward(y)
    impl.sync(_first_array(g))
    end = time.perf_counter()
    del y, g
    return (mid - start) * 1e3, (end - mid) * 1e3


def _run_layer(impls: list[Impl], repeat: int, settle: float = SETTLE_S) -> None:
    """Time every implementation ``repeat`` times (or a little more).

    Each implementation runs its repetitions as a block, after a ``settle``
    second pause and one untimed call: OpenBLAS's and OpenMP's worker threads
    keep spinning for a while after a call and slow down the next library's
    threads (alternating call by call, torch's time on the MNIST-like layer
    went from 10 ms to 17-85 ms). Two rounds over the implementations (for
    ``repeat`` >= 4) spread slow drifts of the machine over all of them.
    """
    rounds = 2 if repeat >= 4 else 1
    per_round = math.ceil(repeat / rounds)
    for impl in impls:
        impl.times_f, impl.times_b = [], []
    for _ in range(rounds):
        for impl in impls:
            if settle > 0:
                time.sleep(settle)
            _call(impl)  # warm-up: wakes the threads, loads kernels and cuDNN plans
            for _ in range(per_round):
                f, b = _call(impl)
                impl.times_f.append(f)
                impl.times_b.append(b)


def _peak(impl: Impl) -> float | None:
    if impl.mem_kind is None:
        return None
    holder: dict[str, Any] = {}

    def fwd() -> Any:
        holder["y"] = impl.forward()
        return holder["y"]

    peak_f = _measure_peak(fwd, impl.mem_kind, impl.sync)
    peak_b = _measure_peak(lambda: impl.backward(holder["y"]), impl.mem_kind, impl.sync)
    holder.clear()
    if peak_f is None or peak_b is None:
        return None
    return max(peak_f, peak_b)


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xpconv bench",
        description=(
            "Time xpconv's conv2d forward and backward against PyTorch and the seed formulation."
        ),
    )
    p.add_argument(
        "--backend", choices=BACKENDS, default="numpy", help="array library xpconv runs on"
    )
    p.add_argument("--device", default=None, help="torch device for --backend torch (default cpu)")
    p.add_argument(
        "--compare",
        choices=COMPARES,
        default=None,
        help="PyTorch reference: torch (CPU), torch-cuda, or none "
        "(default: torch-cuda for a GPU backend, else torch)",
    )
    p.add_argument(
        "--cudnn-benchmark",
        choices=("off", "on", "both"),
        default="both",
        help="with --compare torch-cuda: torch.backends.cudnn.benchmark setting(s) to time",
    )
    p.add_argument(
        "--cudnn-tf32",
        choices=("default", "off", "both"),
        default="both",
        help="with --compare torch-cuda, float32: cuDNN with PyTorch's default TF32 setting, "
        "with TF32 off (IEEE float32 like xpconv), or both (adds a torch-fp32 row)",
    )
    p.add_argument("--no-seed", action="store_true", help="skip the seed-formulation baseline")
    p.add_argument(
        "--dtype", default="float32,float64", help="comma-separated dtypes (float32, float64)"
    )
    p.add_argument(
        "--layers",
        default=None,
        help=(
            f"comma-separated subset of {', '.join(LAYERS)} "
            f"(default: all; --quick: {', '.join(QUICK_LAYERS)})"
        ),
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per measurement, median kept (default 5; --quick: 3)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="override every layer's batch size (e.g. 256 on a GPU)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a fast subset: {', '.join(QUICK_LAYERS)}, float32, 3 runs",
    )
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    p.add_argument(
        "--workspace",
        default=None,
        help="xpconv workspace limit in bytes ('none' for unlimited; default: xpconv's default)",
    )
    p.add_argument(
        "--also-workspace",
        default=None,
        help="also time xpconv under this workspace limit (e.g. 16M), in the same rounds as "
        "the run under --workspace, and print its time ratio and its peak memory against the "
        "bound inputs + outputs + gradients + limit (+10%%)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        help=f"seconds of pause before each implementation's block of timed runs, so that "
        f"the previous library's worker threads stop spinning (default {SETTLE_S})",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument(
        "--threads", type=int, default=None, help="BLAS and torch threads (default: BLAS's)"
    )
    return p


def _parse_workspace(value: str | None) -> tuple[bool, int | None]:
    if value is None:
        return False, None
    if value.lower() in ("none", "unlimited"):
        return True, None
    suffixes = {"k": 2**10, "m": 2**20, "g": 2**30}
    v = value.lower().removesuffix("ib").removesuffix("b")
    scale = suffixes.get(v[-1:], 1)
    number = v[:-1] if v[-1:] in suffixes else v
    return True, int(float(number) * scale)


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """BLAS threads and xpconv's own (the depthwise kernel's) limited to ``n``."""
    if n is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(thread_limit(n))
        try:
            import threadpoolctl
        except ImportError:
            pass
        else:
            stack.enter_context(threadpoolctl.threadpool_limits(limits=n, user_api="blas"))
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns a process exit status."""
    args = _parser().parse_args(None if argv is None else list(argv))
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.quick:
        if args.layers is None:
            args.layers = ",".join(QUICK_LAYERS)
        if args.dtype == "float32,float64":
            args.dtype = "float32"
    names = (
        list(LAYERS)
        if args.layers is None
        else [n.strip() for n in args.layers.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        print(f"unknown layer(s) {unknown}; choose from {', '.join(LAYERS)}", file=sys.stderr)
        return 2
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if any(d not in ("float32", "float64") for d in dtypes):
        print(f"--dtype must list float32 and/or float64, got {args.dtype!r}", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print("--repeat must be >= 1", file=sys.stderr)
        return 2
    set_ws, ws = _parse_workspace(args.workspace)
    also_ws = None
    if args.also_workspace is not None:
        set_also, also_ws = _parse_workspace(args.also_workspace)
        if also_ws is None or not set_also:
            print("--also-workspace needs a size in bytes, e.g. 16M", file=sys.stderr)
            return 2
    args.also_workspace_bytes = also_ws

    import numpy as np

    from xpconv._backend import gpu_available

    if args.backend == "cupy" and not gpu_available("cupy"):
        print("--backend cupy needs a GPU that CuPy can use; none found here", file=sys.stderr)
        return 3
    rt = _runtime(args.backend, args.device)
    compare = args.compare or ("torch-cuda" if rt.is_gpu else "torch")
    if compare == "torch-cuda" and not gpu_available("torch"):
        print(
            "--compare torch-cuda needs a GPU that torch can use; none found here", file=sys.stderr
        )
        return 3
    if compare != "none" and _version("torch") is None:
        print("--compare torch needs PyTorch installed", file=sys.stderr)
        return 3

    threads = args.threads or _blas_threads() or os.cpu_count() or 1
    torch_threads = None
    if compare != "none" or args.backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch_threads = torch.get_num_threads()
    with thread_limit(threads):  # as _threads() sets it for the run
        xpconv_threads = thread_count()

    seed = None
    if not args.no_seed and args.backend in ("numpy", "cupy"):
        seed = _load_seed()
    blas, thread_info = _blas_info()
    device = "cpu"
    if rt.is_gpu or compare == "torch-cuda":
        with contextlib.suppress(Exception):
            import torch

            device = torch.cuda.get_device_name(0)
        if device == "cpu" and args.backend == "cupy":
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(0)
            device = (
                props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            )
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    from xpconv._workspace import get_workspace_limit

    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "node": platform.node(),
            "platform": platform.platform(),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
        },
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "cupy": _version("cupy") if rt.name == "cupy" else None,
        "xpconv": _version("xpconv"),
        "blas": blas,
        "threads": {
            "requested": threads,
            "torch": torch_threads,
            "xpconv": xpconv_threads,
            **thread_info,
        },
        "backend": rt.name,
        "compare": compare,
        "device": device,
        "env": env,
        "repeat": args.repeat,
        "settle_s": args.settle,
        "workspace_bytes": ws if set_ws else get_workspace_limit(gpu=rt.is_gpu),
        "also_workspace_bytes": also_ws,
        "seed_baseline": seed is not None,
        "command": "xpconv bench " + " ".join(sys.argv[1:] if argv is None else list(argv)),
    }

    import xpconv._workspace as wsmod

    limit_ctx = wsmod.workspace_limit(ws) if set_ws else contextlib.nullcontext()
    results: list[dict[str, Any]] = []
    print(
        f"xpconv bench: backend={rt.name} compare={compare} device={device} threads={threads} "
        f"repeat={args.repeat} workspace={meta['workspace_bytes']}"
    )
    header = (
        f"{'layer':<10} {'dtype':<8} {'impl':<22} {'fwd ms':>9} {'bwd ms':>9} {'total':>9} "
        f"{'GFLOP/s':>8} {'peak MiB':>9} {'/torch':>7} {'/seed':>7}"
    )
    print(header)
    print("-" * len(header))
    with _threads(threads), limit_ctx:
        for dt in dtypes:
            for name in names:
                layer = LAYERS[name]
                if args.batch is not None:
                    layer = layer.with_batch(args.batch)
                results.extend(_bench_layer(layer, dt, rt, compare, args, seed))
                _print_rows(results, layer, dt)
    out = {"meta": meta, "results": results}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _bench_layer(
    layer: Layer, dt: str, rt: Runtime, compare: str, args: argparse.Namespace, seed: Any
) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(0)
    oh, ow = layer.out_hw
    data = {
        "x": rng.standard_normal((layer.n, layer.c, layer.h, layer.w)).astype(dt),
        "w": (
            rng.standard_normal((layer.o, layer.c // layer.groups, layer.k, layer.k)) * 0.1
        ).astype(dt),
        "b": rng.standard_normal(layer.o).astype(dt),
        "gy": rng.standard_normal((layer.n, layer.o, oh, ow)).astype(dt),
    }
    impls = [_xpconv_impl(layer, data, rt)]
    if args.also_workspace_bytes is not None:
        impls.append(_xpconv_impl(layer, data, rt, args.also_workspace_bytes))
    if compare == "torch":
        impls.append(_torch_impl(layer, data, "cpu", "torch"))
    elif compare == "torch-cuda":
        impls.extend(
            _torch_impl(layer, data, "cuda", name, flags)
            for name, flags in _cuda_variants(args.cudnn_benchmark, args.cudnn_tf32, dt).items()
        )
    if seed is not None:
        impls.append(_seed_impl(layer, data, rt, seed))

    _run_layer(impls, args.repeat, args.settle)

    rows = []
    for impl in impls:
        peak = None if args.no_memory else _peak(impl)
        f, b = statistics.median(impl.times_f), statistics.median(impl.times_b)
        total = statistics.median([x + y for x, y in zip(impl.times_f, impl.times_b, strict=True)])
        rows.append(
            {
                "layer": layer.name,
                "shape": layer.shape,
                "groups": layer.groups,
                "dilation": layer.dilation,
                "padding": layer.padding,
                "dtype": dt,
                "impl": impl.name,
                "forward_ms": round(f, 3),
                "backward_ms": round(b, 3),
                "total_ms": round(total, 3),
                "gflops": round(3 * layer.forward_flops / (total * 1e-3) / 1e9, 2),
                "peak_mem_mib": None if peak is None else round(peak, 2),
                "peak_mem_method": impl.mem_kind if peak is not None else None,
                "array_mib": round(layer.array_bytes(np.dtype(dt).itemsize) / 2**20, 2),
                "forward_all_ms": [round(v, 3) for v in impl.times_f],
                "backward_all_ms": [round(v, 3) for v in impl.times_b],
            }
        )
    gc.collect()
    return rows


def _print_rows(results: list[dict[str, Any]], layer: Layer, dt: str) -> None:
    rows = [r for r in results if r["layer"] == layer.name and r["dtype"] == dt]
    ref = {r["impl"]: r["total_ms"] for r in rows}
    for r in rows:
        vs_torch = r["total_ms"] / ref["torch"] if "torch" in ref else None
        vs_seed = r["total_ms"] / ref["seed"] if "seed" in ref else None
        print(
            f"{layer.name:<10} {dt:<8} {r['impl']:<22} {r['forward_ms']:>9.2f} "
            f"{r['backward_ms']:>9.2f} {r['total_ms']:>9.2f} {r['gflops']:>8.1f} "
            f"{_fmt(r['peak_mem_mib']):>9} "
            f"{_fmt(vs_torch, '.2f'):>7} {_fmt(vs_seed, '.2f'):>7}",
            flush=True,
        )
    for r in rows:
        if not r["impl"].startswith("xpconv-ws") or "xpconv" not in ref:
            continue
        limit_mib = float(r["impl"].removeprefix("xpconv-ws").removesuffix("MiB"))
        bound = 1.1 * (r["array_mib"] + limit_mib)
        peak = r["peak_mem_mib"]
        verdict = "-" if peak is None else ("within" if peak <= bound else "OVER")
        ratio = r["total_ms"] / ref["xpconv"]
        print(
            f"{layer.name:<10} {dt:<8} {r['impl']}: time / xpconv {ratio:.2f}; "
            f"peak {_fmt(peak)} MiB, bound (arrays + limit) * 1.1 = {bound:.1f} MiB: {verdict}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
