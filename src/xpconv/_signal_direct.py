"""The direct route of :mod:`xpconv.signal`: one call of xpconv's convolution engine.

:func:`xpconv.conv` is a cross-correlation over ``(N, C, *spatial)`` inputs
and ``(O, C/groups, *kernel)`` weights, so ``corr(volume, weight)`` with
broadcast batch axes is one such call once each batch axis has found its
place (:func:`_batch_layout`):

* an axis where only the volume varies (the weight has size 1) becomes part
  of the sample axis ``N``: one kernel for many signals;
* an axis where only the weight varies becomes part of the output channels
  ``O``: many kernels for one signal, a filter bank;
* an axis where both vary becomes a group: signal ``i`` with kernel ``i``,
  a depthwise convolution.

'full' and 'same' pad with zeros: ``K - 1`` on both sides for 'full'; for
'same', SciPy keeps the full output's values from ``(K - 1) // 2`` on, which
is a padding of ``K - 1 - (K - 1) // 2`` before and ``(K - 1) // 2`` after
(``correlate2d`` starts at ``K // 2``). The engine pads both sides alike, so
for an even kernel the one extra value is sliced off.

One NumPy signal with one NumPy kernel (1-D, no batch axes) takes NumPy's
own ``correlate`` loop (:func:`xpconv._backend.native_correlate1d`), as
``scipy.signal`` does, except in float32 with a long kernel, where the
polyphase products below are faster.
Other 1-D correlations with kernels of :data:`~xpconv._signal_polyphase.MIN_KERNEL`
taps or more and no groups take the polyphase form instead
(:mod:`xpconv._signal_polyphase`): blocks of the signal as channels, so that
the engine multiplies matrices rather than a matrix and a vector.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from xpconv._backend import native_correlate1d
from xpconv._signal_polyphase import MIN_KERNEL, block_size, polyphase_correlate
from xpconv.functional import conv

if TYPE_CHECKING:
    from xpconv._signal_core import Problem

__all__ = ["direct_correlate", "direct_time"]

Array = Any
Namespace = Any


class _Layout(NamedTuple):
    """Which batch axes go to the samples, the output channels and the groups."""

    samples: tuple[int, ...]
    outputs: tuple[int, ...]
    groups: tuple[int, ...]


def _batch_layout(batch1: tuple[int, ...], batch2: tuple[int, ...]) -> _Layout:
    samples = tuple(d for d, n in enumerate(batch2) if n == 1)
    outputs = tuple(
        d for d, (m, n) in enumerate(zip(batch1, batch2, strict=True)) if n != 1 and m == 1
    )
    groups = tuple(
        d for d, (m, n) in enumerate(zip(batch1, batch2, strict=True)) if n != 1 and m != 1
    )
    return _Layout(samples, outputs, groups)


def direct_correlate(problem: Problem, xp: Namespace) -> Array:
    """``corr(volume, weight)`` by the im2col engine, the convolved axes last.

    Shapes as in :func:`xpconv._signal_fft.fft_correlate`; the result is
    ``(*batch, *out)`` in the computation dtype.
    """
    rank = problem.rank
    volume, weight = problem.volume, problem.weight
    if _native_first(problem) and (full := native_correlate1d(volume, weight)) is not None:
        start = problem.kernel_size[0] - 1 - _pads(problem)[0][0]
        return full[start : start + problem.out_size[0]]
    batch1, batch2 = tuple(volume.shape[:-rank]), tuple(weight.shape[:-rank])
    layout = _batch_layout(batch1, batch2)
    spatial = tuple(range(len(batch1), len(batch1) + rank))
    sizes = {
        name: math.prod(batch1[d] if name != "outputs" else batch2[d] for d in dims)
        for name, dims in layout._asdict().items()
    }
    # (N, G, *V): the volume's output-channel axes have size 1 and vanish here.
    x = xp.permute_dims(volume, (*layout.samples, *layout.groups, *layout.outputs, *spatial))
    x = xp.reshape(x, (sizes["samples"], sizes["groups"], *problem.volume_size))
    # (G*O, 1, *K): the weight's sample axes have size 1.
    w = xp.permute_dims(weight, (*layout.groups, *layout.outputs, *layout.samples, *spatial))
    w = xp.reshape(w, (sizes["groups"] * sizes["outputs"], 1, *problem.kernel_size))
    if _polyphase(problem, sizes["groups"]):
        y = polyphase_correlate(x, w, _pads(problem)[0], xp)
    else:
        padding, offsets = _padding(problem)
        y = conv(x, w, padding=padding, groups=sizes["groups"])
        if any(offsets) or problem.mode == "same":  # 'same', even kernels: one value too many
            key = (slice(o, o + n) for o, n in zip(offsets, problem.out_size, strict=True))
            y = y[(..., *key)]
    # (N, G*O, *out) -> (*samples, *groups, *outputs, *out) -> batch order
    order = (*layout.samples, *layout.groups, *layout.outputs)
    sizes_in_order = [batch2[d] if d in layout.outputs else batch1[d] for d in order]
    y = xp.reshape(y, (*sizes_in_order, *problem.out_size))
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return xp.permute_dims(y, (*inverse, *(len(order) + a for a in range(rank))))


def _pads(problem: Problem) -> list[tuple[int, int]]:
    """The zeros before and after the volume along each axis that ``problem.mode`` needs."""
    if problem.mode == "full":
        return [(k - 1, k - 1) for k in problem.kernel_size]
    if problem.mode == "valid":
        return [(0, 0)] * problem.rank
    # 'same' keeps the full output from `start` on: k - 1 - start zeros before, start after.
    return [(k - 1 - s, s) for k, s in zip(problem.kernel_size, problem.same_start, strict=True)]


def _padding(problem: Problem) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The engine's (symmetric) padding and where the wanted output starts in its output."""
    pads = _pads(problem)
    both = tuple(max(lo, hi) for lo, hi in pads)
    return both, tuple(p - lo for p, (lo, _) in zip(both, pads, strict=True))


def _native_first(problem: Problem) -> bool:
    """One signal and one kernel, where the library's own loop (if any) is the fastest.

    In float32 the polyphase products beat NumPy's loop from 8 taps on; in
    float64 and complex they do not (``benchmarks/signal_bench.py``).
    """
    volume, weight = problem.volume, problem.weight
    if not volume.ndim == weight.ndim == 1:
        return False
    single = str(volume.dtype) == "float32"
    return not (single and problem.kernel_size[0] >= MIN_KERNEL)


def _polyphase(problem: Problem, groups: int) -> bool:
    """1-D, no groups (signal ``i`` with kernel ``i``), a kernel of ``MIN_KERNEL`` taps or more."""
    return problem.rank == 1 and groups == 1 and problem.kernel_size[0] >= MIN_KERNEL


#: Nanoseconds per multiply-add, measured on a 2-core x86 CPU with OpenBLAS
#: (``benchmarks/signal_bench.py``): the polyphase products run at matrix-product
#: speed; im2col with one channel is a matrix-vector product on K copies of the
#: input, bound by memory; each output of the polyphase form also costs a copy.
NS_PER_GEMM_MAC = 0.1
NS_PER_IM2COL_MAC = 2.0
NS_PER_POLYPHASE_OUTPUT = 2.0


def direct_time(problem: Problem) -> float:
    """Estimated nanoseconds of :func:`direct_correlate` for ``problem``.

    ``prod(kernel)`` multiply-adds per output value (``B*M`` in the
    polyphase form), four real ones for a complex one.
    """
    outputs = problem.batch * math.prod(problem.out_size)
    scale = 4.0 if problem.complex else 1.0
    kernel = math.prod(problem.kernel_size)
    layout = _batch_layout(
        tuple(problem.volume.shape[: -problem.rank]), tuple(problem.weight.shape[: -problem.rank])
    )
    if _polyphase(problem, 2 if layout.groups else 1):
        b = block_size(kernel)
        taps = 1 + -(-(kernel - 1) // b)
        return outputs * (scale * NS_PER_GEMM_MAC * b * taps + NS_PER_POLYPHASE_OUTPUT)
    return outputs * scale * NS_PER_IM2COL_MAC * kernel
