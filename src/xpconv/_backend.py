"""The only module that knows which array library it is talking to.

Everything else in xpconv receives a namespace ``xp`` and uses the array API
standard. What cannot be written that way lives here:

* :func:`namespace_of` and :func:`device_of`, with error messages that name
  the offending argument, and :func:`capabilities`, what the library of a
  call can do (asked once per call, by :mod:`xpconv._engine`);
* :func:`add_into`, the in-place (or, on JAX, functional) ``out[key] += v``
  that col2im accumulates with;
* :func:`set_into`, ``out[key] = values`` with the same rules;
* fast paths chosen by measurement (``tests/test_fast_paths.py`` checks each
  one against the generic array-API code it replaces):
  :func:`window_copy` (im2col as one strided copy on NumPy/CuPy),
  :func:`padded_rows` (zero padding written into a reused buffer),
  :func:`matmul_into` (a matrix product written into a reused buffer) and
  :func:`contiguous`;
* :func:`scatter_add`, an index-based scatter-add that accumulates duplicate
  indices (``np.add.at``, ``cupy.add.at``, ``torch.index_add_``,
  ``jax .at[].add`` and a portable one-hot fallback);
* random numbers for parameter initialisation (a NumPy ``Generator``, so that
  a seed gives the same weights on every backend);
* small utilities for benchmarks and the CLI (``synchronize``, ``gpu_available``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import array_api_compat as compat
import array_api_extra as xpx

from xpconv._threads import thread_count

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "Capabilities",
    "Scratch",
    "add_into",
    "all_finite",
    "capabilities",
    "contiguous",
    "default_float_dtype",
    "device_of",
    "fft_in_double",
    "fft_module",
    "gpu_available",
    "host_workers",
    "is_mutable",
    "itemsize",
    "materialize",
    "matmul_into",
    "memory_bytes",
    "namespace_of",
    "native_byte_order",
    "on_gpu",
    "padded_rows",
    "quiet_float_errors",
    "random_normal",
    "random_uniform",
    "resolve_dtype",
    "resolve_namespace",
    "scatter_add",
    "set_into",
    "synchronize",
    "to_numpy",
    "values_readable",
    "window_copy",
    "workspace_buffer",
]

Array = Any
Namespace = Any


_LIBRARY_OF_TYPE: dict[type, str] = {}


def _library(x: Array) -> str:
    """'numpy', 'cupy', 'torch', 'jax', 'dask' or 'other', remembered per array type.

    The array-api-compat checks are isinstance tests against each library in
    turn; every call into xpconv asks them many times, so the answer is kept
    for each type.
    """
    kind = _LIBRARY_OF_TYPE.get(type(x))
    if kind is None:
        checks = (
            ("numpy", compat.is_numpy_array),
            ("cupy", compat.is_cupy_array),
            ("torch", compat.is_torch_array),
            ("jax", compat.is_jax_array),
            ("dask", compat.is_dask_array),
        )
        kind = next((name for name, check in checks if check(x)), "other")
        _LIBRARY_OF_TYPE[type(x)] = kind
    return kind


def _is(library: str, x: Array) -> bool:
    kind = _LIBRARY_OF_TYPE.get(type(x))  # inlined: this runs dozens of times a call
    return (kind or _library(x)) == library


@dataclass(frozen=True)
class Capabilities:
    """What the array library of one call can do, asked once per call.

    ``in_place``: slices are views that ``out[key] += v`` writes through
    (NumPy, CuPy, torch). ``scratch``: flat buffers that are reused, the
    strided window copy and products written into a buffer (NumPy, CuPy).
    ``gpu``: the arrays live in GPU memory. ``host_threads``: xpconv's own
    loops may run on several host threads (NumPy only, :mod:`xpconv._threads`).
    """

    in_place: bool
    scratch: bool
    gpu: bool
    host_threads: bool

    @property
    def threads(self) -> int:
        """Threads for xpconv's own loops: asked when a kernel has such loops."""
        return thread_count() if self.host_threads else 1


def capabilities(x: Array) -> Capabilities:
    """The :class:`Capabilities` of ``x``'s library and device."""
    kind = _library(x)
    native = kind in ("numpy", "cupy")
    return Capabilities(
        in_place=native or kind == "torch",
        scratch=native,
        gpu=kind == "cupy" or on_gpu(x),
        host_threads=kind == "numpy",
    )


@functools.lru_cache(maxsize=64)
def itemsize(dtype: Any, xp: Namespace) -> int:
    """Bytes per element of a floating (real or complex) dtype (asked several times a call)."""
    if xp.isdtype(dtype, "complex floating"):
        return 2 * (xp.finfo(dtype).bits // 8)
    return xp.finfo(dtype).bits // 8


def namespace_of(**arrays: Array | None) -> Namespace:
    """Return the array API namespace shared by the named arrays.

    ``None`` values are skipped. Raises ``TypeError`` naming the arguments when
    they come from different array libraries or are not arrays at all.
    """
    present = {name: a for name, a in arrays.items() if a is not None}
    spaces = {}
    for name, a in present.items():
        try:
            spaces[name] = compat.array_namespace(a)
        except TypeError:
            msg = f"{name} must be an array of an array API library, got {type(a).__name__}"
            raise TypeError(msg) from None
        _check_dense(name, a)
    unique = {id(xp): xp for xp in spaces.values()}
    if len(unique) > 1:
        described = ", ".join(
            f"{n}: {type(present[n]).__module__}.{type(present[n]).__name__}" for n in spaces
        )
        msg = f"arrays must all come from one array library, got {described}"
        raise TypeError(msg)
    return next(iter(unique.values()))


def _check_dense(name: str, a: Array) -> None:
    """Sparse tensors have no strided memory for slices and products to work on."""
    if _is("torch", a):
        import torch

        if a.layout != torch.strided:
            msg = f"{name} must be a dense (strided) tensor, got layout {a.layout}; use .to_dense()"
            raise TypeError(msg)


def native_correlate1d(x: Array, w: Array) -> Array | None:
    """The full 1-D correlation ``sum_n x[n + k] * w[n]`` by the library's own loop, or None.

    NumPy's ``correlate`` (what ``scipy.signal`` takes for 1-D direct
    convolutions) outruns any formulation of array operations on one short
    signal; other libraries get None and take xpconv's engine.
    """
    if not (_is("numpy", x) and _is("numpy", w)):
        return None
    np = _numpy()
    return np.correlate(x, np.conj(w), mode="full")  # numpy conjugates its second argument


def native_byte_order(a: Array) -> Array:
    """``a`` itself, or a NumPy array in the other byte order copied to the native one."""
    if _is("numpy", a) and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def device_of(**arrays: Array | None) -> Any:
    """Return the device shared by the named arrays; ``ValueError`` if they differ.

    A device of ``None`` (a JAX tracer inside ``jax.jit``/``vmap``) matches any
    device: the tracer's placement is decided by JAX, not by the caller.
    """
    devices = {name: compat.device(a) for name, a in arrays.items() if a is not None}
    known = {name: dev for name, dev in devices.items() if dev is not None}
    if not known:
        return None
    first_name, first = next(iter(known.items()))
    for name, dev in known.items():
        if dev != first:
            msg = (
                f"arrays must be on one device, got {first_name} on {first!r} and {name} on {dev!r}"
            )
            raise ValueError(msg)
    return first


def default_float_dtype(xp: Namespace, device: Any = None) -> Any:
    """The namespace's default real floating dtype (float64 for NumPy, float32 for torch/JAX)."""
    return xpx.default_dtype(xp, "real floating", device=device)


def _is_mutable(x: Array) -> bool:
    # Native in-place views: NumPy, CuPy and PyTorch. array-api-strict and Dask
    # go through array-api-extra's `at`, JAX gets a functional update.
    kind = _library(x)
    if kind == "numpy":
        return bool(x.flags.writeable)
    return kind in ("cupy", "torch")


def is_mutable(x: Array) -> bool:
    """True when ``x[key] += v`` updates ``x`` in place (NumPy, CuPy, torch)."""
    return _is_mutable(x)


def set_into(out: Array, key: tuple[Any, ...], values: Array) -> Array:
    """``out[key] = values`` for a basic (slice) index; returns the updated array."""
    if _is_mutable(out):
        out[key] = values
        return out
    return xpx.at(out, key).set(values)


def contiguous(x: Array) -> Array:
    """``x`` in row-major (C) memory order, copied only if it is not already.

    Only NumPy, CuPy and torch expose memory order; other arrays are returned
    unchanged.
    """
    if _is("numpy", x):
        return _numpy().ascontiguousarray(x)
    if _is("cupy", x):
        with x.device:
            return _cupy().ascontiguousarray(x)
    if _is("torch", x):
        return x.contiguous()
    return x


@functools.cache
def _cupy() -> Any:
    import cupy

    return cupy


def matmul_into(a: Array, b: Array, out: Array | None) -> Array:
    """``a @ b``, written into ``out`` where the backend allows it.

    Reusing one buffer avoids a fresh multi-megabyte allocation per call, which
    on Linux is returned to the OS when freed and page-faulted back in on the
    next call (``docs/performance.md``, design-reused-buffers). ``out`` is
    used only on NumPy and CuPy, when it is C-contiguous and has the result's
    shape and dtype; otherwise a new array is returned.
    """
    if out is not None and (_is("numpy", a) or _is("cupy", a)):
        mod = _numpy() if _is("numpy", a) else _cupy()
        try:  # NumPy's, for CuPy too: only shapes are involved
            batch = _numpy().broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            batch = None
        if (
            batch is not None
            and type(out) is type(a) is type(b)
            and out.ndim == 1
            and out.dtype == a.dtype == b.dtype
        ):
            shape = (*batch, a.shape[-2], b.shape[-1])
            size = math.prod(shape)
            if out.shape[0] >= size:
                # An inner dimension of 1 (depthwise column gradient) is an outer
                # product: a broadcast multiply, 3x faster than a stacked matmul.
                op = mod.multiply if a.shape[-1] == 1 else mod.matmul
                with _on_device(a):
                    return op(a, b, out=out[:size].reshape(shape))
    xp = compat.array_namespace(a, b)
    return a * b if a.shape[-1] == 1 else xp.matmul(a, b)


def flat_view(a: Array) -> Array | None:
    """A 1-D view of a C-contiguous NumPy or CuPy array (an ``out`` for
    :func:`matmul_into` that writes into ``a`` itself), else ``None``."""
    if (_is("numpy", a) or _is("cupy", a)) and a.flags.c_contiguous:
        return a.reshape(-1)
    return None


def workspace_buffer(like: Array, size: int) -> Array | None:
    """A flat scratch buffer of ``size`` elements for :func:`window_copy` and
    :func:`matmul_into`, or ``None`` on backends that cannot write into one."""
    if _is("numpy", like):
        return _numpy().empty((size,), dtype=like.dtype)
    if _is("cupy", like):
        with like.device:  # the buffer lives on the input's GPU
            return _cupy().empty((size,), dtype=like.dtype)
    return None


class Scratch:
    """Flat buffers shared by the passes of one call, one per slot (NumPy, CuPy).

    A fresh multi-megabyte buffer is page-faulted in on first use; the
    backward pass's input and weight gradients reuse one buffer for their
    columns (and one for a tile's padded input) instead of each allocating
    their own (``docs/performance.md``, design-reused-buffers).
    """

    def __init__(self) -> None:
        self._buffers: dict[Any, Array] = {}
        self._parts: dict[int, Scratch] = {}

    def part(self, k: int) -> Scratch:
        """The buffers of worker thread ``k`` (each thread fills buffers of its own)."""
        return self._parts.setdefault(k, Scratch())

    def buffer(self, like: Array, size: int, slot: Any) -> Array | None:
        """A buffer of at least ``size`` elements of ``like``'s dtype and device,
        or ``None`` on backends without one (:func:`workspace_buffer`)."""
        held = self._buffers.get(slot)
        if (
            held is not None
            and held.shape[0] >= size
            and held.dtype == like.dtype
            and type(held) is type(like)
            and device_of(held=held) == device_of(like=like)
        ):
            return held
        self._buffers.pop(slot, None)  # let the smaller one go first
        fresh = workspace_buffer(like, size)
        if fresh is not None:
            self._buffers[slot] = fresh
        return fresh


def _on_device(x: Array) -> Any:
    """Context making ``x``'s GPU current for CuPy; a no-op for NumPy."""
    return x.device if _is("cupy", x) else contextlib.nullcontext()


def window_copy(
    padded: Array, geom: Any, out: Array | None, *, ones_row: bool = False
) -> Array | None:
    """im2col in GEMM order as a single strided copy, or ``None`` if unsupported.

    ``padded`` is an already padded (n, C, *spatial) input and ``geom`` its
    geometry (no further padding). The result has shape (C*prod(kernel),
    n*prod(out_size)), rows ordered (channel, kernel offset) and columns
    (sample, output position): exactly what
    :func:`xpconv._im2col.im2col_gemm` builds by stacking strided slices, but
    written by one pass over a sliding-window view (``as_strided``) into
    ``out`` (a buffer of at least that many elements) when given. NumPy and
    CuPy only (``docs/performance.md``, design-window-copy). With
    ``ones_row`` a row of ones follows, as in :func:`xpconv._im2col.im2col_gemm`.
    """
    if _is("numpy", padded):
        mod = _numpy()
    elif _is("cupy", padded):
        mod = _cupy()
    else:
        return None
    n, c = padded.shape[0], padded.shape[1]
    s_n, s_c, *s_axes = padded.strides
    # An axis of one position (or a kernel of one tap) is never stepped
    # along: stride 0 there keeps huge strides from overflowing the view.
    taps = [
        d * s if k > 1 else 0 for k, d, s in zip(geom.kernel, geom.dilation, s_axes, strict=True)
    ]
    steps = [
        st * s if o > 1 else 0 for o, st, s in zip(geom.out_size, geom.stride, s_axes, strict=True)
    ]
    shape = (c, *geom.kernel, n, *geom.out_size)
    view = mod.lib.stride_tricks.as_strided(padded, shape=shape, strides=(s_c, *taps, s_n, *steps))
    rows, m = c * geom.kernel_volume + int(ones_row), n * geom.out_volume
    size = rows * m
    with _on_device(padded):
        if (
            out is not None
            and type(out) is type(padded)
            and out.dtype == padded.dtype
            and out.ndim == 1
            and out.shape[0] >= size
        ):
            flat = out[:size]
        else:
            flat = mod.empty((size,), dtype=padded.dtype)
        mod.copyto(flat[: (c * geom.kernel_volume) * m].reshape(shape), view)
        if ones_row:
            flat[(rows - 1) * m :] = 1
        return flat.reshape(rows, m)


def padded_rows(
    x: Array,
    pads: Sequence[tuple[int, int]],
    tail: int,
    out: Array | None,
    fill: Callable[[Array], None] | None = None,
) -> Array | None:
    """``x`` (R, m, *spatial) zero-padded: R rows of ``m*prod(padded)`` values, ``tail`` zeros.

    ``pads`` holds the (before, after) zeros of each spatial axis. The result
    (R, m*prod(padded) + tail) is a view of the front of ``out`` (a buffer
    from :func:`workspace_buffer`), written in one pass: the interior
    copied, the borders and the tails set to zero (whatever the buffer held
    before). ``fill``, if given, writes the borders instead of the zeros: it
    gets the (R, m, *padded) grid with the interior copied. ``None`` where
    there is no buffer or it is too short; the caller then pads and
    concatenates.
    """
    if out is None or type(out) is not type(x) or out.dtype != x.dtype or out.ndim != 1:
        return None
    r, m = x.shape[0], x.shape[1]
    padded, borders, interior = _padding_keys(tuple(x.shape[2:]), tuple(pads))
    size = m * math.prod(padded)
    if out.shape[0] < r * (size + tail):
        return None
    with _on_device(x):
        rows = out[: r * (size + tail)].reshape(r, size + tail)
        grid = rows[:, :size].reshape(r, m, *padded)
        if fill is None:
            for border in borders:
                grid[border] = 0
        grid[interior] = x
        if fill is not None:
            fill(grid)
        if tail:
            rows[:, size:] = 0
    return rows


@functools.lru_cache(maxsize=256)
def _padding_keys(
    sizes: tuple[int, ...], pads: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, ...], list[tuple[slice, ...]], tuple[slice, ...]]:
    """The padded sizes, the keys of the border slabs and the key of the interior.

    Each axis's two border slabs lie within the interior of the axes before
    it (their borders are written already) and span the axes after it.
    Cached: every chunk of a call pads planes of the same shape.
    """
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, pads, strict=True))
    inside = tuple(slice(lo, lo + n) for n, (lo, _) in zip(sizes, pads, strict=True))
    borders = []
    for axis, (lo, hi) in enumerate(pads):
        before = (slice(None), slice(None), *inside[:axis])
        if lo:
            borders.append((*before, slice(0, lo)))
        if hi:
            borders.append((*before, slice(lo + sizes[axis], None)))
    return padded, borders, (slice(None), slice(None), *inside)


def add_into(out: Array, key: tuple[Any, ...], values: Array) -> Array:
    """``out[key] += values`` for a basic (slice) index; returns the updated array.

    On NumPy, CuPy and torch the slice is a view, so adding into it touches
    each element once. JAX arrays are immutable and get ``out.at[key].add``
    (in place under ``jax.jit``); other backends use ``array_api_extra.at``.
    The caller must own ``out``: it is modified where the backend allows.
    """
    if _is_mutable(out):
        view = out[key]
        view += values
        return out
    if math.prod(out.shape) == 0:  # nothing to add to (Dask's `at` fails on empty arrays)
        return out
    return xpx.at(out, key).add(values)


def scatter_add(target: Array, index: Array, values: Array) -> Array:
    """Add ``values[..., k]`` into ``target[..., index[k]]``, accumulating repeats.

    ``target`` is (..., M), ``index`` a 1-D integer array of length K and
    ``values`` (..., K). Updates ``target`` in place where the backend allows
    and returns it. ``array_api_extra.at(...).add`` is not enough here: on
    NumPy, torch and Dask it keeps only one of several equal indices.
    """
    size = target.shape[-1]
    if _is("numpy", target):
        import numpy as np

        np.add.at(
            np.reshape(target, (-1, size)),
            (slice(None), index),  # type: ignore[arg-type]  # numpy's stubs omit tuples
            np.reshape(values.astype(target.dtype, copy=False), (-1, index.shape[0])),
        )
        return target
    if _is("cupy", target):
        cupy = _cupy()  # cupy.add.at: atomic adds (cupyx.scatter_add is deprecated in v14)

        flat = target.reshape(-1, size)
        with _on_device(target):
            cupy.add.at(flat, (slice(None), index), values.reshape(-1, index.shape[0]))
        return target
    if _is("torch", target):
        target.index_add_(-1, index, values)
        return target
    if _is("jax", target):
        return target.at[..., index].add(values)
    # Portable fallback: a one-hot matrix turns the scatter into a matmul. It
    # costs K*M memory, so it is meant for small arrays and for testing.
    xp = compat.array_namespace(target)
    one_hot = xpx.one_hot(index, size, dtype=target.dtype, xp=xp)
    return target + xp.matmul(values, one_hot)


@functools.cache
def _numpy() -> Any:
    import numpy as np

    return np


def _generator(rng: Any) -> Any:
    np = _numpy()
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def random_uniform(rng: Any, low: float, high: float, shape: Sequence[int]) -> Any:
    """A NumPy float64 array of uniform samples from ``rng`` (seed, Generator or None)."""
    return _generator(rng).uniform(low, high, size=tuple(shape))


def random_normal(rng: Any, mean: float, std: float, shape: Sequence[int]) -> Any:
    """Normal samples; ``rng=None`` uses NumPy's global state, as ``np.random.normal`` does."""
    np = _numpy()
    if rng is None:
        return np.random.normal(mean, std, tuple(shape))
    return _generator(rng).normal(mean, std, size=tuple(shape))


def synchronize(x: Array) -> None:
    """Wait until the device that holds ``x`` has finished its queued work."""
    if _is("cupy", x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif _is("torch", x) and x.device.type == "cuda":
        import torch

        torch.cuda.synchronize(x.device)
    elif _is("jax", x):
        x.block_until_ready()


def host_workers(x: Array) -> int:
    """Threads for xpconv's own loops over independent pieces of ``x``.

    NumPy only (see :mod:`xpconv._threads`): the other libraries run each
    operation on their own threads or devices already, and a Python thread
    per piece would only add overhead or, for JAX and Dask, trace the graph
    from several threads.
    """
    return thread_count() if _is("numpy", x) else 1


def memory_bytes(x: Array) -> int | None:
    """The memory of the device that holds ``x`` (host RAM for CPU arrays), if known.

    An array larger than this cannot exist, so a request for one fails at
    once with a clear error instead of paging or tiling for hours.
    """
    try:
        if _is("cupy", x):
            with x.device:
                return int(_cupy().cuda.runtime.memGetInfo()[1])
        if _is("torch", x) and x.device.type == "cuda":
            import torch

            return int(torch.cuda.get_device_properties(x.device).total_memory)
        if on_gpu(x):
            return None  # JAX on a GPU: its allocator knows, xpconv does not ask
    except Exception:
        return None
    return _host_memory_bytes()


@functools.cache
def _host_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def quiet_float_errors(x: Array) -> Any:
    """A context in which NumPy does not warn about inf and NaN (a no-op elsewhere).

    Non-finite inputs give the IEEE results PyTorch gives, silently; NumPy's
    "invalid value encountered in matmul" would point inside xpconv, not at
    the caller's data.
    """
    if _is("numpy", x) or type(x).__module__.startswith("array_api_strict"):
        return _numpy().errstate(all="ignore")  # array-api-strict computes with NumPy
    return contextlib.nullcontext()


def fft_module(x: Array, xp: Namespace) -> Any:
    """The FFT functions for ``x``: ``scipy.fft`` for NumPy arrays where SciPy is
    installed, else ``xp.fft`` (the array API extension).

    ``scipy.fft`` takes the same arguments and keeps float32 in float32 at
    the speed of float64 or better; NumPy 2's own ``numpy.fft`` is three to
    five times slower in float32 than in float64 along several axes or over
    a batch (see :func:`fft_in_double`).
    """
    if _is("numpy", x):
        scipy_fft = _scipy_fft()
        if scipy_fft is not None:
            return scipy_fft
    return xp.fft


@functools.cache
def _scipy_fft() -> Any:
    try:
        import scipy.fft
    except ImportError:
        return None
    return scipy.fft


def fft_in_double(x: Array) -> bool:
    """Whether single-precision FFTs of ``x`` run faster in double precision.

    NumPy 2's pocketfft computes float32/complex64 transforms along several
    axes (or over a batch) three to five times slower than float64 ones
    (measured: a 576x576 ``rfftn`` 5.4 ms against 1.1 ms);
    array-api-strict computes with NumPy. Where :func:`fft_module` gives
    ``scipy.fft``, or for other libraries (torch, JAX, CuPy), single
    precision is fast.
    """
    if _is("numpy", x):
        return _scipy_fft() is None
    return type(x).__module__.startswith("array_api_strict")


def all_finite(x: Array) -> bool | None:
    """Whether every value of ``x`` is finite; ``None`` where the values cannot be read.

    A JAX array inside ``jit``/``grad``/``vmap`` has no values yet, and a
    Dask array would have to be computed: both give ``None``, and the caller
    takes the route that is exact whatever the values. Elsewhere this is one
    reduction (on a GPU, also a wait for the queued work).
    """
    if not values_readable(x):
        return None
    xp = compat.array_namespace(x)
    return bool(xp.all(xp.isfinite(x)))


def values_readable(x: Array) -> bool:
    """False for arrays whose values do not exist yet (JAX tracers) or would have
    to be computed (Dask): routes that depend on values take the safe choice."""
    return not (_is("dask", x) or (_is("jax", x) and _is_jax_tracer(x)))


def _is_jax_tracer(x: Array) -> bool:
    import jax

    return isinstance(x, jax.core.Tracer)


def on_gpu(x: Array) -> bool:
    """True for an array in GPU memory (CuPy, torch CUDA, JAX on a GPU)."""
    if _is("cupy", x):
        return True
    if _is("torch", x):
        return bool(x.device.type == "cuda")
    if _is("jax", x):
        try:
            return getattr(compat.device(x), "platform", "cpu") == "gpu"
        except Exception:  # a tracer inside jit has no device of its own
            return False
    return False


def gpu_available(library: str) -> bool:
    """True when ``library`` ("cupy" or "torch") can run a kernel on a GPU here.

    ``import cupy`` succeeds on machines without a GPU, so a tiny computation
    is the only reliable test.
    """
    try:
        if library == "cupy":
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return False
            return float((cupy.arange(3.0) * 2).sum()) == 6.0
        if library == "torch":
            import torch

            if not torch.cuda.is_available():
                return False
            return float((torch.arange(3.0, device="cuda") * 2).sum()) == 6.0
    except Exception:
        return False
    return False


def resolve_namespace(xp: Any = None) -> Namespace:
    """The array-API-compatible namespace for a user's choice of library.

    ``None`` means NumPy. A module such as ``numpy``, ``torch``, ``cupy`` or
    ``jax.numpy`` is mapped to its array-api-compat wrapper, so that callers
    can write ``xp=torch``.
    """
    if xp is None:
        xp = _numpy()
    try:
        return compat.array_namespace(xp.asarray(0.0))
    except (AttributeError, TypeError):
        msg = f"xp must be an array API namespace such as numpy or torch, got {xp!r}"
        raise TypeError(msg) from None


def resolve_dtype(dtype: Any, xp: Namespace) -> Any:
    """``dtype`` as a dtype of ``xp``: a name (``"float32"``), or a dtype of any
    library (``numpy.float32`` for a torch layer, say), mapped by its name.

    Raises ``TypeError`` naming the value when ``xp`` has no such dtype.
    """
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    resolved = getattr(xp, name, None) if name else None
    if resolved is None:
        msg = f"dtype must be a dtype or dtype name that {xp.__name__} has, got {dtype!r}"
        raise TypeError(msg)
    return resolved


def dtype_name(dtype: Any) -> str | None:
    """'float32' for numpy.float32, np.dtype('float32'), torch.float32, jnp.float32, ..."""
    try:
        return str(_numpy().dtype(dtype).name)
    except TypeError:
        pass
    name = str(dtype).rsplit(".", 1)[-1]  # "torch.float32", "array_api_strict.float32"
    return name if name.isidentifier() else None


def materialize(arrays: Sequence[Array]) -> list[Array]:
    """Evaluate lazy (Dask) arrays now, all in one pass; other arrays pass unchanged.

    Training loops call this on their parameters and optimizer state so that a
    lazy backend's task graph does not grow with every step.
    """
    if any(_is("dask", a) for a in arrays):
        import dask

        return list(dask.persist(*arrays))
    return list(arrays)


def to_numpy(x: Array) -> Any:
    """A host NumPy copy of a (small) array of any backend, for reporting and plotting."""
    np = _numpy()
    if _is("cupy", x):
        return x.get()
    if _is("torch", x):
        return x.detach().cpu().numpy()
    if _is("dask", x):
        x = x.compute()
    if _is("numpy", x) or _is("jax", x):
        return np.asarray(x)
    return np.from_dlpack(x)
