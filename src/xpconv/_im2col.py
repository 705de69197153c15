"""im2col and col2im, written once in array-API code for every backend and every rank.

A convolution is a matrix product once every receptive field of the input has
been copied out as a column ("im2col")::

    x (N, C, *spatial)  --im2col-->  cols (N, C*K, L)     K = prod(kernel), L = prod(out_size)
    y = weight.reshape(O, C*K) @ cols                      # (N, O, L)

The column for output position ``p`` holds ``x[n, c, p*s + i*d]`` (every
spatial axis at once) for every channel ``c`` and kernel offset ``i``. For a
fixed offset those positions form a *strided slice* of the padded input, so
im2col is K slices stacked together: no index arrays, no fancy indexing,
which is what lets the same code run on NumPy, CuPy, torch, JAX, Dask and
array-api-strict, for signals, images and volumes alike.

col2im is the adjoint: every column entry is added back to the position it
came from. Positions covered by several windows receive several
contributions, which is why col2im is a *scatter-add*. Within one kernel
offset no position repeats, so adding the K slices one after the other with
:func:`xpconv._backend.add_into` is a scatter-add without atomics (the
default, deterministic on every device). The alternative strategy
(``strategy="scatter"`` of :func:`col2im`) builds flat indices and hands them
to the backend's native scatter-add, :func:`xpconv._backend.scatter_add`.

The convolution kernels use the same slices in *GEMM order*
(:func:`im2col_gemm`, :func:`col2im_gemm`): columns (C*K, n*L), i.e. axes
(C, *kernel, n, *out_size). Then the forward pass, the weight gradient and
the column gradient are each one matrix product per group over a whole tile,
with long contiguous operands. On NumPy and CuPy the stack of slices is
replaced by one strided copy (:func:`xpconv._backend.window_copy`) into a
reused buffer; the result is the same array, which
``tests/test_fast_paths.py`` checks.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import TYPE_CHECKING, Any, Literal

import array_api_extra as xpx

from xpconv._backend import (
    add_into,
    device_of,
    is_mutable,
    padded_rows,
    scatter_add,
    set_into,
    window_copy,
)
from xpconv._padding import fill_borders, pad

if TYPE_CHECKING:
    from xpconv._geometry import ConvGeometry
    from xpconv._tiles import Tile

__all__ = [
    "col2im",
    "col2im_gemm",
    "covering_tap",
    "im2col",
    "im2col_gemm",
    "kernel_offsets",
    "pad_input",
    "pad_region",
    "window_slices",
]

Array = Any
Namespace = Any
Col2imStrategy = Literal["slices", "scatter"]


def kernel_offsets(kernel: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every kernel offset, in the row-major order of the weight's kernel axes."""
    return list(_offsets(kernel))


@functools.lru_cache(maxsize=64)
def _offsets(kernel: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(itertools.product(*(range(k) for k in kernel)))


def window_slices(geom: ConvGeometry, offset: tuple[int, ...]) -> tuple[slice, ...]:
    """The positions of the padded input seen by one kernel offset, one slice per axis.

    The stop is the last index read plus one (not ``start + s*out``): strict
    array API implementations reject slice stops past the end of an axis.
    """
    return tuple(
        slice(i * d, i * d + s * (o - 1) + 1, s)
        for i, d, s, o in zip(offset, geom.dilation, geom.stride, geom.out_size, strict=True)
    )


def _spatial(key: tuple[slice, ...]) -> tuple[slice, ...]:
    """``(all samples, all channels, *key)``: a spatial key over whole samples and channels."""
    return (slice(None), slice(None), *key)


def pad_input(x: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """``x`` with ``geom.pad`` zeros around each spatial axis (``x`` itself if there are none)."""
    if not geom.is_padded:
        return x
    return xpx.pad(x, ((0, 0), (0, 0), *geom.pad), xp=xp)


def pad_region(
    x: Array,
    geom: ConvGeometry,
    tile: Tile,
    xp: Namespace,
    *,
    out: Array | None = None,
    mode: str = "zeros",
) -> Array:
    """``pad_input(x)[tile.batch, :, tile.rows]`` without padding the rest of ``x``.

    Only the tile's own band of ``x`` is copied, with the zeros around it,
    into ``out`` (a buffer from :func:`xpconv._backend.workspace_buffer`)
    where the backend has one. A tile's padded input is a fraction of its
    columns, so it is still in cache when im2col reads it, and the whole
    padded input is never allocated.

    A padding ``mode`` other than 'zeros' fills the borders from the values
    just copied (:func:`xpconv._padding.fill_borders`); only for tiles of
    whole samples, whose mirrored or wrapped values are all in the tile.
    """
    if mode != "zeros":
        # Planned for whole samples only (_engine._gemm_pads_with_modes).
        assert tile.band.stop - tile.band.start == geom.out_size[0]
        return _pad_samples(x[tile.batch, ...], geom, xp, out, mode)
    rows, (lo, _) = tile.rows, geom.pad[0]
    size = rows.stop - rows.start
    first = rows.start - lo  # the band's first row, in x's coordinates
    above = min(max(-first, 0), size)  # rows of the band in the padding before x
    below = min(max(first + size - geom.in_size[0], 0), size - above)  # and after it
    if above + below == size:  # the band lies wholly in the padding (padding >= kernel)
        # zeros outright: Dask cannot pad an array with no rows
        n = tile.batch.stop - tile.batch.start
        shape = (n, geom.in_channels, size, *geom.padded_size[1:])
        return xp.zeros(shape, dtype=x.dtype, device=device_of(x=x))
    part = x[tile.batch, :, first + above : first + size - below, ...]
    pads = ((above, below), *geom.pad[1:])
    if not any(lo or hi for lo, hi in pads):
        return part
    fast = padded_rows(part, pads, 0, out)
    if fast is not None:
        return xp.reshape(fast, (part.shape[0], part.shape[1], size, *geom.padded_size[1:]))
    return xpx.pad(part, ((0, 0), (0, 0), *pads), xp=xp)


def _pad_samples(
    samples: Array, geom: ConvGeometry, xp: Namespace, out: Array | None, mode: str
) -> Array:
    """Whole samples padded with ``mode``: in ``out`` where there is one, else a copy."""
    fill = functools.partial(fill_borders, pads=geom.pad, mode=mode, xp=xp)
    fast = padded_rows(samples, geom.pad, 0, out, fill)
    if fast is None:
        return pad(samples, geom.pad, mode, xp)
    return xp.reshape(fast, (samples.shape[0], samples.shape[1], *geom.padded_size))


def _stacked_windows(padded: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """The generic GEMM-order im2col: (C, K, n, *out_size) from a (n, C, *padded) input."""
    axes = (1, 0, *range(2, padded.ndim))
    by_channel = xp.permute_dims(padded, axes)  # a view on every backend
    windows = [
        by_channel[_spatial(window_slices(geom, offset))] for offset in kernel_offsets(geom.kernel)
    ]
    return xp.stack(windows, axis=1)


def im2col_gemm(
    padded: Array,
    geom: ConvGeometry,
    xp: Namespace,
    *,
    out: Array | None = None,
    ones_row: bool = False,
    native: bool = True,
) -> Array:
    """Columns in GEMM order (C*K, n*L) from an already padded input.

    ``padded`` is (n, C, *padded_size) with the padding applied
    (:func:`pad_input`, or :func:`pad_region` for a tile), and ``geom`` its
    geometry (a tile's own, :class:`xpconv._tiles.Tile`). Row order
    (channel, kernel offset); column order (sample, output position).
    ``out`` is an optional flat scratch buffer that the native strided copy
    (``native``, NumPy and CuPy) writes into.

    With ``ones_row`` a row of ones is appended (C*K + 1 rows), so that a
    weight matrix with the bias as its last column adds the bias within the
    matrix product, and the weight gradient's last column is the bias gradient.
    """
    if native:
        fast = window_copy(padded, geom, out, ones_row=ones_row)
        if fast is not None:
            return fast
    n, c = padded.shape[0], padded.shape[1]
    stacked = _stacked_windows(padded, geom, xp)  # the one copy
    cols = xp.reshape(stacked, (c * geom.kernel_volume, n * geom.out_volume))
    if not ones_row:
        return cols
    ones = xp.ones((1, cols.shape[1]), dtype=cols.dtype, device=device_of(cols=cols))
    return xp.concat((cols, ones), axis=0)


def _clipped(first: int, step: int, count: int, size: int) -> tuple[int, int, int]:
    """Window positions t in [0, count) whose input position ``first + step*t`` is in [0, size).

    Returns (t_lo, t_hi, input position of t_lo); t_hi <= t_lo when there are none.
    """
    t_lo = max(0, -(first // step))  # ceil(-first / step)
    t_hi = min(count, -((first - size) // step))  # ceil((size - first) / step)
    return t_lo, t_hi, first + step * t_lo


def _clipped_window(first: int, step: int, count: int, size: int) -> tuple[slice, slice] | None:
    """The positions of a window that fall inside [0, size), and where they land.

    Returns (positions in the window, the strided slice of the input they
    reach), or None when the whole window lies in the padding.
    """
    t_lo, t_hi, p = _clipped(first, step, count, size)
    if t_hi <= t_lo:
        return None
    return slice(t_lo, t_hi), slice(p, p + step * (t_hi - t_lo - 1) + 1, step)


def covering_tap(geom: ConvGeometry) -> tuple[int, ...] | None:
    """A kernel offset whose window covers every input position once, if there is one.

    With stride 1 the window of an offset is a shifted copy of the output
    grid; when it spans the whole input (``padding="same"``: the centre tap),
    col2im can start by assigning that offset's block instead of adding every
    offset into a zeroed gradient.
    """
    if any(s != 1 for s in geom.stride):
        return None
    tap = []
    for k, d, n, o, (lo, _) in zip(
        geom.kernel, geom.dilation, geom.in_size, geom.out_size, geom.pad, strict=True
    ):
        fits = [i for i in range(k) if i * d - lo <= 0 and i * d - lo + o >= n]
        if not fits:
            return None
        tap.append(fits[0])
    return tuple(tap)


def col2im_gemm(
    cols: Array,
    tile: Tile,
    geom: ConvGeometry,
    xp: Namespace,
    grad_x: Array,
    *,
    assign: tuple[int, ...] | None = None,
) -> Array:
    """Add one tile's GEMM-order columns (C*K, n*L) into the input gradient ``grad_x``.

    The adjoint of :func:`pad_region` followed by :func:`im2col_gemm`:
    ``grad_x`` is the (N, C, *in_size) gradient without padding. Each kernel
    offset's window is clipped to the input, so the padding is never
    written, allocated or cropped. Where the backend has views (NumPy, CuPy,
    torch) the K slices are added straight into ``grad_x``, and ``assign`` (a
    :func:`covering_tap`, for a tile of whole samples) is written first
    instead of added, so ``grad_x`` needs no zeros; otherwise they are summed
    in a temporary that is added into ``grad_x`` functionally. Returns the
    updated ``grad_x``.
    """
    sub = tile.geom
    lo0 = geom.pad[0][0]
    row0 = max(tile.rows.start - lo0, 0)  # the band, in x's rows
    row1 = min(tile.rows.stop - lo0, geom.in_size[0])
    if row1 <= row0:  # the band lies wholly in the padding: nothing reaches x
        return grad_x
    n, c = sub.batch, geom.in_channels
    region = (row1 - row0, *geom.in_size[1:])
    # Where each offset's window starts, relative to the region, before clipping.
    starts = (tile.rows.start - lo0 - row0, *(-lo for lo, _ in geom.pad[1:]))
    blocks = xp.reshape(cols, (c, *sub.kernel, n, *sub.out_size))
    mutable = is_mutable(grad_x)
    assign = assign if mutable else None  # assigning needs a view to write through
    if mutable:  # (C, n, *region): a view of grad_x
        part = grad_x[tile.batch, :, row0:row1, ...]
        target = xp.permute_dims(part, (1, 0, *range(2, part.ndim)))
    else:
        target = xp.zeros((c, n, *region), dtype=cols.dtype, device=device_of(cols=cols))
    # Per axis and kernel index: the window's positions that reach x (a slice
    # of the block) and where they land (a strided slice of x), or None.
    windows = [
        [_clipped_window(start + i * d, s, o, size) for i in range(k)]
        for start, k, d, s, o, size in zip(
            starts, sub.kernel, sub.dilation, sub.stride, sub.out_size, region, strict=True
        )
    ]
    offsets = kernel_offsets(sub.kernel)
    if assign is not None:
        offsets.remove(assign)
        offsets.insert(0, assign)
    for k, offset in enumerate(offsets):
        per_axis = [windows[axis][i] for axis, i in enumerate(offset)]
        if None in per_axis:  # this offset only sees padding
            continue
        dest = tuple(window[1] for window in per_axis)  # type: ignore[index]
        block = blocks[(slice(None), *offset, slice(None), *(w[0] for w in per_axis))]  # type: ignore[index]
        if k == 0 and assign is not None:
            set_into(target, _spatial(dest), block)  # covers the whole target: no zeros needed
        else:
            target = add_into(target, _spatial(dest), block)
    if mutable:
        return grad_x
    key = (tile.batch, slice(None), slice(row0, row1), ...)
    return add_into(grad_x, key, xp.permute_dims(target, (1, 0, *range(2, target.ndim))))


def im2col(x: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """Copy the receptive fields of ``x`` (N, C, *spatial) into (N, C*K, L).

    The row order is (channel, kernel offset), as in
    ``torch.nn.functional.unfold`` and in a (O, C, *kernel) weight reshaped
    to (O, C*K).
    """
    padded = pad_input(x, geom, xp)
    windows = [
        padded[_spatial(window_slices(geom, offset))] for offset in kernel_offsets(geom.kernel)
    ]
    stacked = xp.stack(windows, axis=2)  # (N, C, K, *out_size): the one copy
    return xp.reshape(stacked, (geom.batch, geom.column_rows, geom.out_volume))


def _crop(padded: Array, geom: ConvGeometry) -> Array:
    if not geom.is_padded:
        return padded
    inside = tuple(slice(lo, lo + n) for n, (lo, _) in zip(geom.in_size, geom.pad, strict=True))
    return padded[_spatial(inside)]


def _flat_window_index(geom: ConvGeometry, xp: Namespace, device: Any) -> Array:
    """Flat index into the padded input of every (kernel offset, output position) pair."""
    rank, padded = geom.rank, geom.padded_size
    index = None
    for axis in range(rank):
        # The position along this axis, broadcast over (*kernel, *out_size).
        tap = [1] * (2 * rank)
        tap[axis] = geom.kernel[axis]
        step = [1] * (2 * rank)
        step[rank + axis] = geom.out_size[axis]
        taps = xp.reshape(xp.arange(geom.kernel[axis], device=device), tuple(tap))
        steps = xp.reshape(xp.arange(geom.out_size[axis], device=device), tuple(step))
        position = taps * geom.dilation[axis] + steps * geom.stride[axis]
        index = position if index is None else index * padded[axis] + position
    return xp.reshape(index, (-1,))


def col2im(
    cols: Array, geom: ConvGeometry, xp: Namespace, *, strategy: Col2imStrategy = "slices"
) -> Array:
    """Sum the columns (N, C*K, L) back into an image (N, C, *in_size).

    The adjoint of :func:`im2col`: ``sum(im2col(x) * cols) == sum(x * col2im(cols))``.
    """
    n, c = geom.batch, geom.in_channels
    dev = device_of(cols=cols)
    if strategy == "slices":
        blocks = xp.reshape(cols, (n, c, *geom.kernel, *geom.out_size))
        out = xp.zeros((n, c, *geom.padded_size), dtype=cols.dtype, device=dev)
        for offset in kernel_offsets(geom.kernel):
            block = blocks[(slice(None), slice(None), *offset, ...)]
            out = add_into(out, _spatial(window_slices(geom, offset)), block)
        return _crop(out, geom)
    if strategy == "scatter":
        index = _flat_window_index(geom, xp, dev)
        flat = xp.zeros((n, c, math.prod(geom.padded_size)), dtype=cols.dtype, device=dev)
        values = xp.reshape(cols, (n, c, geom.kernel_volume * geom.out_volume))
        flat = scatter_add(flat, index, values)
        return _crop(xp.reshape(flat, (n, c, *geom.padded_size)), geom)
    msg = f"strategy must be 'slices' or 'scatter', got {strategy!r}"
    raise ValueError(msg)
