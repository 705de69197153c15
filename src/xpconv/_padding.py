"""Padding modes (reflect, replicate, circular, symmetric) and their exact adjoints.

A convolution with a padding mode is the zero-padding convolution (padding 0)
of an explicitly padded input, so the engine needs nothing new: :func:`pad`
builds the padded input and :func:`pad_adjoint` folds the gradient of the
padded input back onto the input (the transpose of :func:`pad`). The
depthwise kernel copies its input planes into a buffer anyway; it pads them
with the mode as it copies (:func:`fill_borders`), which saves the padded
copy of the whole input.

Each mode copies, for each side of an axis, one contiguous run of the input
(reversed for reflect and symmetric), or the edge repeated for replicate:

============  =========================  ==========================
mode          before the axis (lo)       after the axis (hi)
============  =========================  ==========================
reflect       flip(x[1 : lo+1])          flip(x[n-1-hi : n-1])
symmetric     flip(x[0 : lo])            flip(x[n-hi : n])
circular      x[n-lo : n]                x[0 : hi]
replicate     x[0] repeated lo times     x[n-1] repeated hi times
============  =========================  ==========================

Because every run is a plain (possibly reversed) slice no longer than the
axis, the adjoint is a handful of slice additions: no scatter, no index
arrays, so it runs unchanged on every array API library (and stays
deterministic on GPUs). Axes are padded one at a time; the modes act on each
axis independently, so the order does not change the result.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import array_api_compat as compat

from xpconv._backend import add_into, capabilities
from xpconv._geometry import ConvGeometry, conv_geometry

__all__ = [
    "MODES",
    "check_mode",
    "check_pads",
    "explicit_padding",
    "fill_borders",
    "pad",
    "pad_adjoint",
    "zeros_only",
]

Array = Any
Namespace = Any
Pads = tuple[tuple[int, int], ...]

#: Every accepted ``padding_mode``; 'zeros' is the engine's own padding.
MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")

# The largest pad each mode allows, as a function of the axis size n:
# reflect never repeats the edge, so it has n - 1 values to mirror.
_LIMIT = {
    "reflect": (lambda n: n - 1, "smaller than"),
    "symmetric": (lambda n: n, "at most"),
    "circular": (lambda n: n, "at most"),
}


def check_mode(mode: object) -> str:
    """``mode`` itself if it is a known padding mode; ValueError listing them otherwise."""
    if not isinstance(mode, str) or mode not in MODES:
        listed = ", ".join(repr(m) for m in MODES)
        msg = f"padding_mode must be one of {listed}, got {mode!r}"
        raise ValueError(msg)
    return mode


def zeros_only(mode: object, op: str) -> None:
    """Transposed convolutions pad with zeros only, as in PyTorch: say so for any other mode."""
    if check_mode(mode) != "zeros":
        msg = (
            f"{op} supports only padding_mode='zeros' (its padding removes output "
            f"values rather than adding input values), got padding_mode={mode!r}"
        )
        raise ValueError(msg)


def explicit_padding(
    x: Array, geom: ConvGeometry, mode: str, xp: Namespace
) -> tuple[Array, ConvGeometry]:
    """``x`` padded with ``mode`` and the geometry of padding 0 on it.

    For 'zeros', or nothing to pad, ``x`` and ``geom`` come back unchanged (the
    engine pads with zeros itself, without a padded copy). The caller has
    checked the pads with :func:`check_pads`.
    """
    if mode == "zeros" or not geom.is_padded:
        return x, geom
    padded = pad(x, geom.pad, mode, xp)
    weight_shape = (geom.out_channels, geom.in_channels // geom.groups, *geom.kernel)
    inner = conv_geometry(
        tuple(padded.shape),
        weight_shape,
        stride=geom.stride,
        padding=0,
        dilation=geom.dilation,
        groups=geom.groups,
    )
    return padded, inner


def check_pads(
    mode: str, in_size: tuple[int, ...], pads: Pads, axis_names: tuple[str, ...]
) -> None:
    """ValueError naming the axis when a pad is too large for ``mode``."""
    if mode not in _LIMIT:
        return
    limit, words = _LIMIT[mode]
    for name, n, (lo, hi) in zip(axis_names, in_size, pads, strict=True):
        if max(lo, hi) > limit(n):
            msg = (
                f"padding_mode={mode!r} needs a padding {words} the input size on each side, "
                f"got padding ({lo}, {hi}) on spatial axis {name} of size {n}"
            )
            raise ValueError(msg)


def _take(x: Array, axis: int, start: int, stop: int) -> Array:
    return x[_key(x.ndim, axis, start, stop)]


def _pieces(x: Array, mode: str, axis: int, lo: int, hi: int, xp: Namespace) -> tuple[Array, Array]:
    """The runs copied before and after ``axis`` (empty when that side is 0)."""
    n = x.shape[axis]
    if mode == "reflect":
        before, after = _take(x, axis, 1, lo + 1), _take(x, axis, n - 1 - hi, n - 1)
    elif mode == "symmetric":
        before, after = _take(x, axis, 0, lo), _take(x, axis, n - hi, n)
    elif mode == "circular":
        return _take(x, axis, n - lo, n), _take(x, axis, 0, hi)
    else:  # replicate: the edge, broadcast along the axis
        first, last = _take(x, axis, 0, 1), _take(x, axis, n - 1, n)
        shape_lo, shape_hi = list(x.shape), list(x.shape)
        shape_lo[axis], shape_hi[axis] = lo, hi
        return xp.broadcast_to(first, tuple(shape_lo)), xp.broadcast_to(last, tuple(shape_hi))
    return xp.flip(before, axis=axis), xp.flip(after, axis=axis)


def pad(x: Array, pads: Pads, mode: str, xp: Namespace) -> Array:
    """``x`` of shape ``(N, C, *spatial)`` padded by ``pads`` (one (lo, hi) per spatial axis).

    The caller has checked the pads with :func:`check_pads`. Libraries with
    in-place slices (NumPy, CuPy, torch) fill one new array: the input once,
    then each axis's padding from what is already there. The others
    concatenate, one axis at a time (each a copy of the whole array).
    """
    if not capabilities(x).in_place:
        for axis, (lo, hi) in enumerate(pads, start=2):
            if lo or hi:
                before, after = _pieces(x, mode, axis, lo, hi, xp)
                x = xp.concat([before, x, after], axis=axis)
        return x
    size = tuple(x.shape[2:])
    shape = (*x.shape[:2], *(n + lo + hi for n, (lo, hi) in zip(size, pads, strict=True)))
    out = xp.empty(shape, dtype=x.dtype, device=compat.device(x))
    out[(..., *(slice(lo, lo + n) for n, (lo, _) in zip(size, pads, strict=True)))] = x
    fill_borders(out, pads, mode, xp)
    return out


# A pad of a few positions along the last (contiguous) axis is a slab of a
# few values per row: NumPy copies or adds it as one short loop per row. On
# the host such a slab goes one padded position (a column) at a time
# instead, each one long strided loop, when the array has at least this many
# rows per column (``docs/performance.md``, design-border-columns).
ROWS_PER_COLUMN = 64


def _by_columns(x: Array, shape: tuple[int, ...], lo: int, hi: int) -> bool:
    """Whether the last axis's padding of ``shape`` is copied or folded a column at a time."""
    # One column is one loop either way; a small array stays with the slabs.
    if lo + hi < 2 or math.prod(shape[:-1]) < ROWS_PER_COLUMN * (lo + hi):
        return False
    caps = capabilities(x)
    return caps.in_place and not caps.gpu


def _column_sources(mode: str, n: int, lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    """(padded index, input index) of each padded position of an axis of ``n`` values.

    Indices as in the module's table: reflect's first padded position (index
    0) is x[lo], symmetric's is x[lo - 1]; after the axis (padded index
    lo + n + k), reflect's is x[n - 2 - k] and symmetric's x[n - 1 - k].
    """
    first, after, step = {  # the input index of padded index 0, of lo + n, and the step
        "reflect": (lo, n - 2, -1),
        "symmetric": (lo - 1, n - 1, -1),
        "circular": (n - lo, 0, 1),
        "replicate": (0, n - 1, 0),
    }[mode]
    return tuple((p, first + step * p) for p in range(lo)) + tuple(
        (lo + n + k, after + step * k) for k in range(hi)
    )


def fill_borders(out: Array, pads: Pads, mode: str, xp: Namespace) -> None:
    """Write the padding of ``out`` (A, B, *padded), whose interior holds the input, with ``mode``.

    In place, from the interior (libraries with in-place slices only): used
    by :func:`pad` and by kernels that copy the input into a buffer of their
    own anyway (:mod:`xpconv._shifted`), which then pad with the mode for free.
    """
    shape = tuple(out.shape)
    columns = _by_columns(out, shape, *pads[-1])
    for target, source, flip_axis in _border_copies(shape, pads, mode, columns):
        values = out[source]
        if flip_axis is not None:
            values = xp.flip(values, axis=flip_axis)
        out[target] = values  # replicate: one edge slice, broadcast along the axis


@functools.lru_cache(maxsize=256)
def _border_copies(
    shape: tuple[int, ...], pads: Pads, mode: str, columns: bool
) -> tuple[tuple[tuple[Any, ...], tuple[Any, ...], int | None], ...]:
    """(target key, source key, axis to flip or None) of each run :func:`fill_borders` copies.

    Cached: every chunk of a depthwise call pads planes of the same shape.
    Axis by axis: the axes before one are padded already and the ones after
    not yet, so the runs copied along an axis span exactly that region. With
    ``columns`` the last axis's runs are copied one padded position at a time.
    """
    size = tuple(n - lo - hi for n, (lo, hi) in zip(shape[2:], pads, strict=True))
    copies: list[tuple[tuple[Any, ...], tuple[Any, ...], int | None]] = []
    for axis, ((lo, hi), n) in enumerate(zip(pads, size, strict=True), start=2):
        if columns and axis == len(shape) - 1:  # the last axis: every other one is padded
            copies += [((..., p), (..., lo + i), None) for p, i in _column_sources(mode, n, lo, hi)]
            continue
        region = [slice(None)] * len(shape)
        for later in range(axis + 1, len(shape)):
            start = pads[later - 2][0]
            region[later] = slice(start, start + size[later - 2])
        first, last = lo, lo + n - 1  # the input's first and last index along the axis
        sources = {
            "reflect": ((first + 1, first + 1 + lo), (last - hi, last)),
            "symmetric": ((first, first + lo), (last + 1 - hi, last + 1)),
            "circular": ((last + 1 - lo, last + 1), (first, first + hi)),
            "replicate": ((first, first + 1), (last, last + 1)),
        }[mode]
        mirrored = mode in ("reflect", "symmetric")
        targets = ((0, lo), (lo + n, lo + n + hi))
        for (t0, t1), (s0, s1) in zip(targets, sources, strict=True):
            if t1 > t0:
                target, source = list(region), list(region)
                target[axis], source[axis] = slice(t0, t1), slice(s0, s1)
                flip = axis if mirrored and s1 - s0 > 1 else None  # one value needs no flip
                copies.append((tuple(target), tuple(source), flip))
    return tuple(copies)


def _key(ndim: int, axis: int, start: int, stop: int) -> tuple[slice, ...]:
    key = [slice(None)] * ndim
    key[axis] = slice(start, stop)
    return tuple(key)


def pad_adjoint(grad: Array, pads: Pads, mode: str, xp: Namespace) -> Array:
    """The gradient of the padded array folded back onto the unpadded input.

    ``grad`` has the padded shape and must be owned by the caller (it may be
    updated in place). Each padded value came from one input value, so its
    gradient is added to that value's: the transpose of :func:`pad`.
    """
    for axis in reversed(range(2, grad.ndim)):
        lo, hi = pads[axis - 2]
        if axis == grad.ndim - 1 and _by_columns(grad, tuple(grad.shape), lo, hi):
            grad = _fold_columns(grad, mode, lo, hi)
        elif lo or hi:
            grad = _fold_axis(grad, mode, axis, lo, hi, xp)
    return grad


def _fold_columns(grad: Array, mode: str, lo: int, hi: int) -> Array:
    """:func:`_fold_axis` on the last axis, one padded position at a time (on the host)."""
    n = grad.shape[-1] - lo - hi
    inner = grad[..., lo : lo + n]
    for p, i in _column_sources(mode, n, lo, hi):
        inner = add_into(inner, (..., i), grad[..., p])
    return inner


def _fold_axis(grad: Array, mode: str, axis: int, lo: int, hi: int, xp: Namespace) -> Array:
    n = grad.shape[axis] - lo - hi
    g_lo, g_hi = _take(grad, axis, 0, lo), _take(grad, axis, lo + n, lo + n + hi)
    inner = _take(grad, axis, lo, lo + n)
    if mode == "replicate":
        # Every padded value is a copy of the edge: its gradients sum there.
        g_lo = xp.sum(g_lo, axis=axis, keepdims=True)
        g_hi = xp.sum(g_hi, axis=axis, keepdims=True)
        targets = ((0, 1, g_lo, lo), (n - 1, n, g_hi, hi))
    elif mode == "circular":
        targets = ((n - lo, n, g_lo, lo), (0, hi, g_hi, hi))
    else:
        g_lo, g_hi = xp.flip(g_lo, axis=axis), xp.flip(g_hi, axis=axis)
        if mode == "reflect":
            targets = ((1, lo + 1, g_lo, lo), (n - 1 - hi, n - 1, g_hi, hi))
        else:  # symmetric
            targets = ((0, lo, g_lo, lo), (n - hi, n, g_hi, hi))
    for start, stop, values, amount in targets:
        if amount:
            inner = add_into(inner, _key(grad.ndim, axis, start, stop), values)
    return inner
