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
"""

from __future__ import annotations

from typing import Any, Literal

import array_api_extra as xpx

from xpconv._backend import add_into, device_of, scatter_add
from xpconv._geometry import ConvGeometry

__all__ = ["col2im", "im2col"]

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
