"""The only module that knows which array library it is talking to.

Everything else in xpconv receives a namespace ``xp`` and uses the array API
standard. What cannot be written that way lives here:

* :func:`namespace_of` and :func:`device_of`, with error messages that name
  the offending argument;
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
from typing import TYPE_CHECKING, Any

import array_api_compat as compat
import array_api_extra as xpx

from xpconv._threads import thread_count

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "add_into",
    "contiguous",
    "default_float_dtype",
    "device_of",
    "gpu_available",
    "host_workers",
    "is_mutable",
    "materialize",
    "matmul_into",
    "namespace_of",
    "on_gpu",
    "padded_rows",
    "random_normal",
    "random_uniform",
    "resolve_namespace",
    "scatter_add",
    "set_into",
    "synchronize",
    "to_numpy",
    "window_copy",
    "workspace_buffer",
]

Array = Any
Namespace = Any


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
    unique = {id(xp): xp for xp in spaces.values()}
    if len(unique) > 1:
        described = ", ".join(
            f"{n}: {type(present[n]).__module__}.{type(present[n]).__name__}" for n in spaces
        )
        msg = f"arrays must all come from one array library, got {described}"
        raise TypeError(msg)
    return next(iter(unique.values()))


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
    return (
        compat.is_numpy_array(x) or compat.is_cupy_array(x) or compat.is_torch_array(x)
    ) and compat.is_writeable_array(x)


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
    if compat.is_numpy_array(x):
        return _numpy().ascontiguousarray(x)
    if compat.is_cupy_array(x):
        with x.device:
            return _cupy().ascontiguousarray(x)
    if compat.is_torch_array(x):
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
    next call (measured: 2x slower GEMMs for the im2col gradient). ``out`` is
    used only on NumPy and CuPy, when it is C-contiguous and has the result's
    shape and dtype; otherwise a new array is returned.
    """
    if out is not None and (compat.is_numpy_array(a) or compat.is_cupy_array(a)):
        mod = _numpy() if compat.is_numpy_array(a) else _cupy()
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


def workspace_buffer(like: Array, size: int) -> Array | None:
    """A flat scratch buffer of ``size`` elements for :func:`window_copy` and
    :func:`matmul_into`, or ``None`` on backends that cannot write into one."""
    if compat.is_numpy_array(like):
        return _numpy().empty((size,), dtype=like.dtype)
    if compat.is_cupy_array(like):
        with like.device:  # the buffer lives on the input's GPU
            return _cupy().empty((size,), dtype=like.dtype)
    return None


def _on_device(x: Array) -> Any:
    """Context making ``x``'s GPU current for CuPy; a no-op for NumPy."""
    return x.device if compat.is_cupy_array(x) else contextlib.nullcontext()


def window_copy(
    padded: Array, geom: Any, out: Array | None, *, ones_row: bool = False
) -> Array | None:
    """im2col in GEMM order as a single strided copy, or ``None`` if unsupported.

    ``padded`` is an already padded (n, C, Hp, Wp) input and ``geom`` its
    geometry (no further padding). The result has shape (C*KH*KW, n*OH*OW),
    rows ordered (channel, kernel row, kernel column) and columns (sample,
    output row, output column): exactly what :func:`xpconv._im2col.im2col_gemm`
    builds by stacking strided slices, but written by one pass over a
    sliding-window view (``as_strided``) instead of KH*KW slice copies, into
    ``out`` (a buffer of at least that many elements) when given. NumPy and CuPy
    only; measured 1.4-2.5x faster than stacking slices on NumPy. With
    ``ones_row`` a row of ones follows, as in :func:`xpconv._im2col.im2col_gemm`.
    """
    if compat.is_numpy_array(padded):
        mod = _numpy()
        as_strided = mod.lib.stride_tricks.as_strided
    elif compat.is_cupy_array(padded):
        mod = _cupy()
        as_strided = mod.lib.stride_tricks.as_strided
    else:
        return None
    n, c = padded.shape[0], padded.shape[1]
    kh, kw = geom.kernel_hw
    oh, ow = geom.out_hw
    sh, sw = geom.stride
    dh, dw = geom.dilation
    s_n, s_c, s_h, s_w = padded.strides
    shape = (c, kh, kw, n, oh, ow)
    view = as_strided(
        padded, shape=shape, strides=(s_c, dh * s_h, dw * s_w, s_n, sh * s_h, sw * s_w)
    )
    rows, m = c * kh * kw + int(ones_row), n * oh * ow
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
        mod.copyto(flat[: (c * kh * kw) * m].reshape(shape), view)
        if ones_row:
            flat[(rows - 1) * m :] = 1
        return flat.reshape(rows, m)


def padded_rows(
    x: Array, pads: tuple[int, int, int, int], tail: int, out: Array | None
) -> Array | None:
    """``x`` (R, m, H, W) zero-padded, as R rows of ``m*Hp*Wp`` values and ``tail`` zeros.

    ``pads`` is (top, bottom, left, right). The result (R, m*Hp*Wp + tail) is
    a view of the front of ``out`` (a buffer from :func:`workspace_buffer`),
    written in one pass: the interior copied, the borders and the tails set to
    zero (whatever the buffer held before). ``None`` where there is no buffer
    or it is too short; the caller then pads and concatenates (measured on the
    depthwise benchmark layer: numpy.pad and concatenate per chunk made the
    forward pass 30% slower).
    """
    if out is None or type(out) is not type(x) or out.dtype != x.dtype or out.ndim != 1:
        return None
    r, m, h, w = x.shape
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    size = m * hp * wp
    if out.shape[0] < r * (size + tail):
        return None
    with _on_device(x):
        rows = out[: r * (size + tail)].reshape(r, size + tail)
        grid = rows[:, :size].reshape(r, m, hp, wp)
        grid[:, :, :top, :] = 0
        grid[:, :, top + h :, :] = 0
        grid[:, :, top : top + h, :left] = 0
        grid[:, :, top : top + h, left + w :] = 0
        grid[:, :, top : top + h, left : left + w] = x
        rows[:, size:] = 0
    return rows


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
    return xpx.at(out, key).add(values)


def scatter_add(target: Array, index: Array, values: Array) -> Array:
    """Add ``values[..., k]`` into ``target[..., index[k]]``, accumulating repeats.

    ``target`` is (..., M), ``index`` a 1-D integer array of length K and
    ``values`` (..., K). Updates ``target`` in place where the backend allows
    and returns it. ``array_api_extra.at(...).add`` is not enough here: on
    NumPy, torch and Dask it keeps only one of several equal indices.
    """
    size = target.shape[-1]
    if compat.is_numpy_array(target):
        import numpy as np

        np.add.at(
            np.reshape(target, (-1, size)),
            (slice(None), index),  # type: ignore[arg-type]  # numpy's stubs omit tuples
            np.reshape(values.astype(target.dtype, copy=False), (-1, index.shape[0])),
        )
        return target
    if compat.is_cupy_array(target):
        cupy = _cupy()  # cupy.add.at: atomic adds (cupyx.scatter_add is deprecated in v14)

        flat = target.reshape(-1, size)
        with _on_device(target):
            cupy.add.at(flat, (slice(None), index), values.reshape(-1, index.shape[0]))
        return target
    if compat.is_torch_array(target):
        target.index_add_(-1, index, values)
        return target
    if compat.is_jax_array(target):
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
    if compat.is_cupy_array(x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif compat.is_torch_array(x) and x.device.type == "cuda":
        import torch

        torch.cuda.synchronize(x.device)
    elif compat.is_jax_array(x):
        x.block_until_ready()


def host_workers(x: Array) -> int:
    """Threads for xpconv's own loops over independent pieces of ``x``.

    NumPy only (see :mod:`xpconv._threads`): the other libraries run each
    operation on their own threads or devices already, and a Python thread
    per piece would only add overhead or, for JAX and Dask, trace the graph
    from several threads.
    """
    return thread_count() if compat.is_numpy_array(x) else 1


def on_gpu(x: Array) -> bool:
    """True for an array in GPU memory (CuPy, torch CUDA, JAX on a GPU)."""
    if compat.is_cupy_array(x):
        return True
    if compat.is_torch_array(x):
        return bool(x.device.type == "cuda")
    if compat.is_jax_array(x):
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


def materialize(arrays: Sequence[Array]) -> list[Array]:
    """Evaluate lazy (Dask) arrays now, all in one pass; other arrays pass unchanged.

    Training loops call this on their parameters and optimizer state so that a
    lazy backend's task graph does not grow with every step.
    """
    if any(compat.is_dask_array(a) for a in arrays):
        import dask

        return list(dask.persist(*arrays))
    return list(arrays)


def to_numpy(x: Array) -> Any:
    """A host NumPy copy of a (small) array of any backend, for reporting and plotting."""
    np = _numpy()
    if compat.is_cupy_array(x):
        return x.get()
    if compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if compat.is_dask_array(x):
        x = x.compute()
    if compat.is_numpy_array(x) or compat.is_jax_array(x):
        return np.asarray(x)
    return np.from_dlpack(x)
