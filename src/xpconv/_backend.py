"""The only module that knows which array library it is talking to.

Everything else in xpconv receives a namespace ``xp`` and uses the array API
standard. What cannot be written that way lives here:

* :func:`namespace_of` and :func:`device_of`, with error messages that name
  the offending argument;
* :func:`add_into`, the in-place (or, on JAX, functional) ``out[key] += v``
  that col2im accumulates with;
* :func:`scatter_add`, an index-based scatter-add that accumulates duplicate
  indices (``np.add.at``, ``cupyx.scatter_add``, ``torch.index_add_``,
  ``jax .at[].add`` and a portable one-hot fallback);
* random numbers for parameter initialisation (a NumPy ``Generator``, so that
  a seed gives the same weights on every backend);
* small utilities for benchmarks and the CLI (``synchronize``, ``gpu_available``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import array_api_compat as compat
import array_api_extra as xpx

__all__ = [
    "add_into",
    "default_float_dtype",
    "device_of",
    "gpu_available",
    "namespace_of",
    "random_normal",
    "random_uniform",
    "resolve_namespace",
    "scatter_add",
    "synchronize",
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
    """Return the device shared by the named arrays; ``ValueError`` if they differ."""
    devices = {name: compat.device(a) for name, a in arrays.items() if a is not None}
    first_name, first = next(iter(devices.items()))
    for name, dev in devices.items():
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
            (slice(None), index),
            np.reshape(values.astype(target.dtype, copy=False), (-1, index.shape[0])),
        )
        return target
    if compat.is_cupy_array(target):
        import cupyx

        flat = target.reshape(-1, size)
        cupyx.scatter_add(flat, (slice(None), index), values.reshape(-1, index.shape[0]))
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
    except Exception:  # noqa: BLE001  (any failure means "not usable here")
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
