"""im2col and col2im, written once in array-API code for every backend.

A convolution is a matrix product once every receptive field of the input has
been copied out as a column ("im2col")::

    x (N, C, H, W)  --im2col-->  cols (N, C*KH*KW, OH*OW)
    y = weight.reshape(O, C*KH*KW) @ cols          # (N, O, OH*OW)

The column for output pixel (oh, ow) holds ``x[n, c, oh*s + i*d, ow*s + j*d]``
for every channel c and kernel offset (i, j). For a fixed offset (i, j) those
pixels form a *strided slice* of the padded input, so im2col is KH*KW slices
stacked together: no index arrays, no fancy indexing, which is what lets the
same code run on NumPy, CuPy, torch, JAX, Dask and array-api-strict.

col2im is the adjoint: every column entry is added back to the pixel it came
from. Pixels covered by several windows receive several contributions, which is
why col2im is a *scatter-add*. Within one kernel offset no pixel repeats, so
adding the KH*KW slices one after the other is a scatter-add without atomics
("slices", the default). The alternative ("scatter") builds flat pixel indices
and hands them to the backend's native scatter-add (``np.add.at``,
``cupyx.scatter_add``, ``index_add_``, ``.at[].add``) through
:mod:`xpconv._backend`.

The convolution kernels use the same slices in *GEMM order*
(:func:`im2col_gemm`, :func:`col2im_gemm`): columns (C*KH*KW, N*OH*OW), i.e.
axes (C, KH, KW, N, OH, OW). Then the forward pass, the weight gradient and
the column gradient are each ONE matrix product over the whole batch (long,
contiguous operands: the BLAS runs at full speed, no per-sample loop, no
transposed copy of the columns), and only the much smaller output and output
gradient are transposed between (N, O, ...) and (O, N, ...). Measured on the
2-core CPU machine (float32, NumPy + OpenBLAS): 15-25% less time than the
(N, C*KH*KW, OH*OW) layout with a per-sample batched matmul on the 3x3 layers.
On NumPy and CuPy the stack of slices is replaced by one strided copy
(:func:`xpconv._backend.window_copy`) into a reused buffer; the result is the
same array, which ``tests/test_fast_paths.py`` checks.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    from xpconv._geometry import ConvGeometry

__all__ = [
    "col2im",
    "col2im_gemm",
    "covering_tap",
    "im2col",
    "im2col_gemm",
    "pad_input",
    "pad_region",
]

Array = Any
Namespace = Any
Col2imStrategy = Literal["slices", "scatter"]


def _window_slices(geom: ConvGeometry, i: int, j: int) -> tuple[slice, slice]:
    """Rows and columns of the padded input seen by kernel offset (i, j).

    The stop is the last index read plus one (not ``start + s*OH``): strict
    array API implementations reject slice stops past the end of an axis.
    """
    (sh, sw), (dh, dw), (oh, ow) = geom.stride, geom.dilation, geom.out_hw
    row0, col0 = i * dh, j * dw
    return (
        slice(row0, row0 + sh * (oh - 1) + 1, sh),
        slice(col0, col0 + sw * (ow - 1) + 1, sw),
    )


def _pad(x: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    top, bottom, left, right = geom.pad
    if top == bottom == left == right == 0:
        return x
    return xpx.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), xp=xp)


def pad_input(x: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """``x`` with ``geom.pad`` zeros around H and W (``x`` itself if there are none)."""
    return _pad(x, geom, xp)


def pad_region(
    x: Array,
    geom: ConvGeometry,
    key: tuple[slice, ...],
    xp: Namespace,
    *,
    out: Array | None = None,
) -> Array:
    """``pad_input(x)[key]`` without padding the rest of ``x``.

    ``key`` is (samples, all channels, rows, all columns) of the padded input:
    one chunk of the work (``functional._tile_geometry``). Only the chunk's
    own rows of ``x`` are copied, with the zeros around them, into ``out``
    (a buffer from :func:`xpconv._backend.workspace_buffer`) where the backend
    has one. A chunk's padded input is a fraction of its columns, so it is
    still in cache when im2col reads it, and the whole padded input (P in
    :mod:`xpconv._workspace`'s peak-memory formula) is never allocated.
    """
    batch, rows = key[0], key[2]
    top, _, left, right = geom.pad
    h = geom.in_hw[0]
    size = rows.stop - rows.start
    first = rows.start - top  # the chunk's first row, in x's coordinates
    above = min(max(-first, 0), size)  # rows of the chunk in the top padding
    below = min(max(first + size - h, 0), size - above)  # and in the bottom padding
    if above + below == size:  # the band lies wholly in the padding (padding >= kernel)
        # zeros outright: Dask cannot pad an array with no rows
        n, c = x[batch, :, 0:0, :].shape[:2]
        return xp.zeros((n, c, size, geom.padded_hw[1]), dtype=x.dtype, device=device_of(x=x))
    part = x[batch, :, first + above : first + size - below, :]
    if above == below == left == right == 0:
        return part
    fast = padded_rows(part, (above, below, left, right), 0, out)
    if fast is not None:
        return xp.reshape(fast, (part.shape[0], part.shape[1], size, geom.padded_hw[1]))
    return xpx.pad(part, ((0, 0), (0, 0), (above, below), (left, right)), xp=xp)


def _stacked_windows(padded: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """The generic GEMM-order im2col: (C, KH*KW, n, OH, OW) from a (n, C, Hp, Wp) input."""
    kh, kw = geom.kernel_hw
    by_channel = xp.permute_dims(padded, (1, 0, 2, 3))  # a view on every backend
    windows = [
        by_channel[(slice(None), slice(None), *_window_slices(geom, i, j))]
        for i in range(kh)
        for j in range(kw)
    ]
    return xp.stack(windows, axis=1)


def im2col_gemm(
    padded: Array,
    geom: ConvGeometry,
    xp: Namespace,
    *,
    out: Array | None = None,
    ones_row: bool = False,
) -> Array:
    """Columns in GEMM order (C*KH*KW, n*OH*OW) from an already padded input.

    ``padded`` is (n, C, Hp, Wp) with the padding applied (:func:`pad_input`,
    or :func:`pad_region` for a chunk);
    only ``geom.kernel_hw``, ``stride``, ``dilation`` and ``out_hw`` are used,
    so a batch chunk or a band of output rows is passed with a geometry whose
    ``out_hw`` describes that band. ``out`` is an optional flat scratch buffer
    that backends with a fast path write into (:func:`xpconv._backend.window_copy`).
    Row order (channel, kernel row, kernel column); column order (sample,
    output row, output column).

    With ``ones_row`` a row of ones is appended (C*KH*KW + 1 rows), so that a
    weight matrix with the bias as its last column adds the bias within the
    matrix product, and the weight gradient's last column is the bias gradient:
    one pass over the output (gradient) fewer.
    """
    fast = window_copy(padded, geom, out, ones_row=ones_row)
    if fast is not None:
        return fast
    n, c = padded.shape[0], padded.shape[1]
    stacked = _stacked_windows(padded, geom, xp)  # the one copy
    cols = xp.reshape(stacked, (c * geom.kernel_area, n * geom.out_area))
    if not ones_row:
        return cols
    ones = xp.ones((1, cols.shape[1]), dtype=cols.dtype, device=device_of(cols=cols))
    return xp.concat((cols, ones), axis=0)


def _clipped(first: int, step: int, count: int, size: int) -> tuple[int, int, int]:
    """Window positions t in [0, count) whose pixel ``first + step*t`` lies in [0, size).

    Returns (t_lo, t_hi, pixel of t_lo); t_hi <= t_lo when there are none.
    """
    t_lo = max(0, -(first // step))  # ceil(-first / step)
    t_hi = min(count, -((first - size) // step))  # ceil((size - first) / step)
    return t_lo, t_hi, first + step * t_lo


def covering_tap(geom: ConvGeometry) -> tuple[int, int] | None:
    """A kernel offset whose window covers every input pixel once, if there is one.

    With stride 1 the window of offset (i, j) is a shifted copy of the output
    grid; when it spans the whole input (``padding="same"``: the centre tap),
    col2im can start by assigning that offset's block instead of adding every
    offset into a zeroed gradient.
    """
    if geom.stride != (1, 1):
        return None
    (kh, kw), (dh, dw), (h, w), (oh, ow) = geom.kernel_hw, geom.dilation, geom.in_hw, geom.out_hw
    top, _, left, _ = geom.pad
    rows = [i for i in range(kh) if i * dh - top <= 0 and i * dh - top + oh >= h]
    cols = [j for j in range(kw) if j * dw - left <= 0 and j * dw - left + ow >= w]
    return (rows[0], cols[0]) if rows and cols else None


def col2im_gemm(
    cols: Array,
    sub: ConvGeometry,
    geom: ConvGeometry,
    xp: Namespace,
    grad_x: Array,
    key: tuple[slice, ...],
    *,
    assign: tuple[int, int] | None = None,
) -> Array:
    """Add GEMM-order columns (C*KH*KW, n*OH*OW) into the input gradient ``grad_x``.

    The adjoint of :func:`pad_region` followed by :func:`im2col_gemm`, for one
    chunk: ``sub`` is the chunk's geometry and ``key`` its region of the
    *padded* input (``functional._tile_geometry``), while ``grad_x`` is the
    (N, C, H, W) gradient without padding. Each kernel offset's window is
    clipped to the input, so the padding is never written, allocated or
    cropped. Where the backend has views (NumPy, CuPy, torch) the KH*KW
    slices are added straight into ``grad_x``, and ``assign`` (a
    :func:`covering_tap`, for a chunk of whole samples) is written first
    instead of added, so ``grad_x`` needs no zeros; otherwise they are summed
    in a temporary that is added into ``grad_x`` functionally. Returns the
    updated ``grad_x``.
    """
    kh, kw = sub.kernel_hw
    (sh, sw), (dh, dw), (oh, ow) = sub.stride, sub.dilation, sub.out_hw
    top, _, left, _ = geom.pad
    h, w = geom.in_hw
    batch, band = key[0], key[2]
    row0, row1 = max(band.start - top, 0), min(band.stop - top, h)  # the band in x's rows
    if row1 <= row0:  # the band lies wholly in the padding: nothing reaches x
        return grad_x
    n, c = sub.batch, geom.in_channels
    blocks = xp.reshape(cols, (c, kh, kw, n, oh, ow))
    mutable = is_mutable(grad_x)
    assign = assign if mutable else None  # assigning needs a view to write through
    if mutable:  # (C, n, rows, W): a view of grad_x
        target = xp.permute_dims(grad_x[batch, :, row0:row1, :], (1, 0, 2, 3))
    else:
        target = xp.zeros((c, n, row1 - row0, w), dtype=cols.dtype, device=device_of(cols=cols))
    offsets = [(i, j) for i in range(kh) for j in range(kw)]
    if assign is not None:
        offsets.remove(assign)
        offsets.insert(0, assign)
    for k, (i, j) in enumerate(offsets):
        t_lo, t_hi, r = _clipped(band.start + i * dh - top - row0, sh, oh, row1 - row0)
        u_lo, u_hi, q = _clipped(j * dw - left, sw, ow, w)
        if t_hi <= t_lo or u_hi <= u_lo:  # this offset only sees padding
            continue
        dest = (
            slice(None),
            slice(None),
            slice(r, r + sh * (t_hi - t_lo - 1) + 1, sh),
            slice(q, q + sw * (u_hi - u_lo - 1) + 1, sw),
        )
        block = blocks[:, i, j, :, t_lo:t_hi, u_lo:u_hi]
        if k == 0 and assign is not None:
            set_into(target, dest, block)  # covers the whole target: no zeros needed
        else:
            target = add_into(target, dest, block)
    if mutable:
        return grad_x
    return add_into(
        grad_x,
        (batch, slice(None), slice(row0, row1), slice(None)),
        xp.permute_dims(target, (1, 0, 2, 3)),
    )


def im2col(x: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """Copy the receptive fields of ``x`` (N, C, H, W) into (N, C*KH*KW, OH*OW).

    The row order is (channel, kernel row, kernel column), as in
    ``torch.nn.functional.unfold`` and in a (O, C, KH, KW) weight reshaped to
    (O, C*KH*KW).
    """
    padded = _pad(x, geom, xp)
    kh, kw = geom.kernel_hw
    windows = [
        padded[(slice(None), slice(None), *_window_slices(geom, i, j))]
        for i in range(kh)
        for j in range(kw)
    ]
    stacked = xp.stack(windows, axis=2)  # (N, C, KH*KW, OH, OW): the one copy
    n, c = geom.batch, geom.in_channels
    return xp.reshape(stacked, (n, c * geom.kernel_area, geom.out_area))


def _crop(padded: Array, geom: ConvGeometry) -> Array:
    top, _, left, _ = geom.pad
    h, w = geom.in_hw
    if padded.shape[2:] == (h, w):
        return padded
    return padded[:, :, top : top + h, left : left + w]


def col2im(
    cols: Array, geom: ConvGeometry, xp: Namespace, *, strategy: Col2imStrategy = "slices"
) -> Array:
    """Sum the columns (N, C*KH*KW, OH*OW) back into an image (N, C, H, W).

    The adjoint of :func:`im2col`: ``sum(im2col(x) * cols) == sum(x * col2im(cols))``.
    """
    n, c = geom.batch, geom.in_channels
    kh, kw = geom.kernel_hw
    oh, ow = geom.out_hw
    hp, wp = geom.padded_hw
    dev = device_of(cols=cols)
    if strategy == "slices":
        blocks = xp.reshape(cols, (n, c, kh, kw, oh, ow))
        out = xp.zeros((n, c, hp, wp), dtype=cols.dtype, device=dev)
        for i in range(kh):
            for j in range(kw):
                key = (slice(None), slice(None), *_window_slices(geom, i, j))
                out = add_into(out, key, blocks[:, :, i, j, :, :])
        return _crop(out, geom)
    if strategy == "scatter":
        sh, sw = geom.stride
        dh, dw = geom.dilation
        # Flat pixel index of every (kernel offset, output pixel) pair, in the
        # (KH, KW, OH, OW) order of the columns' rows.
        ki = xp.reshape(xp.arange(kh, device=dev) * dh, (kh, 1, 1, 1))
        kj = xp.reshape(xp.arange(kw, device=dev) * dw, (1, kw, 1, 1))
        ri = xp.reshape(xp.arange(oh, device=dev) * sh, (1, 1, oh, 1))
        rj = xp.reshape(xp.arange(ow, device=dev) * sw, (1, 1, 1, ow))
        index = xp.reshape((ki + ri) * wp + (kj + rj), (-1,))
        flat = xp.zeros((n, c, hp * wp), dtype=cols.dtype, device=dev)
        values = xp.reshape(cols, (n, c, geom.kernel_area * geom.out_area))
        flat = scatter_add(flat, index, values)
        return _crop(xp.reshape(flat, (n, c, hp, wp)), geom)
    msg = f"strategy must be 'slices' or 'scatter', got {strategy!r}"
    raise ValueError(msg)
