"""Shifted planes: the layout shared by the stride-1 kernels that skip im2col.

For a stride-1 convolution, output position ``p`` reads input position
``p + i*d`` through kernel offset ``i`` (every spatial axis at once). Lay the
zero-padded planes (volumes, signals) of one channel, its samples one after
the other, out as one flat row of ``n*prod(padded)`` values: then that input
position sits at the output position's flat index plus a fixed shift
``sum_a i_a*d_a*prod(padded[a+1:])``, whatever the sample. So on an output
grid of the padded size ("virtual" output: its positions past ``out_size``
are computed and thrown away), offset ``i`` of every output position of
every sample is one contiguous slice of the row::

    row[shift : shift + n*prod(padded)]

The thrown-away positions read across into the next row or plane or into a
zero tail of ``reach`` (the largest shift) values that ends each row, never
outside it. :mod:`xpconv._depthwise` multiplies those slices by one weight
per channel.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import array_api_extra as xpx

from xpconv._backend import device_of, padded_rows
from xpconv._im2col import kernel_offsets
from xpconv._padding import fill_borders, pad

if TYPE_CHECKING:
    from xpconv._geometry import ConvGeometry

__all__ = ["Layout", "chunk_planes", "layout", "on_grid", "shifted_rows"]

Array = Any
Namespace = Any
Pads = tuple[tuple[int, int], ...]


class Layout(NamedTuple):
    """The padded grid and the kernel offsets' shifts on it."""

    padded: tuple[int, ...]
    out_size: tuple[int, ...]
    offsets: tuple[int, ...]  # flat shift of each kernel offset, in the weight's row-major order

    @property
    def plane(self) -> int:
        return math.prod(self.padded)

    @property
    def reach(self) -> int:
        return self.offsets[-1]

    def valid(self, grid: Array) -> Array:
        """The real outputs of a (..., *padded) grid: its first ``out_size`` positions."""
        return grid[(..., *(slice(0, o) for o in self.out_size))]


@functools.lru_cache(maxsize=64)
def layout(geom: ConvGeometry) -> Layout:
    """The layout of ``geom`` (cached: every chunk of a call asks for it)."""
    padded = geom.padded_size
    # Row-major strides of the padded grid, in elements.
    strides = [math.prod(padded[axis + 1 :]) for axis in range(geom.rank)]
    offsets = tuple(
        sum(i * d * st for i, d, st in zip(offset, geom.dilation, strides, strict=True))
        for offset in kernel_offsets(geom.kernel)
    )
    return Layout(padded, geom.out_size, offsets)


def chunk_planes(a: Array, samples: slice, channels: slice, xp: Namespace) -> Array:
    """A chunk of an (N, C, *spatial) array as (c, n, *spatial) planes, channel-major (a view)."""
    return xp.permute_dims(a[samples, channels, ...], (1, 0, *range(2, a.ndim)))


def _padded(
    planes: Array, pads: Pads, tail: int, buf: Array | None, xp: Namespace, mode: str = "zeros"
) -> Array:
    """(c, n, *spatial) planes padded to (c, n*prod(padded) + tail): samples, then zeros.

    ``mode`` pads the planes (:mod:`xpconv._padding`); the tail is zeros whatever the mode.
    """
    if mode != "zeros":
        fill = functools.partial(fill_borders, pads=pads, mode=mode, xp=xp)
        rows = padded_rows(planes, pads, tail, buf, fill)
        if rows is None:  # no buffer: a padded copy, then the zero tail
            planes, pads = pad(planes, pads, mode, xp), tuple((0, 0) for _ in pads)
    else:
        rows = padded_rows(planes, pads, tail, buf)
    if rows is not None:
        return rows
    c, n = planes.shape[0], planes.shape[1]
    if math.prod(planes.shape[2:]) == 0:  # all padding (Dask cannot pad an empty array)
        sizes = zip(planes.shape[2:], pads, strict=True)
        size = n * math.prod(s + lo + hi for s, (lo, hi) in sizes)
        return xp.zeros((c, size + tail), dtype=planes.dtype, device=device_of(x=planes))
    padded = xpx.pad(planes, ((0, 0), (0, 0), *pads), xp=xp)
    flat = xp.reshape(padded, (planes.shape[0], -1))
    if tail == 0:
        return flat
    zeros = xp.zeros((planes.shape[0], tail), dtype=planes.dtype, device=device_of(x=planes))
    return xp.concat((flat, zeros), axis=1)


def shifted_rows(
    planes: Array, pads: Pads, lay: Layout, buf: Array | None, xp: Namespace, mode: str = "zeros"
) -> Array:
    """Input planes as rows (c, n*plane + reach); offset t is ``[:, shift_t:shift_t + n*plane]``.

    Padded with ``mode`` while they are copied: a padding mode costs no
    padded copy of the whole input (the planes are copied anyway;
    ``docs/performance.md``, design-depthwise-modes).
    """
    return _padded(planes, pads, lay.reach, buf, xp, mode)


def on_grid(planes: Array, lay: Layout, buf: Array | None, xp: Namespace) -> Array:
    """Output-gradient planes (c, n, *out_size) on the padded grid, (c, n*plane).

    Zero at the thrown-away positions, so that products with the shifted
    input rows add nothing there.
    """
    pads = tuple((0, p - o) for p, o in zip(lay.padded, lay.out_size, strict=True))
    return _padded(planes, pads, 0, buf, xp)
