"""The 2-D functions of :mod:`xpconv.signal`: SciPy's boundary rules as a 'valid' problem.

``convolve2d`` and ``correlate2d`` read ``in1`` past its edges by a
boundary rule; extending ``in1`` by the kernel's reach
(:func:`xpconv._signal_pad.extend`) turns 'full' and 'same' into a 'valid'
correlation of the extended input, which :mod:`xpconv._signal_core` solves
like any other. 'fill' with a zero ``fillvalue`` needs no extension: it is
the zero padding of the ordinary modes.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from xpconv import _signal_core as core
from xpconv._backend import device_of, namespace_of
from xpconv._signal_pad import BOUNDARIES, extend

__all__ = ["solve2d"]

Array = Any


def solve2d(
    in1: Array, in2: Array, op: str, mode: str, boundary: Any, fillvalue: Any, method: str
) -> Array:
    """``convolve2d`` (``op='convolve'``) or ``correlate2d`` (``op='correlate2d'``), checked."""
    name = "convolve2d" if op == "convolve" else "correlate2d"
    namespace_of(in1=in1, in2=in2)  # arrays of one library, before their shapes are read
    if in1.ndim != 2 or in2.ndim != 2:
        msg = f"{name} needs 2-D in1 and in2, got shapes {tuple(in1.shape)} and {tuple(in2.shape)}"
        raise ValueError(msg)
    if not isinstance(boundary, str) or boundary not in BOUNDARIES:
        msg = (
            "boundary must be 'fill', 'wrap' or 'symm' (or 'pad', 'circular', 'symmetric'), "
            f"got {boundary!r}"
        )
        raise ValueError(msg)
    method = core.check_method(method)
    problem, xp = core.prepare(in1, in2, op=op, mode=mode, axes=None)
    fill = _fill_value(fillvalue, problem, xp)
    rule = BOUNDARIES[boundary]
    if problem.mode != "valid" and not (rule == "fill" and fill == 0):
        problem = _extended(problem, rule, fill, xp)
    return core.solve(problem, method, xp)


def _extended(problem: core.Problem, rule: str, fill: Any, xp: Any) -> core.Problem:
    """The same problem as a 'valid' one on `in1` extended past its edges by `rule`."""
    if problem.mode == "full":
        pads = tuple((k - 1, k - 1) for k in problem.kernel_size)
    else:
        pairs = zip(problem.kernel_size, problem.same_start, strict=True)
        pads = tuple((k - 1 - s, s) for k, s in pairs)
    device = device_of(in1=problem.volume)
    fill_array = xp.asarray(fill, dtype=problem.volume.dtype, device=device)
    volume = extend(problem.volume, pads, rule, fill_array, xp)
    return dataclasses.replace(problem, volume=volume, mode="valid")


def _fill_value(fillvalue: Any, problem: core.Problem, xp: Any) -> Any:
    """`fillvalue` as a Python number of the result's kind (SciPy's checks)."""
    value = fillvalue
    if not isinstance(value, numbers.Number):
        try:
            flat = xp.reshape(xp.asarray(value), (-1,))
        except Exception:
            flat = None
        if flat is None or flat.shape[0] != 1:
            msg = f"fillvalue must be a scalar or an array with one element, got {fillvalue!r}"
            raise ValueError(msg)
        value = complex(flat[0]) if xp.isdtype(flat.dtype, "complex floating") else float(flat[0])
    if isinstance(value, complex) and not problem.complex:
        if value.imag != 0:
            msg = f"fillvalue={fillvalue!r} is complex but the result dtype {problem.dtype} is real"
            raise ValueError(msg)
        value = value.real
    if xp.isdtype(problem.dtype, "integral"):
        value = int(value.real if isinstance(value, complex) else value)
    return value
