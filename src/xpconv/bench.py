"""Benchmark suite: xpconv against PyTorch and the seed formulation, in one run.

Run it as ``xpconv bench [ARGS]``, ``python benchmarks/run.py [ARGS]`` or
``python -m xpconv.bench [ARGS]``; ``--help`` lists the options. Every
implementation is timed on the same data in the same run, in two rounds
(xpconv, PyTorch, the seed formulation, then again), each a block of runs
after a pause (``--settle``) and an untimed warm-up call, so that the ratios
stay meaningful on a shared, noisy machine and one library's spinning worker
threads do not slow down the next. Reported times are medians of at least
``--repeat`` calls.

The layers (:data:`LAYERS`) have one, two or three spatial dimensions:
xpconv runs ``conv1d``/``conv2d``/``conv3d`` and their backward functions
(:func:`xpconv.conv` and :func:`xpconv.conv_backward` for any other rank),
PyTorch ``F.conv1d``/``F.conv2d``/``F.conv3d`` with autograd. The seed
formulation is a 2-D one (square kernels): it is timed on the 2-D layers only.

What is measured, per layer and dtype, in each call of an implementation
(a forward call, a synchronization, a backward call, a synchronization):

* ``forward_ms``: the median over the calls of the forward time,
  ``conv(x, w, b)`` (PyTorch: ``F.convNd``);
* ``backward_ms``: the median of the backward time: the input, weight and
  bias gradients (``conv_backward``; PyTorch: ``torch.autograd.grad``
  through the graph of the forward call just timed; the seed formulation:
  its backward from the columns cached by its forward pass);
* ``total_ms``: the median over the calls of forward + backward *of the same
  call* (one clock span from the start of the forward to the end of the
  backward), the time of a training step's convolution; every ratio uses it.
  Medians do not add: ``forward_ms + backward_ms`` is close to ``total_ms``
  on a quiet machine and can differ by tens of percent on a noisy one (when
  some calls have a slow forward and others a slow backward), which the
  output then points out. ``total_all_ms`` lists the per-call values;
* ``gflops = 3 * forward FLOPs / total`` (the backward pass counted as twice
  the forward's ``2 * N * O * prod(out) * C/groups * prod(kernel)``);
* ``peak_mem_mib``: the largest memory allocated on top of the arrays that
  existed before the call, over one forward and one backward call (each
  measured separately, the larger is kept). NumPy (and array-api-strict and
  Dask, whose chunks are NumPy arrays): :mod:`tracemalloc` (NumPy reports its
  buffers to it). CuPy: a memory-pool hook that follows every allocation and
  free. torch CUDA: ``torch.cuda.max_memory_allocated``. torch CPU: the CPU
  allocator is invisible to tracemalloc, so the rise of the process's peak
  resident set size (``VmHWM`` after ``malloc_trim(0)`` and
  ``/proc/self/clear_refs``) is reported instead, with ``peak_mem_method`` =
  ``"rss_hwm"`` saying so; it is a lower bound (pages that were resident
  already, or allocated and never touched, do not count) and ``null`` where
  ``/proc`` is not available. Results with their outputs kept alive are
  counted (the outputs are part of the peak).

GPU timings synchronize before every clock reading; Dask's are the time to
build and compute the graph.

The JSON written by ``--json`` has the form::

    {"meta": {"date", "machine", "python", "numpy", "torch", "blas", "threads",
              "backend", "compare", "device", "interrupted", ...},
     "results": [{"layer", "shape", "groups", "dilation", "padding", "dtype",
                  "impl", "forward_ms", "backward_ms", "total_ms", "gflops",
                  "peak_mem_mib", "peak_mem_method", "array_mib",
                  "forward_all_ms", "backward_all_ms", "total_all_ms", "rank",
                  "x_shape", "w_shape", "stride"}, ...]}

``shape`` is ``[N, C, *spatial, O, K, stride]``: ``[N, C, H, W, O, K, stride]``
for the 2-D layers as before; a kernel or stride that differs between axes is
written once per axis. ``padding`` and ``dilation`` are an int when the same
on every axis, else a list; ``x_shape`` (N, C, *spatial), ``w_shape`` (O,
C/groups, *kernel) and ``stride`` (one per axis) give the geometry exactly.
``meta.interrupted`` is true when Ctrl-C stopped the run (the results are
those measured before it).

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
import dataclasses
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from xpconv import _registry
from xpconv._blas_kernels import cpuinfo, kernel_notes
from xpconv._threads import thread_count, thread_limit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["LAYERS", "QUICK_LAYERS", "Layer", "main"]


def _same(values: tuple[int, ...]) -> int | list[int]:
    """One int for a value that is the same on every axis, else the list."""
    return values[0] if len(set(values)) == 1 else list(values)


def _spatial(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    return (value,) * rank if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class Layer:
    """A benchmark layer: N samples of C channels over ``size``, O filters of ``kernel``.

    Every spatial argument is a tuple with one entry per spatial axis;
    :meth:`make` takes the input and weight shapes and ints or tuples, like
    ``torch.nn.functional.conv2d``.
    """

    name: str
    n: int
    c: int
    size: tuple[int, ...]
    o: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1

    @classmethod
    def make(
        cls,
        name: str,
        x_shape: Sequence[int],
        w_shape: Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> Layer:
        """The layer that convolves an ``x_shape`` input with an ``w_shape`` weight."""
        n, c, *size = x_shape
        o, cg, *kernel = w_shape
        rank = len(size)
        if len(kernel) != rank or cg * groups != c:
            msg = f"layer {name}: weight {tuple(w_shape)} does not fit input {tuple(x_shape)}"
            raise ValueError(msg)
        return cls(
            name, n, c, tuple(size), o, tuple(kernel), _spatial(stride, rank),
            _spatial(padding, rank), _spatial(dilation, rank), groups,
        )  # fmt: skip

    @property
    def rank(self) -> int:
        """The number of spatial dimensions."""
        return len(self.size)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.n, self.c, *self.size)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.o, self.c // self.groups, *self.kernel)

    @property
    def out_size(self) -> tuple[int, ...]:
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(
                self.size, self.kernel, self.stride, self.padding, self.dilation, strict=True
            )
        )

    @property
    def y_shape(self) -> tuple[int, ...]:
        return (self.n, self.o, *self.out_size)

    @property
    def shape(self) -> list[int]:
        """``[N, C, *spatial, O, K, stride]``, K and stride once when the same on every axis."""

        def flat(values: tuple[int, ...]) -> list[int]:
            same = _same(values)
            return [same] if isinstance(same, int) else same

        return [self.n, self.c, *self.size, self.o, *flat(self.kernel), *flat(self.stride)]

    @property
    def forward_flops(self) -> int:
        return (
            2 * self.n * self.o * math.prod(self.out_size)
            * (self.c // self.groups) * math.prod(self.kernel)
        )  # fmt: skip

    @property
    def conv_kwargs(self) -> dict[str, Any]:
        """stride, padding, dilation and groups, as keywords of conv and F.convNd."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    @property
    def seed_kwargs(self) -> dict[str, int] | None:
        """The seed formulation's int arguments, or None where it does not apply (not 2-D,
        or a kernel, stride, padding or dilation that differs between the axes)."""
        axes = (self.kernel, self.stride, self.padding, self.dilation)
        if self.rank != 2 or any(len(set(values)) != 1 for values in axes):
            return None
        return {
            "stride": self.stride[0],
            "padding": self.padding[0],
            "dilation": self.dilation[0],
            "groups": self.groups,
        }

    def array_bytes(self, itemsize: int) -> int:
        """Bytes of x, weight, bias, grad_output, the output and the three gradients."""
        x, w, y = (math.prod(s) for s in (self.x_shape, self.w_shape, self.y_shape))
        return 2 * (x + w + self.o + y) * itemsize

    def with_batch(self, n: int) -> Layer:
        return dataclasses.replace(self, n=n)

    def describe(self) -> dict[str, Any]:
        """The JSON fields that say what the layer is."""
        return {
            "layer": self.name,
            "shape": self.shape,
            "groups": self.groups,
            "dilation": _same(self.dilation),
            "padding": _same(self.padding),
            "rank": self.rank,
            "x_shape": list(self.x_shape),
            "w_shape": list(self.w_shape),
            "stride": list(self.stride),
        }


# The standard layers of the performance issues; padding K//2 as in real networks
# (the 7x7 stride-2 layer is the ResNet stem, video3d-stem the 3-D ResNet's).
LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer.make("mnist", (64, 1, 28, 28), (32, 1, 3, 3), padding=1),
        Layer.make("conv64", (32, 64, 32, 32), (64, 64, 3, 3), padding=1),
        Layer.make("conv128", (16, 128, 28, 28), (128, 128, 3, 3), padding=1),
        Layer.make("stem7x7", (8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3),
        Layer.make("pointwise", (32, 256, 14, 14), (64, 256, 1, 1)),
        Layer.make("depthwise", (32, 128, 28, 28), (128, 1, 3, 3), padding=1, groups=128),
        Layer.make("dilated", (16, 64, 32, 32), (64, 64, 3, 3), padding=2, dilation=2),
        Layer.make("audio1d", (16, 64, 4096), (64, 64, 9), padding=4),
        Layer.make("wave1d-stem", (8, 1, 16000), (64, 1, 80), stride=4),
        Layer.make("vol3d", (2, 32, 16, 32, 32), (32, 32, 3, 3, 3), padding=1),
        Layer.make(
            "video3d-stem", (2, 3, 16, 112, 112), (64, 3, 3, 7, 7),
            stride=(1, 2, 2), padding=(1, 3, 3),
        ),
    )
}  # fmt: skip
STANDARD = ("mnist", "conv64", "conv128", "stem7x7", "pointwise")
QUICK_LAYERS = ("mnist", "conv64", "pointwise")
#: ``--layers`` also takes these names of groups: every layer of one spatial rank.
LAYER_GROUPS = {f"{r}d": tuple(n for n, la in LAYERS.items() if la.rank == r) for r in (1, 2, 3)}

BACKENDS = _registry.cli_names()
COMPARES = ("torch", "torch-cuda", "none")
# Seconds of pause before each implementation's block of timed runs (see _run_layer).
SETTLE_S = 0.5
# forward_ms + backward_ms further than this from total_ms (relative) is pointed out.
NOISE_NOTE = 0.1


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
    return cpuinfo("model name") or platform.processor() or platform.machine()


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


def _arrays(out: Any) -> list[Any]:
    """The arrays in a (nested) result."""
    if isinstance(out, tuple | list):
        return [a for item in out for a in _arrays(item)]
    return [] if out is None else [out]


def _wait(out: Any) -> None:
    """Wait until every array of a result is computed: GPU queues drained, Dask graphs run."""
    from array_api_compat import is_dask_array

    from xpconv._backend import synchronize

    arrays = _arrays(out)
    lazy = [a for a in arrays if is_dask_array(a)]
    if lazy:
        import dask

        dask.compute(*lazy)
    for a in arrays:
        if not is_dask_array(a):
            synchronize(a)


def _runtime(backend: str, device: str | None) -> Runtime:
    """The backend's namespace and device from the registry; BackendError if unusable."""
    if backend == "jax" and importlib.util.find_spec("jax") is not None:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 layers
    xp, dev = _registry.load(backend, device)
    spec = _registry.get(backend)
    is_gpu = spec.device == "gpu" or getattr(dev, "type", None) == "cuda"

    def to_backend(a: Any) -> Any:
        return xp.asarray(a, device=dev)

    return Runtime(backend, xp, "cuda" if is_gpu else "cpu", to_backend, _wait, is_gpu)


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
            sync(out)  # a Dask graph runs here
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
            sync(out)
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
        sync(out)
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


def _conv_functions(rank: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """xpconv's forward and backward for a spatial rank: conv2d and conv2d_backward, ..."""
    import xpconv

    if rank in (1, 2, 3):
        return getattr(xpconv, f"conv{rank}d"), getattr(xpconv, f"conv{rank}d_backward")
    return xpconv.conv, xpconv.conv_backward


def _mem_kind(rt: Runtime) -> str | None:
    if rt.name == "cupy":
        return "cupy_pool"
    if rt.name in ("numpy", "array_api_strict", "dask"):  # NumPy buffers underneath
        return "tracemalloc"
    if rt.name == "torch":
        return "torch_cuda" if rt.is_gpu else "rss_hwm"
    return None


def _xpconv_impl(layer: Layer, data: dict[str, Any], rt: Runtime, limit: int | None = None) -> Impl:
    """xpconv under the workspace limit in force, or under ``limit`` bytes if given."""
    import xpconv

    x, w, b, gy = (rt.to_backend(data[k]) for k in ("x", "w", "b", "gy"))
    kw = layer.conv_kwargs
    conv, conv_backward = _conv_functions(layer.rank)
    mem = _mem_kind(rt)
    if limit is None:
        return Impl(
            "xpconv",
            lambda: conv(x, w, b, **kw),
            lambda _y: conv_backward(gy, x, w, **kw),
            rt.sync,
            mem,
        )

    def fwd() -> Any:
        with xpconv.workspace_limit(limit):
            return conv(x, w, b, **kw)

    def bwd(_y: Any) -> Any:
        with xpconv.workspace_limit(limit):
            return conv_backward(gy, x, w, **kw)

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


def _torch_conv(rank: int) -> Callable[..., Any] | None:
    """``torch.nn.functional.conv1d/2d/3d`` for the rank, or None (PyTorch has no other)."""
    import torch.nn.functional as F

    return getattr(F, f"conv{rank}d", None)


def _torch_impl(
    layer: Layer, data: dict[str, Any], device: str, name: str, flags: dict[str, bool] | None = None
) -> Impl:
    import torch

    conv = _torch_conv(layer.rank)
    assert conv is not None

    def t(a: Any, grad: bool) -> Any:
        return torch.from_numpy(a).to(device).requires_grad_(grad)

    x, w, b = t(data["x"], True), t(data["w"], True), t(data["b"], True)
    gy = t(data["gy"], False)
    kw = layer.conv_kwargs

    def fwd() -> Any:
        with _cudnn_flags(flags):
            return conv(x, w, b, **kw)

    def bwd(y: Any) -> Any:
        with _cudnn_flags(flags):
            return torch.autograd.grad(y, (x, w, b), gy)

    return Impl(name, fwd, bwd, _wait, "torch_cuda" if device != "cpu" else "rss_hwm")


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
    kw = layer.seed_kwargs
    assert kw is not None
    return Impl(
        "seed",
        lambda: seed.forward(x, w, b, **kw),
        lambda out: seed.backward(gy, out[1]),
        rt.sync,
        "cupy_pool" if rt.name == "cupy" else "tracemalloc",
    )


def _call(impl: Impl) -> tuple[float, float]:
    """One forward and backward pass; returns their times in ms.

    Their sum is one clock span, from the start of the forward to the end of
    the backward (the synchronization between them included).
    """
    start = time.perf_counter()
    y = impl.forward()
    impl.sync(y)
    mid = time.perf_counter()
    g = impl.backward(y)
    impl.sync(g)
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

USAGE_ERROR = 2
ENVIRONMENT_ERROR = 3  # a backend, GPU or PyTorch that this machine lacks
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

SEED_NOTE = (
    "the seed formulation (benchmarks/seed_formulation.py in xpconv's source: the seed "
    "layer's im2col by fancy indexing and col2im by np.add.at), timed on the 2-D layers "
    "with the numpy and cupy backends"
)
EPILOG = textwrap.fill(
    "columns: fwd ms and bwd ms are the medians of the forward and of the backward times "
    "over the calls; fwd+bwd is the median over the calls of forward + backward in the same "
    "call (one clock span), the time of a training step's convolution: GFLOP/s (3 x the "
    "forward's FLOPs / fwd+bwd) and the ratios use it. Medians do not add up exactly; where "
    f"fwd + bwd differs from fwd+bwd by more than {NOISE_NOTE:.0%}, a note says that the "
    "calls varied. peak MiB: memory allocated on top of the inputs during one call. /torch: "
    "fwd+bwd over PyTorch's (F.conv1d/2d/3d + autograd). /seed: fwd+bwd over "
    f"{SEED_NOTE}; found when xpconv runs from a source checkout, or from the working "
    "folder of one (--no-seed skips it).",
    width=78,
)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message, as ``xpconv demo`` prints them."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _error(message: str, status: int = USAGE_ERROR) -> int:
    print(f"xpconv bench: error: {message}", file=sys.stderr)
    return status


def _size(text: str) -> int:
    """A positive number of bytes: ``65536``, ``16M``, ``1.5GiB``, ``512k``."""
    suffixes = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    v = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = suffixes.get(v[-1:], 1)
    number = v[:-1] if v[-1:] in suffixes else v
    try:
        value = float(number) * scale
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        msg = f"must be a positive size in bytes such as 65536, 512K, 16M or 1.5G; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _workspace(text: str) -> int | None:
    """``_size``, or None (unlimited) for 'none'/'unlimited'."""
    if text.strip().lower() in ("none", "unlimited"):
        return None
    try:
        return _size(text)
    except argparse.ArgumentTypeError:
        msg = (
            f"must be a positive size in bytes such as 65536, 512K, 16M or 1.5G, "
            f"or 'none' (unlimited); got {text!r}"
        )
        raise argparse.ArgumentTypeError(msg) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"must be a positive integer (or 0: BLAS's own count), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        msg = f"must be a number of seconds >= 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="xpconv bench",
        description=(
            "Time xpconv's forward and backward convolutions (1-D, 2-D and 3-D layers) "
            "against PyTorch and the seed formulation."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="numpy",
        help="array library xpconv runs on (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="with --backend torch: 'cpu' (the default), 'cuda' or 'cuda:N'",
    )
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
    p.add_argument(
        "--no-seed",
        action="store_true",
        help="skip the seed-formulation baseline (the /seed column)",
    )
    p.add_argument(
        "--dtype", default="float32,float64", help="comma-separated dtypes (float32, float64)"
    )
    groups = ", ".join(f"{g} ({', '.join(n)})" for g, n in LAYER_GROUPS.items())
    p.add_argument(
        "--layers",
        default=None,
        help=(
            f"comma-separated layers, or groups of them: {groups} "
            f"(default: all; --quick: {', '.join(QUICK_LAYERS)})"
        ),
    )
    p.add_argument(
        "--repeat",
        type=_positive_int,
        default=None,
        help="timed calls per measurement, median kept (default 5; --quick: 3)",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        help="override every layer's batch size (e.g. 256 on a GPU)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a fast subset: {', '.join(QUICK_LAYERS)}, float32, 3 runs",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the results to this JSON file (checked for writing before the run)",
    )
    p.add_argument(
        "--workspace",
        type=_workspace,
        default=argparse.SUPPRESS,
        help="xpconv workspace limit in bytes, e.g. 16M ('none' for unlimited; "
        "default: xpconv's default)",
    )
    p.add_argument(
        "--also-workspace",
        type=_size,
        default=None,
        help="also time xpconv under this workspace limit (e.g. 16M), in the same rounds as "
        "the run under --workspace, and print its time ratio and its peak memory against the "
        "bound inputs + outputs + gradients + limit (+10%%)",
    )
    p.add_argument(
        "--settle",
        type=_seconds,
        default=SETTLE_S,
        help=f"seconds of pause before each implementation's block of timed runs, so that "
        f"the previous library's worker threads stop spinning (default {SETTLE_S})",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        help="BLAS, torch and xpconv threads (default or 0: BLAS's own count)",
    )
    return p


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


def _layer_names(text: str | None) -> list[str]:
    """The layers ``--layers`` selects, in order, each once; ValueError for a bad list."""
    if text is None:
        return list(LAYERS)
    names: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item not in LAYERS and item not in LAYER_GROUPS:
            msg = (
                f"--layers: unknown layer {item!r}; choose from {', '.join(LAYERS)} "
                f"or a group: {', '.join(LAYER_GROUPS)}"
            )
            raise ValueError(msg)
        names += [n for n in LAYER_GROUPS.get(item, (item,)) if n not in names]
    if not names:
        msg = f"--layers {text!r} selects no layer; choose from {', '.join(LAYERS)}"
        raise ValueError(msg)
    return names


def _check_writable(path: Path) -> str | None:
    """Why ``path`` cannot be written (None when it can), found before the run starts."""
    if path.is_dir():
        return f"--json {str(path)!r} is a folder, not a file"
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"--json {str(path)!r} cannot be written: {exc.strerror or exc}"
    if not existed:
        path.unlink()
    return None


def _write_json(path: Path, out: dict[str, Any]) -> str | None:
    """Write the results; if that fails, into a temporary file instead (never lose a run).

    Returns an error line, or None when ``path`` was written.
    """
    text = json.dumps(out, indent=1) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fd, spare = tempfile.mkstemp(prefix="xpconv-bench-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return f"cannot write {str(path)!r} ({exc.strerror or exc}); the results are in {spare}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns a process exit status (130 after Ctrl-C)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the measurements started (they handle their own)
        print("xpconv bench: interrupted", file=sys.stderr)
        return INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    """The run as a sequence of steps; a step that cannot go on gives the exit status."""
    parsed = _parse_args(argv)
    if isinstance(parsed, int):
        return parsed
    args, cases = parsed
    rt = _load_runtime(args.backend, args.device)
    if isinstance(rt, int):
        return rt
    compare = _choose_compare(args.compare, rt)
    if isinstance(compare, int):
        return compare
    threads = _set_thread_counts(args.threads, compare, args.backend)
    seed_wanted = not args.no_seed and args.backend in ("numpy", "cupy")
    seed = _load_seed() if seed_wanted else None
    meta = _meta(args, argv, rt, compare, threads, seed is not None)
    _print_header(meta, seed_wanted, seed is not None)
    return _run_cases(cases, args, rt, compare, seed, meta, threads.requested)


def _parse_args(
    argv: Sequence[str] | None,
) -> tuple[argparse.Namespace, list[tuple[str, str]]] | int:
    """The options and the (dtype, layer) cases they select, or a usage-error status.

    Everything that can be checked without loading a backend is, ``--json`` included,
    so that a typo never costs a run.
    """
    args = _parser().parse_args(None if argv is None else list(argv))
    _fill_defaults(args)
    try:
        names = _layer_names(args.layers)
    except ValueError as exc:
        return _error(str(exc))
    dtypes = list(dict.fromkeys(d.strip() for d in args.dtype.split(",") if d.strip()))
    if not dtypes or any(d not in ("float32", "float64") for d in dtypes):
        return _error(f"--dtype must list float32 and/or float64, got {args.dtype!r}")
    if args.json is not None:
        problem = _check_writable(args.json)
        if problem:
            return _error(problem)
    if args.device is not None and not _registry.get(args.backend).device_option:
        return _error(
            f"--device is only supported with --backend torch, not with --backend {args.backend}"
        )
    return args, [(dt, name) for dt in dtypes for name in names]


def _fill_defaults(args: argparse.Namespace) -> None:
    """The defaults that depend on ``--quick`` (argparse cannot express them)."""
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.quick:
        if args.layers is None:
            args.layers = ",".join(QUICK_LAYERS)
        if args.dtype == "float32,float64":
            args.dtype = "float32"


def _load_runtime(backend: str, device: str | None) -> Runtime | int:
    """The backend's :class:`Runtime`, or an environment-error status when it is unusable."""
    # NumPy is loaded before any backend, as the run always has (meta reports its version).
    import numpy  # noqa: F401

    try:
        return _runtime(backend, device)
    except _registry.BackendError as exc:
        return _error(str(exc), ENVIRONMENT_ERROR)


def _choose_compare(requested: str | None, rt: Runtime) -> str | int:
    """The PyTorch reference to time (default: on the backend's device), or an
    environment-error status when PyTorch, or the GPU it needs, is missing."""
    from xpconv._backend import gpu_available

    compare = requested or ("torch-cuda" if rt.is_gpu else "torch")
    if compare != "none" and _version("torch") is None:
        return _error(
            f"--compare {compare} needs PyTorch, which is not installed (pip install torch); "
            "pass --compare none to time xpconv alone",
            ENVIRONMENT_ERROR,
        )
    if compare == "torch-cuda" and not gpu_available("torch"):
        return _error(
            "--compare torch-cuda needs a GPU that torch can use, and none was found here; "
            "pass --compare torch (PyTorch on the CPU) or --compare none",
            ENVIRONMENT_ERROR,
        )
    return compare


@dataclass(frozen=True)
class _ThreadCounts:
    """The thread count asked for, and what torch and xpconv report they will use."""

    requested: int
    torch: int | None
    xpconv: int


def _set_thread_counts(wanted: int | None, compare: str, backend: str) -> _ThreadCounts:
    """Give torch its thread count for the whole run (BLAS and xpconv get theirs per run,
    from ``_threads``) and read back each library's count for the meta record."""
    threads = wanted or _blas_threads() or os.cpu_count() or 1
    torch_threads = None
    if compare != "none" or backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch_threads = torch.get_num_threads()
    with thread_limit(threads):  # as _threads() sets it for the run
        xpconv_threads = thread_count()
    return _ThreadCounts(threads, torch_threads, xpconv_threads)


def _device_name(rt: Runtime, compare: str, backend: str) -> str:
    """The GPU's name when anything runs on one (torch's view first, then CuPy's), else "cpu"."""
    device = "cpu"
    if rt.is_gpu or compare == "torch-cuda":
        with contextlib.suppress(Exception):
            import torch

            device = torch.cuda.get_device_name(0)
        if device == "cpu" and backend == "cupy":
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(0)
            device = (
                props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            )
    return device


def _meta(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    rt: Runtime,
    compare: str,
    threads: _ThreadCounts,
    seed_found: bool,
) -> dict[str, Any]:
    """The JSON's ``meta`` record: the machine, the libraries and the run's settings."""
    blas, thread_info = _blas_info()  # before _device_name, which may load torch's libraries
    notes = kernel_notes()
    if notes:
        blas = {**blas, "kernel_notes": notes}
    device = _device_name(rt, compare, args.backend)
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    return {
        **_machine_meta(rt),
        "blas": blas,
        "threads": {
            "requested": threads.requested,
            "torch": threads.torch,
            "xpconv": threads.xpconv,
            **thread_info,
        },
        "backend": rt.name,
        "compare": compare,
        "device": device,
        "env": env,
        **_settings_meta(args, argv, rt, seed_found),
    }


def _machine_meta(rt: Runtime) -> dict[str, Any]:
    """When and where the run was made, and the versions of the libraries it used."""
    import numpy as np

    return {
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
    }


def _settings_meta(
    args: argparse.Namespace, argv: Sequence[str] | None, rt: Runtime, seed_found: bool
) -> dict[str, Any]:
    """The run's settings, with the workspace limit in effect and the command that ran."""
    from xpconv._workspace import get_workspace_limit

    return {
        "repeat": args.repeat,
        "settle_s": args.settle,
        "workspace_bytes": (
            args.workspace if hasattr(args, "workspace") else get_workspace_limit(gpu=rt.is_gpu)
        ),
        "also_workspace_bytes": args.also_workspace,
        "seed_baseline": seed_found,
        "total_ms": "median over the calls of forward + backward in the same call",
        "interrupted": False,
        "command": "xpconv bench " + " ".join(sys.argv[1:] if argv is None else list(argv)),
    }


def _print_header(meta: dict[str, Any], seed_wanted: bool, seed_found: bool) -> None:
    """The run's settings, the legend and the table's column titles."""
    print(
        f"xpconv bench: backend={meta['backend']} compare={meta['compare']} "
        f"device={meta['device']} threads={meta['threads']['requested']} "
        f"repeat={meta['repeat']} workspace={meta['workspace_bytes']}"
    )
    _print_legend(meta["compare"], seed_wanted, seed_found)
    for note in meta["blas"].get("kernel_notes", []):
        print(f"note: {note}")
    header = (
        f"{'layer':<13} {'dtype':<8} {'impl':<22} {'fwd ms':>9} {'bwd ms':>9} {'fwd+bwd':>9} "
        f"{'GFLOP/s':>8} {'peak MiB':>9} {'/torch':>7} {'/seed':>7}"
    )
    print(header)
    print("-" * len(header))


def _workspace_context(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """xpconv's workspace limit from ``--workspace`` for the run; no change without it."""
    import xpconv._workspace as wsmod

    if hasattr(args, "workspace"):
        return wsmod.workspace_limit(args.workspace)
    return contextlib.nullcontext()


def _run_cases(
    cases: list[tuple[str, str]],
    args: argparse.Namespace,
    rt: Runtime,
    compare: str,
    seed: Any | None,
    meta: dict[str, Any],
    threads: int,
) -> int:
    """Time each (dtype, layer) case and write the JSON; Ctrl-C keeps what was measured."""
    results: list[dict[str, Any]] = []
    done = 0
    try:
        with _threads(threads), _workspace_context(args):
            for dt, name in cases:
                layer = LAYERS[name]
                if args.batch is not None:
                    layer = layer.with_batch(args.batch)
                rows = _bench_layer(layer, dt, rt, compare, args, seed)
                results.extend(rows)
                _print_rows(rows, layer, dt)
                done += 1
    except KeyboardInterrupt:
        meta["interrupted"] = True
        _report_interrupt(
            args.json, meta, results, f"after {done} of {len(cases)} layer/dtype cases"
        )
        return INTERRUPTED
    if args.json is not None:
        problem = _write_json(args.json, {"meta": meta, "results": results})
        if problem:
            return _error(problem, 1)
        print(f"wrote {args.json}")
    return 0


def _report_interrupt(
    path: Path | None, meta: dict[str, Any], results: list[dict[str, Any]], where: str
) -> None:
    """Say where Ctrl-C stopped the run, saving the rows measured so far to ``--json``."""
    if path is None:
        print(f"xpconv bench: interrupted {where}", file=sys.stderr)
        return
    problem = _write_json(path, {"meta": meta, "results": results})
    saved = problem or f"wrote the {len(results)} rows measured so far to {path}"
    print(f"xpconv bench: interrupted {where}; {saved}", file=sys.stderr)


def _print_legend(compare: str, seed_wanted: bool, seed_found: bool) -> None:
    """What the columns are, in a few lines (the details: ``xpconv bench --help``)."""
    print(
        "fwd ms, bwd ms: medians over the calls; fwd+bwd: median of forward + backward in "
        "the same call (GFLOP/s and the ratios use it)"
    )
    if compare != "none":
        print("/torch: fwd+bwd over PyTorch's (F.conv1d/2d/3d + autograd)")
    if seed_found:
        print(f"/seed: fwd+bwd over {SEED_NOTE}")
    elif seed_wanted:
        print(
            "/seed: empty: benchmarks/seed_formulation.py (the seed layer's formulation) "
            "is not in this installation; run from xpconv's source checkout, or pass --no-seed"
        )


def _bench_layer(
    layer: Layer, dt: str, rt: Runtime, compare: str, args: argparse.Namespace, seed: Any
) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(0)
    data = {
        "x": rng.standard_normal(layer.x_shape).astype(dt),
        "w": (rng.standard_normal(layer.w_shape) * 0.1).astype(dt),
        "b": rng.standard_normal(layer.o).astype(dt),
        "gy": rng.standard_normal(layer.y_shape).astype(dt),
    }
    impls = [_xpconv_impl(layer, data, rt)]
    if args.also_workspace is not None:
        impls.append(_xpconv_impl(layer, data, rt, args.also_workspace))
    if compare != "none" and _torch_conv(layer.rank) is None:
        pass  # PyTorch has no convolution of this rank: no reference row
    elif compare == "torch":
        impls.append(_torch_impl(layer, data, "cpu", "torch"))
    elif compare == "torch-cuda":
        impls.extend(
            _torch_impl(layer, data, "cuda", name, flags)
            for name, flags in _cuda_variants(args.cudnn_benchmark, args.cudnn_tf32, dt).items()
        )
    if seed is not None and layer.seed_kwargs is not None:
        impls.append(_seed_impl(layer, data, rt, seed))

    _run_layer(impls, args.repeat, args.settle)

    rows = []
    for impl in impls:
        peak = None if args.no_memory else _peak(impl)
        rows.append(_row(layer, dt, impl, peak))
    gc.collect()
    return rows


def _row(layer: Layer, dt: str, impl: Impl, peak: float | None) -> dict[str, Any]:
    """One result: the medians, the per-call times and the layer (see the module docs)."""
    import numpy as np

    totals = [f + b for f, b in zip(impl.times_f, impl.times_b, strict=True)]
    total = statistics.median(totals)
    described = layer.describe()
    new_fields = {k: described.pop(k) for k in ("rank", "x_shape", "w_shape", "stride")}
    return {
        **described,  # layer, shape, groups, dilation, padding
        "dtype": dt,
        "impl": impl.name,
        "forward_ms": round(statistics.median(impl.times_f), 3),
        "backward_ms": round(statistics.median(impl.times_b), 3),
        "total_ms": round(total, 3),
        "gflops": round(3 * layer.forward_flops / (total * 1e-3) / 1e9, 2),
        "peak_mem_mib": None if peak is None else round(peak, 2),
        "peak_mem_method": impl.mem_kind if peak is not None else None,
        "array_mib": round(layer.array_bytes(np.dtype(dt).itemsize) / 2**20, 2),
        "forward_all_ms": [round(v, 3) for v in impl.times_f],
        "backward_all_ms": [round(v, 3) for v in impl.times_b],
        "total_all_ms": [round(v, 3) for v in totals],
        **new_fields,
    }


def _noise_note(r: dict[str, Any]) -> str | None:
    """A line when the medians of fwd and bwd do not add up to the median fwd+bwd."""
    parts = r["forward_ms"] + r["backward_ms"]
    total = r["total_ms"]
    if total <= 0 or abs(parts - total) <= NOISE_NOTE * total:
        return None
    spread = r.get("total_all_ms") or [total]
    return (
        f"note: {r['layer']} {r['dtype']} {r['impl']}: fwd {r['forward_ms']:.2f} + bwd "
        f"{r['backward_ms']:.2f} = {parts:.2f} ms, but the median fwd+bwd of one call is "
        f"{total:.2f} ms: the calls varied (fwd+bwd from {min(spread):.2f} to "
        f"{max(spread):.2f} ms); rerun with a larger --repeat on a quieter machine"
    )


def _print_rows(rows: list[dict[str, Any]], layer: Layer, dt: str) -> None:
    ref = {r["impl"]: r["total_ms"] for r in rows}
    for r in rows:
        vs_torch = r["total_ms"] / ref["torch"] if "torch" in ref else None
        vs_seed = r["total_ms"] / ref["seed"] if "seed" in ref else None
        print(
            f"{layer.name:<13} {dt:<8} {r['impl']:<22} {r['forward_ms']:>9.2f} "
            f"{r['backward_ms']:>9.2f} {r['total_ms']:>9.2f} {r['gflops']:>8.1f} "
            f"{_fmt(r['peak_mem_mib']):>9} "
            f"{_fmt(vs_torch, '.2f'):>7} {_fmt(vs_seed, '.2f'):>7}",
            flush=True,
        )
    for r in rows:
        note = _noise_note(r)
        if note:
            print(note, flush=True)
    for r in rows:
        if not r["impl"].startswith("xpconv-ws") or "xpconv" not in ref:
            continue
        limit_mib = float(r["impl"].removeprefix("xpconv-ws").removesuffix("MiB"))
        bound = 1.1 * (r["array_mib"] + limit_mib)
        peak = r["peak_mem_mib"]
        verdict = "-" if peak is None else ("within" if peak <= bound else "OVER")
        ratio = r["total_ms"] / ref["xpconv"]
        print(
            f"{layer.name:<13} {dt:<8} {r['impl']}: time / xpconv {ratio:.2f}; "
            f"peak {_fmt(peak)} MiB, bound (arrays + limit) * 1.1 = {bound:.1f} MiB: {verdict}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
