"""Boundary extension for :func:`xpconv.signal.convolve2d`: 'fill', 'wrap' and 'symm'.

SciPy's ``convolve2d`` reads ``in1`` outside its bounds as ``fillvalue``
('fill'), periodically ('wrap') or mirrored with the edge value repeated
('symm': ``x[-1] = x[0]``, period ``2n``). Extending ``in1`` by the kernel's
reach turns each of them into a 'valid' convolution of the extended input.
Extensions longer than the input repeat the pattern, as SciPy does.

Written with slices and concatenation only, so it runs on every array API
library. TODO(padding modes): the engine is gaining padding modes of its own
(reflect, replicate, circular); once it has them, 'wrap' and 'symm' can pass
through it instead and skip this copy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BOUNDARIES", "extend"]

Array = Any
Namespace = Any

#: SciPy's names for each boundary rule.
BOUNDARIES = {
    "fill": "fill",
    "pad": "fill",
    "wrap": "wrap",
    "circular": "wrap",
    "symm": "symm",
    "symmetric": "symm",
}


def extend(
    x: Array,
    pads: tuple[tuple[int, int], ...],
    boundary: str,
    fillvalue: Array,
    xp: Namespace,
) -> Array:
    """``x`` extended by ``pads[d] = (before, after)`` values along each axis ``d``."""
    for axis, (before, after) in enumerate(pads):
        if before or after:
            x = _extend_axis(x, axis, before, after, boundary, fillvalue, xp)
    return x


def _extend_axis(
    x: Array, axis: int, before: int, after: int, boundary: str, fillvalue: Array, xp: Namespace
) -> Array:
    if boundary == "fill":
        parts = [_filled(x, axis, n, fillvalue, xp) for n in (before, after)]
        return xp.concat([parts[0], x, parts[1]], axis=axis)
    # 'wrap' repeats x, 'symm' repeats x followed by x reversed (edge included).
    unit = x if boundary == "wrap" else xp.concat([x, xp.flip(x, axis=axis)], axis=axis)
    period = unit.shape[axis]
    copies_before = -(-before // period)
    copies = copies_before + -(-(x.shape[axis] + after) // period)
    tiled = xp.concat([unit] * copies, axis=axis) if copies > 1 else unit
    start = copies_before * period - before
    key = [slice(None)] * x.ndim
    key[axis] = slice(start, start + before + x.shape[axis] + after)
    return tiled[tuple(key)]


def _filled(x: Array, axis: int, n: int, fillvalue: Array, xp: Namespace) -> Array:
    shape = list(x.shape)
    shape[axis] = n
    return xp.broadcast_to(fillvalue, tuple(shape))
