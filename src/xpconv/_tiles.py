"""Tiles: the pieces of a convolution whose im2col columns fit in the workspace limit.

The batch is cut into chunks of samples and, when one sample alone is larger
than the limit (:mod:`xpconv._workspace`), its output into bands along the
first spatial axis (rows of an image, slices of a volume, stretches of a
signal). Each tile carries its own geometry, so the kernels treat it as a
small convolution of its own: its samples, the band of the padded input it
reads, and its band of the output.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xpconv._geometry import ConvGeometry

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Tile", "Tiling", "even_split", "plan_tiles"]


def even_split(total: int, most: int) -> list[slice]:
    """Split ``range(total)`` into the fewest near-equal pieces of at most ``most``."""
    size = _piece_size(total, most)
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def _piece_size(total: int, most: int) -> int:
    count = math.ceil(total / max(most, 1))
    return max(math.ceil(total / max(count, 1)), 1)


@dataclass(frozen=True)
class Tile:
    """One piece of a convolution.

    ``batch`` are its samples, ``band`` its output positions along the first
    spatial axis and ``rows`` the positions of the *padded* input that those
    outputs read along that axis. ``geom`` is the tile's own geometry: the
    padded input band with no further padding, and its band of the output.
    """

    batch: slice
    band: slice
    rows: slice
    geom: ConvGeometry

    @property
    def output_key(self) -> tuple[Any, ...]:
        """The tile's region of the (N, O, *out_size) output."""
        return (self.batch, slice(None), self.band, ...)


@dataclass(frozen=True)
class Tiling:
    """The tiles of a convolution, made one at a time as they are iterated.

    Tiles of ``samples`` whole samples each, or (``band`` less than the whole
    first output axis) bands of one sample. Lazy, so that planning costs the
    same whatever the number of tiles.
    """

    geom: ConvGeometry
    samples: int
    band: int

    @property
    def whole_samples(self) -> bool:
        """True when every tile holds whole samples (no band of an output axis)."""
        return self.band >= self.geom.out_size[0]

    @functools.cached_property
    def largest(self) -> Tile:
        """A tile with the most samples and output positions (to size buffers for)."""
        return self._tile(0, 0)

    def __len__(self) -> int:
        geom = self.geom
        bands = math.ceil(geom.out_size[0] / self.band)
        return math.ceil(geom.batch / self.samples) * bands

    def __iter__(self) -> Iterator[Tile]:
        if len(self) == 1:
            yield self.largest
            return
        for start in range(0, self.geom.batch, self.samples):
            for first in range(0, self.geom.out_size[0], self.band):
                yield self._tile(start, first)

    def _tile(self, start: int, first: int) -> Tile:
        geom = self.geom
        batch = slice(start, min(start + self.samples, geom.batch))
        band = slice(first, min(first + self.band, geom.out_size[0]))
        s, d, k = geom.stride[0], geom.dilation[0], geom.kernel[0]
        rows = slice(band.start * s, (band.stop - 1) * s + d * (k - 1) + 1)
        sub = ConvGeometry(  # not dataclasses.replace: this runs for every tile
            batch=batch.stop - batch.start,
            in_channels=geom.in_channels,
            out_channels=geom.out_channels,
            groups=geom.groups,
            in_size=(rows.stop - rows.start, *geom.padded_size[1:]),
            kernel=geom.kernel,
            stride=geom.stride,
            dilation=geom.dilation,
            pad=((0, 0),) * geom.rank,
            out_size=(band.stop - band.start, *geom.out_size[1:]),
        )
        return Tile(batch, band, rows, sub)


def plan_tiles(geom: ConvGeometry, band_bytes: int, limit: int | None) -> Tiling:
    """Cut a convolution into tiles whose columns take at most ``limit`` bytes.

    ``band_bytes`` is the size of the columns of one sample's outputs at one
    position of the first spatial axis (one output row of an image). Whole
    samples are kept together whenever one sample fits; otherwise a sample is
    cut into bands, and a single position is the smallest band, whatever the
    limit. ``limit=None`` gives one tile.
    """
    first = geom.out_size[0]
    per_sample = band_bytes * first
    if limit is None or per_sample * geom.batch <= limit:
        return Tiling(geom, max(geom.batch, 1), first)
    if per_sample <= limit:
        return Tiling(geom, _piece_size(geom.batch, limit // per_sample), first)
    return Tiling(geom, 1, _piece_size(first, limit // max(band_bytes, 1)))
