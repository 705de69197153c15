"""The FFT route of :mod:`xpconv.signal`: the array API ``fft`` extension at fast sizes.

A correlation ``corr(volume, weight)`` is the convolution of ``volume`` with
the flipped ``weight``; by the convolution theorem that is one product of
spectra, zero-padded to at least the full output size along the convolved
axes so that the circular convolution the DFT computes does not wrap. The
padded size is rounded up to a 5-smooth number (:func:`next_fast_len`),
where every FFT library is fastest. Real inputs take ``rfftn``/``irfftn``
(half the work, and a real result); complex inputs ``fftn``/``ifftn``. The
batch axes broadcast in the product of the spectra. NumPy arrays go
through ``scipy.fft`` where SciPy is installed
(:func:`xpconv._backend.fft_module`: faster in single precision); without
it, single precision is transformed in double precision where that is
faster (:func:`xpconv._backend.fft_in_double`) and narrowed back.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import array_api_compat as compat

from xpconv._backend import fft_in_double, fft_module

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xpconv._signal_core import Problem

__all__ = ["fft_correlate", "fft_time", "has_fft", "next_fast_len", "whole_axes"]

Array = Any
Namespace = Any


@functools.lru_cache(maxsize=1024)
def next_fast_len(target: int) -> int:
    """The smallest ``2**a * 3**b * 5**c`` at least ``target`` (``target >= 1``).

    What ``scipy.fft.next_fast_len`` answers for ``real=True``: the sizes
    every FFT library (pocketfft, cuFFT, MKL, ducc) handles without a slow
    prime factor. Found by walking the powers of 5 and 3 and topping up with
    the smallest power of two, a few dozen steps even for 2**40.
    """
    if target <= 6:
        return max(target, 1)
    best = 1 << (target - 1).bit_length()  # the next power of two always works
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # the smallest power of two that lifts p35 to target
            quotient = -(-target // p35)
            candidate = p35 << (quotient - 1).bit_length()
            best = min(best, candidate)
            p35 *= 3
        p5 *= 5
    return best


def has_fft(xp: Namespace) -> bool:
    """Whether ``xp`` has the array API ``fft`` extension (with ``rfftn``)."""
    return hasattr(getattr(xp, "fft", None), "rfftn")


def fft_correlate(problem: Problem, xp: Namespace) -> Array:
    """``corr(volume, weight)`` by FFT, the convolved axes last (see :mod:`xpconv._signal_core`).

    ``problem.volume`` is ``(*batch1, *V)`` and ``problem.weight``
    ``(*batch2, *K)`` with broadcastable batch axes; the result is
    ``(*batch, *out)`` in the computation dtype, sliced out of the full
    convolution as ``problem.mode`` asks.
    """
    rank = problem.rank
    axes = tuple(range(-rank, 0))
    full = tuple(v + k - 1 for v, k in zip(problem.volume_size, problem.kernel_size, strict=True))
    shape = tuple(next_fast_len(n) for n in full)
    volume = whole_axes(problem.volume, axes)
    kernel = whole_axes(xp.flip(problem.weight, axis=axes), axes)
    if fft_in_double(volume) and xp.finfo(volume.dtype).bits == 32:
        wide = xp.complex128 if problem.complex else xp.float64  # the caller narrows back
        volume, kernel = xp.astype(volume, wide), xp.astype(kernel, wide)
    fft = fft_module(volume, xp)
    if xp.isdtype(volume.dtype, "complex floating"):
        spectrum = fft.fftn(volume, s=shape, axes=axes) * fft.fftn(kernel, s=shape, axes=axes)
        out = fft.ifftn(spectrum, s=shape, axes=axes)
    else:
        spectrum = fft.rfftn(volume, s=shape, axes=axes) * fft.rfftn(kernel, s=shape, axes=axes)
        out = fft.irfftn(spectrum, s=shape, axes=axes)
    return out[(..., *_mode_slices(problem))]


def _mode_slices(problem: Problem) -> list[slice]:
    """The part of the (fast-size) full convolution that ``problem.mode`` keeps, per axis.

    'full' keeps ``V + K - 1``; 'same' the ``V`` values centred as SciPy
    centres them (from ``problem.same_start``); 'valid' the ``V - K + 1``
    values where the kernel lies inside the volume (starting at ``K - 1``).
    """
    slices = []
    sizes = zip(problem.volume_size, problem.kernel_size, problem.same_start, strict=True)
    for v, k, same_start in sizes:
        if problem.mode == "full":
            start, size = 0, v + k - 1
        elif problem.mode == "same":
            start, size = same_start, v
        else:
            start, size = k - 1, v - k + 1
        slices.append(slice(start, start + size))
    return slices


def whole_axes(x: Array, axes: Sequence[int]) -> Array:
    """``x`` with each of ``axes`` in one chunk on Dask (its FFT and reshapes need that).

    Other arrays come back unchanged.
    """
    if compat.is_dask_array(x) and any(len(x.chunks[a]) > 1 for a in axes):
        return x.rechunk({a % x.ndim: -1 for a in axes})
    return x


#: Nanoseconds per FFT operation (``5/2 N log2 N`` per complex transform of size
#: ``N``): 0.2 to 0.7 measured on a 2-core x86 CPU with NumPy's pocketfft, more for
#: sizes that leave the cache (``benchmarks/signal_bench.py``).
NS_PER_FFT_OP = 0.4


def fft_time(problem: Problem) -> float:
    """Estimated nanoseconds of the FFT route: three transforms per batch element.

    A forward transform of each operand (once per batch element of that
    operand) and an inverse one per batch element of the result, each about
    ``5/2 N log2 N`` operations for the padded size ``N``; real inputs cost
    about half (``rfftn``).
    """
    full = (v + k - 1 for v, k in zip(problem.volume_size, problem.kernel_size, strict=True))
    n = math.prod(next_fast_len(s) for s in full)
    transforms = problem.volume_batch + problem.weight_batch + problem.batch
    real = 1.0 if problem.complex else 0.5
    return NS_PER_FFT_OP * real * 2.5 * transforms * n * max(math.log2(n), 1.0)
