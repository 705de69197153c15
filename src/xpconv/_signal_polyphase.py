"""1-D correlation as matrix products: the polyphase form.

A 1-D correlation of one channel has no channels to multiply over: im2col
turns it into a matrix-vector product on a copy ``K`` times the size of the
signal, bound by memory. Compute ``B`` outputs at a time instead: with the
zero-padded signal cut into rows of ``B`` samples, ``P[r, c] = x[r*B + c]``,
and ``M = 1 + ceil((K - 1)/B)``, output ``r*B + i`` is

    y[r*B + i] = sum_m sum_c P[r + m, c] * w[m*B + c - i]

(terms where ``m*B + c - i`` falls outside ``0..K-1`` are zero): ``M``
matrix products ``P[m : m + R] @ W_m`` of the rows with ``(B, B)`` Toeplitz
blocks of the kernel, added up, and the result is already in signal order.
The signal is copied once (with its zeros); it costs ``2*B*M`` operations per output
instead of ``2*K`` (about ``2*(K + B)``), at the BLAS's speed instead of
memory speed.
"""

from __future__ import annotations

from typing import Any

from xpconv._backend import add_into, device_of
from xpconv._signal_fft import whole_axes

__all__ = ["MIN_KERNEL", "block_size", "polyphase_correlate"]

Array = Any
Namespace = Any

#: Kernels shorter than this stay with im2col (the blocks would multiply
#: mostly zeros); see benchmarks/signal_bench.py for the measurements.
MIN_KERNEL = 8


def block_size(kernel: int) -> int:
    """``B``: 32 samples per row, 64 from 256 taps on.

    Large enough for the products to run at the BLAS's speed, small enough
    that the Toeplitz blocks' zeros stay a minority.
    """
    return 64 if kernel >= 256 else 32


def polyphase_correlate(x: Array, w: Array, pads: tuple[int, int], xp: Namespace) -> Array:
    """``corr(x, w)`` of ``x`` ``(N, 1, L)`` and ``w`` ``(O, 1, K)`` padded by ``pads``.

    The result is ``(N, O, L + pads[0] + pads[1] - K + 1)``, what
    ``conv(pad(x), w)`` gives.
    """
    n, length = x.shape[0], x.shape[-1]
    outputs, kernel = w.shape[0], w.shape[-1]
    b = block_size(kernel)
    taps = 1 + -(-(kernel - 1) // b)
    out = length + pads[0] + pads[1] - kernel + 1
    rows = -(-out // b)
    device = device_of(x=x)
    # Each sample's rows, one after the other: every product below is one 2-D
    # matrix product over all samples (the M - 1 rows between two samples
    # straddle both; they are computed and dropped). One sample needs no rows
    # past its last output row; several get M - 1 rows of zeros at the end, so
    # that the products split into whole spans.
    span = rows + taps - 1
    after = span * b - pads[0] - length
    zeros = [xp.zeros((n, p), dtype=x.dtype, device=device) for p in (pads[0], after)]
    parts = [zeros[0], xp.reshape(x, (n, length)), zeros[1]]
    signal = xp.reshape(xp.concat(parts, axis=-1), (n * span * b,))
    if n > 1:
        tail = xp.zeros(((taps - 1) * b,), dtype=x.dtype, device=device)
        signal = xp.concat([signal, tail])
    blocks = xp.reshape(signal, (-1, b))
    weight = _toeplitz_blocks(w, b, taps, xp)  # (M, B, O*B)
    total = rows if n == 1 else n * span
    y = xp.matmul(blocks[:total, :], weight[0, ...])  # (total, O*B)
    for m in range(1, taps):
        product = xp.matmul(blocks[m : m + total, :], weight[m, ...])
        y = add_into(y, (slice(None), slice(None)), product)
    y = xp.reshape(y, (n, total // n, outputs, b))[:, :rows, ...]
    y = xp.permute_dims(y, (0, 2, 1, 3))
    return xp.reshape(y, (n, outputs, rows * b))[..., :out]


def _toeplitz_blocks(w: Array, b: int, taps: int, xp: Namespace) -> Array:
    """``W[m, c, o*B + i] = w[o, m*B + c - i]`` (zero outside the kernel): ``(M, B, O*B)``."""
    outputs, kernel = w.shape[0], w.shape[-1]
    device = device_of(w=w)
    # w with B - 1 zeros before and enough after for the largest index, M*B + B - 2.
    wide = xp.concat(
        [
            xp.zeros((outputs, b - 1), dtype=w.dtype, device=device),
            xp.reshape(w, (outputs, kernel)),
            xp.zeros((outputs, taps * b - kernel), dtype=w.dtype, device=device),
        ],
        axis=-1,
    )
    wide = whole_axes(wide, (0, 1))  # a few kernels: one Dask chunk, sliced 32 or 64 ways
    # Column i is the kernel shifted by i: wide[:, j - i + B - 1] for j = m*B + c.
    shifted = [wide[:, b - 1 - i : b - 1 - i + taps * b] for i in range(b)]
    blocks = xp.reshape(xp.stack(shifted, axis=-1), (outputs, taps, b, b))
    return xp.reshape(xp.permute_dims(blocks, (1, 2, 0, 3)), (taps, b, outputs * b))
