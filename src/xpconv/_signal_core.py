"""The checks and the one code path behind :mod:`xpconv.signal`.

Every function of :mod:`xpconv.signal` becomes one :class:`Problem`: a
cross-correlation ``corr(volume, weight)`` over the last ``rank`` axes, the
batch axes in front and broadcastable, and a mode. SciPy's operations map
onto it as

* ``convolve(in1, in2) = corr(in1, flip(in2))`` (flipped along the convolved axes),
* ``correlate(in1, in2) = corr(in1, conj(in2))``,

and SciPy's 'valid' swap (``convolve`` computes ``convolve(in2, in1)``
when ``in2`` is the larger input in every convolved axis, which is the
same function because convolution commutes) becomes ``corr(flip(weight),
flip(volume))``. ``correlate`` follows ``convolve(in1, flip(conj(in2)))``
there, exactly as SciPy does, so its 'valid' output is the reversed
conjugate of ``correlate(in2, in1)``.

The direct route (:mod:`xpconv._signal_direct`) computes ``corr`` with the
im2col engine; the FFT route (:mod:`xpconv._signal_fft`) with the array API
``fft`` extension; :func:`choose_method` picks the one with the smaller
estimated time.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

from xpconv._backend import default_float_dtype, device_of, namespace_of, values_readable
from xpconv._signal_direct import direct_correlate, direct_time
from xpconv._signal_fft import fft_correlate, fft_time, has_fft

__all__ = ["MODES", "Problem", "choose_method", "prepare", "solve"]

Array = Any
Namespace = Any

MODES = ("full", "same", "valid")
METHODS = ("auto", "direct", "fft")


@dataclass(frozen=True)
class Problem:
    """``corr(volume, weight)`` over the last ``rank`` axes, ready to compute.

    ``volume`` and ``weight`` have the computation dtype (the result dtype,
    or float64 for integer inputs), the convolved axes last and broadcastable
    batch axes in front. ``axes`` are the convolved axes of the caller's
    arrays (non-negative, in increasing order), ``dtype`` the dtype of the
    result. 'same' keeps the full output's values from ``(K - 1 +
    same_shift) // 2`` on along each axis: 0 is SciPy's ``convolve`` and
    ``correlate``, 1 its ``correlate2d``.
    """

    volume: Array
    weight: Array
    mode: str
    rank: int
    axes: tuple[int, ...]
    dtype: Any
    complex: bool
    same_shift: int = 0

    @property
    def volume_size(self) -> tuple[int, ...]:
        return tuple(self.volume.shape[-self.rank :])

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[-self.rank :])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        b1, b2 = self.volume.shape[: -self.rank], self.weight.shape[: -self.rank]
        return tuple(n if m == 1 else m for m, n in zip(b1, b2, strict=True))  # broadcast

    @property
    def volume_batch(self) -> int:
        return math.prod(self.volume.shape[: -self.rank])

    @property
    def weight_batch(self) -> int:
        return math.prod(self.weight.shape[: -self.rank])

    @property
    def batch(self) -> int:
        return math.prod(self.batch_shape)

    @property
    def same_start(self) -> tuple[int, ...]:
        """Where 'same' starts in the full output, along each convolved axis."""
        return tuple((k - 1 + self.same_shift) // 2 for k in self.kernel_size)

    @property
    def out_size(self) -> tuple[int, ...]:
        pairs = zip(self.volume_size, self.kernel_size, strict=True)
        if self.mode == "full":
            return tuple(v + k - 1 for v, k in pairs)
        if self.mode == "same":
            return self.volume_size
        return tuple(v - k + 1 for v, k in pairs)


# --------------------------------------------------------------------------- checks


def check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        msg = f"mode must be 'full', 'same' or 'valid', got {mode!r}"
        raise ValueError(msg)
    return mode


def check_method(method: object) -> str:
    if not isinstance(method, str) or method not in METHODS:
        msg = f"method must be 'auto', 'direct' or 'fft', got {method!r}"
        raise ValueError(msg)
    return method


def result_dtype(in1: Array, in2: Array, xp: Namespace) -> Any:
    """The result type of the inputs, as SciPy gives it; booleans are refused.

    array-api-strict has no promotion between integers and floats; there the
    floating dtype wins, as it does in PyTorch and JAX.
    """
    for name, a in (("in1", in1), ("in2", in2)):
        if not xp.isdtype(a.dtype, ("integral", "real floating", "complex floating")):
            msg = f"{name} must have an integer, real or complex floating dtype, got {a.dtype}"
            raise TypeError(msg)
    try:
        return xp.result_type(in1.dtype, in2.dtype)
    except TypeError:
        floating = [a.dtype for a in (in1, in2) if not xp.isdtype(a.dtype, "integral")]
        return floating[0]


def compute_dtype(dtype: Any, xp: Namespace, device: Any) -> Any:
    """The dtype to compute ``dtype`` results in.

    Integers are computed in float64 (where the library has it) and rounded
    back; half precision in float32 (neither the matrix products nor the
    FFTs of most libraries take it) and narrowed back.
    """
    if xp.isdtype(dtype, "real floating") and xp.finfo(dtype).bits == 16:
        return xp.float32
    if not xp.isdtype(dtype, "integral"):
        return dtype
    info = xp.__array_namespace_info__()
    return info.dtypes(device=device).get("float64", default_float_dtype(xp, device))


def check_axes(axes: object, ndim: int) -> tuple[int, ...]:
    """``axes`` as sorted non-negative axes of ``ndim``-D inputs (``None``: all axes)."""
    if axes is None:
        return tuple(range(ndim))
    listed = [axes] if isinstance(axes, int) else axes
    try:
        normalized = [operator.index(a) for a in listed]  # type: ignore[attr-defined]
    except TypeError:
        msg = f"axes must be None, an int or a sequence of ints, got {axes!r}"
        raise TypeError(msg) from None
    if not normalized or any(not -ndim <= a < ndim for a in normalized):
        msg = f"axes must name at least one axis of the {ndim}-D inputs, got {axes!r}"
        raise ValueError(msg)
    positive = sorted(a % ndim for a in normalized)
    if len(set(positive)) != len(positive):
        msg = f"axes must not repeat an axis, got {axes!r}"
        raise ValueError(msg)
    return tuple(positive)


def check_shapes(in1: Array, in2: Array, axes: tuple[int, ...], mode: str) -> bool:
    """Checks the shapes; returns whether 'valid' swaps the inputs (SciPy's rule)."""
    shape1, shape2 = tuple(in1.shape), tuple(in2.shape)
    for d in axes:
        if shape1[d] == 0 or shape2[d] == 0:
            msg = (
                f"in1 and in2 must not be empty along the convolved axes {axes}, "
                f"got shapes {shape1} and {shape2}"
            )
            raise ValueError(msg)
    for d in set(range(len(shape1))) - set(axes):
        if shape1[d] != shape2[d] and 1 not in (shape1[d], shape2[d]):
            msg = (
                f"in1 and in2 must be broadcastable along the axes not convolved, got shapes "
                f"{shape1} and {shape2} (axis {d}: {shape1[d]} and {shape2[d]}); axes={axes}"
            )
            raise ValueError(msg)
    if mode != "valid":
        return False
    larger1 = all(shape1[d] >= shape2[d] for d in axes)
    larger2 = all(shape2[d] >= shape1[d] for d in axes)
    if not (larger1 or larger2):
        msg = (
            "mode='valid' needs one input at least as large as the other in every convolved "
            f"axis, got shapes {shape1} and {shape2}"
        )
        raise ValueError(msg)
    return not larger1


# --------------------------------------------------------------------------- the problem


def prepare(
    in1: Array, in2: Array, *, op: str, mode: object, axes: object
) -> tuple[Problem, Namespace]:
    """Check the inputs of ``op`` and build its :class:`Problem`.

    ``op`` is 'convolve', 'correlate' or 'correlate2d'. SciPy's
    ``correlate2d`` differs from ``correlate`` twice: 'same' is centred
    half a sample later for even kernels, and its 'valid' swap returns the
    reversed ``correlate2d(in2, in1)`` without conjugating it. 0-d inputs
    are for the caller (``in1 * in2``, SciPy's answer); every other input
    must have the rank of the other.
    """
    xp = namespace_of(in1=in1, in2=in2)
    device = device_of(in1=in1, in2=in2)
    mode = check_mode(mode)
    if in1.ndim != in2.ndim:
        msg = (
            f"in1 and in2 must have the same number of dimensions, got shapes "
            f"{tuple(in1.shape)} and {tuple(in2.shape)}"
        )
        raise ValueError(msg)
    dtype = result_dtype(in1, in2, xp)
    axes = check_axes(axes, in1.ndim)
    swapped = check_shapes(in1, in2, axes, mode)
    work = compute_dtype(dtype, xp, device)
    volume, weight = (_last(xp.astype(a, work, copy=False), axes, xp) for a in (in1, in2))
    conv_axes = tuple(range(-len(axes), 0))
    if op == "convolve":
        weight = xp.flip(weight, axis=conv_axes)
    elif xp.isdtype(work, "complex floating"):
        weight = xp.conj(weight)
    complex_ = bool(xp.isdtype(work, "complex floating"))
    if swapped:
        if op == "correlate2d" and complex_:
            volume, weight = xp.conj(volume), xp.conj(weight)
        volume, weight = xp.flip(weight, axis=conv_axes), xp.flip(volume, axis=conv_axes)
    shift = int(op == "correlate2d")
    return Problem(volume, weight, mode, len(axes), axes, dtype, complex_, shift), xp


def _last(a: Array, axes: tuple[int, ...], xp: Namespace) -> Array:
    """``a`` with ``axes`` moved to the end, in their order."""
    rest = tuple(d for d in range(a.ndim) if d not in axes)
    if rest + axes == tuple(range(a.ndim)):
        return a
    return xp.permute_dims(a, rest + axes)


def choose_method(problem: Problem, xp: Namespace) -> str:
    """'direct' or 'fft' for ``problem``, whichever an estimate of their run times favours.

    Each route estimates its own time from the shapes
    (:func:`xpconv._signal_direct.direct_time`,
    :func:`xpconv._signal_fft.fft_time`): operation counts weighted by what
    one operation of that kind costs on a CPU (matrix products, im2col's
    memory-bound matrix-vector products, FFTs), measured with
    ``benchmarks/signal_bench.py``. Integer inputs whose exact result could
    exceed float64's 53-bit significand (or whose values cannot be read:
    Dask, JAX tracers) take the direct route, whose sums of exact products
    are exact below 2**53 (SciPy's rule). Namespaces without the ``fft``
    extension always take the direct route. The FFT must win by
    ``FFT_MARGIN_NS``.
    """
    if not has_fft(xp):
        return "direct"
    if xp.isdtype(problem.dtype, "integral") and not _fft_exact(problem, xp):
        return "direct"
    return "fft" if fft_time(problem) + FFT_MARGIN_NS < direct_time(problem) else "direct"


#: How much faster (in estimated nanoseconds) the FFT must be to be chosen, as
#: SciPy's ``choose_conv_method`` has an offset: direct sums of small inputs
#: are exact where the FFT leaves rounding noise (``-4e-17`` for a 0), and
#: small problems are dominated by the per-call cost of either route.
FFT_MARGIN_NS = 100_000.0


def _fft_exact(problem: Problem, xp: Namespace) -> bool:
    """Whether rounding the FFT route's result recovers integer inputs exactly (SciPy's test)."""
    if not (values_readable(problem.volume) and values_readable(problem.weight)):
        return False
    largest = int(xp.max(xp.abs(problem.volume))) * int(xp.max(xp.abs(problem.weight)))
    terms = min(math.prod(problem.volume_size), math.prod(problem.kernel_size))
    return largest * terms < 2**52


def solve(problem: Problem, method: str, xp: Namespace) -> Array:
    """Compute ``problem`` by ``method`` and put the axes back where the caller had them."""
    if problem.batch == 0:  # no signals in the batch: nothing to compute (FFT libraries refuse)
        shape = (*problem.batch_shape, *problem.out_size)
        out = xp.zeros(shape, dtype=problem.volume.dtype, device=device_of(v=problem.volume))
        return _restore(xp.astype(out, problem.dtype), problem.axes, xp)
    if method == "auto":
        method = choose_method(problem, xp)
    if method == "fft":
        if not has_fft(xp):
            msg = (
                f"method='fft' needs the array API fft extension, which {xp.__name__} lacks; "
                "use method='direct' or 'auto'"
            )
            raise TypeError(msg)
        out = fft_correlate(problem, xp)
    else:
        out = direct_correlate(problem, xp)
    if xp.isdtype(problem.dtype, "integral"):
        out = xp.round(out)
    out = xp.astype(out, problem.dtype, copy=False)
    return _restore(out, problem.axes, xp)


def _restore(out: Array, axes: tuple[int, ...], xp: Namespace) -> Array:
    """Undo :func:`_last`: the convolved axes back in their places."""
    ndim = out.ndim
    rest = [d for d in range(ndim) if d not in axes]
    order = rest + list(axes)  # the axis of the caller's array at each position of ``out``
    if order == list(range(ndim)):
        return out
    return xp.permute_dims(out, tuple(order.index(d) for d in range(ndim)))
