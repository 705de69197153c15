"""Shifted planes: the layout shared by the stride-1 kernels that skip im2col.

For a stride-1 convolution, output pixel (oh, ow) reads input pixel
(oh + i*dh, ow + j*dw) through kernel tap (i, j). Lay the zero-padded planes
of one channel (its samples one after the other) out as one flat row of
``n*Hp*Wp`` values: then that input pixel sits at position ``oh*Wp + ow``
plus a fixed shift ``i*dh*Wp + j*dw``, whatever the sample. So on an output
grid of the padded size ("virtual" output: its columns ``ow >= OW`` and rows
``oh >= OH`` are computed and thrown away), tap (i, j) of every output pixel
of every sample is one contiguous slice of the row::

    row[shift : shift + n*Hp*Wp]

The thrown-away positions read across into the next plane or into a zero
tail of ``reach`` (the largest shift) values that ends each row, never
outside it. :mod:`xpconv._depthwise` multiplies those slices by one weight
per channel. (An implicit GEMM, a (O, C) weight matrix per tap on the same
slices, was measured and not adopted: ``docs/how-it-works.md``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import array_api_extra as xpx

from xpconv._backend import device_of, padded_rows, workspace_buffer

if TYPE_CHECKING:
    from xpconv._geometry import ConvGeometry

__all__ = ["Layout", "chunk_planes", "layout", "on_grid", "row_buffer", "shifted_rows"]

Array = Any
Namespace = Any


class Layout(NamedTuple):
    """The padded grid and the kernel taps' shifts on it."""

    hp: int
    wp: int
    oh: int
    ow: int
    offsets: list[int]  # flat shift of each tap (i, j), in the weight's row-major order

    @property
    def plane(self) -> int:
        return self.hp * self.wp

    @property
    def reach(self) -> int:
        return self.offsets[-1]


def layout(geom: ConvGeometry) -> Layout:
    (kh, kw), (dh, dw) = geom.kernel_hw, geom.dilation
    hp, wp = geom.padded_hw
    offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
    return Layout(hp, wp, *geom.out_hw, offsets)


def chunk_planes(a: Array, samples: slice, channels: slice, xp: Namespace) -> Array:
    """The (c, n, H, W) planes of a chunk of an (N, C, H, W) array, channel-major (a view)."""
    return xp.permute_dims(a[samples, channels, ...], (1, 0, 2, 3))


def row_buffer(like: Array, channels: int, samples: int, lay: Layout) -> Array | None:
    """A reused buffer for :func:`shifted_rows` of up to ``channels`` x ``samples`` planes."""
    return workspace_buffer(like, channels * (samples * lay.plane + lay.reach))


def _padded(
    planes: Array, pads: tuple[int, int, int, int], tail: int, buf: Array | None, xp: Namespace
) -> Array:
    """(c, n, H, W) planes zero-padded to (c, n*Hp*Wp + tail): each row its samples, then zeros."""
    rows = padded_rows(planes, pads, tail, buf)
    if rows is not None:
        return rows
    top, bottom, left, right = pads
    padded = xpx.pad(planes, ((0, 0), (0, 0), (top, bottom), (left, right)), xp=xp)
    flat = xp.reshape(padded, (planes.shape[0], -1))
    if tail == 0:
        return flat
    zeros = xp.zeros((planes.shape[0], tail), dtype=planes.dtype, device=device_of(x=planes))
    return xp.concat((flat, zeros), axis=1)


def shifted_rows(
    planes: Array, pads: tuple[int, int, int, int], lay: Layout, buf: Array | None, xp: Namespace
) -> Array:
    """Input planes as rows (c, n*Hp*Wp + reach): tap t is ``[:, shift_t : shift_t + n*Hp*Wp]``."""
    return _padded(planes, pads, lay.reach, buf, xp)


def on_grid(planes: Array, lay: Layout, buf: Array | None, xp: Namespace) -> Array:
    """Output-gradient planes (c, n, OH, OW) on the padded grid, (c, n*Hp*Wp).

    Zero at the thrown-away positions, so that products with the shifted
    input rows add nothing there.
    """
    return _padded(planes, (0, lay.hp - lay.oh, 0, lay.wp - lay.ow), 0, buf, xp)
