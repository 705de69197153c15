"""Depthwise convolution by shifted planes: no im2col at all.

In a depthwise convolution (``groups == in_channels == out_channels``) every
output channel sees one input channel, so the matrix products of the im2col
route are (1, KH*KW) @ (KH*KW, N*OH*OW): all copying, almost no arithmetic
(measured fwd+bwd on the (32, 128, 28, 28) 3x3 benchmark layer, float32: 139
ms against PyTorch's 21). Here the work is done tap by tap instead, on the shifted-plane layout of
:mod:`xpconv._shifted`: on an output grid of the padded size, tap (i, j) of
every output pixel is one contiguous slice of the padded input rows, so::

    out_virtual = sum over taps t of  w[:, t] * rows[:, shift_t : shift_t + length]

one slice times one weight per plane: two elementwise passes per tap. The
work is cut into chunks of about 512 KiB of planes, ordered (channel, sample)
so that the weights are one column per tap; a chunk's padded planes are
written into one reused buffer and stay in cache for the KH*KW passes.
Measured fwd+bwd against the im2col route, 2-core CPU: 1.6-2.7x faster on
five depthwise layers (28x28 to 112x112, 3x3 and 5x5, dilated).

The weight gradient pairs the same shifted slices with the output gradient
laid out on the grid (zeros at the thrown-away positions, so they add
nothing): one dot product per plane and tap (``vecdot``). The input gradient
of a stride-1 depthwise convolution is another depthwise convolution (of the
output gradient with the flipped kernel, ``functional._stride1_input_grad``),
so it comes through :func:`depthwise_forward` as well.

On NumPy the forward pass gives each CPU thread its share of the chunks
(:mod:`xpconv._threads`): NumPy runs every operation on one thread.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from xpconv._backend import device_of, host_workers, is_mutable, on_gpu, set_into
from xpconv._shifted import chunk_planes, layout, on_grid, row_buffer, shifted_rows
from xpconv._threads import run_all
from xpconv._workspace import even_split, get_workspace_limit

if TYPE_CHECKING:
    from xpconv._geometry import ConvGeometry
    from xpconv._shifted import Layout

__all__ = ["depthwise_applies", "depthwise_forward", "depthwise_grads"]

Array = Any
Namespace = Any

# On the CPU a chunk holds at most this many bytes of padded input, so that the
# shifted slices and the running sum (about three chunks) stay in cache. The
# best size depends on the caches. Measured on the (32, 128, 28, 28) benchmark
# layer, float32 (float64), ms. 2-core AMD EPYC, fwd / dW+db: 128 KiB 20.7 /
# 18.9 (50.9 / 44.1), 512 KiB 16.4 / 14.0 (32.5 / 26.0), 1 MiB 14.6 / 12.9
# (28.9 / 21.7), 2 MiB 16.5 / 12.0 (32.1 / 20.7), 4 MiB 23.4 / 12.4 (47.0 /
# 21.9). 2-core Intel Xeon (2 MiB L2 per core), fwd / whole backward, best of
# 3 alternating rounds: 128 KiB 16.8 / 31.2 (32.8 / 60.0), 256 KiB 15.7 / 27.8
# (29.6 / 52.4), 512 KiB 17.1 / 27.9 (33.6 / 53.0), 1 MiB 25.5 / 39.2 (47.9 /
# 67.1), 2 MiB 28.3 / 47.2 (54.7 / 76.4). With 512 KiB the sum is 11-16%
# above 1 MiB's on the EPYC and 3-6% above the best (256 KiB) on the Xeon,
# where 1 MiB was 33-44% slower.
CPU_CHUNK_BYTES = 2**19


def depthwise_applies(geom: ConvGeometry) -> bool:
    """Whether :func:`depthwise_forward` computes this convolution."""
    return (
        geom.groups > 1
        and geom.groups == geom.in_channels == geom.out_channels
        and geom.stride == (1, 1)
    )


def _chunks(
    geom: ConvGeometry, like: Array, xp: Namespace, workers: int = 1
) -> list[tuple[slice, list[slice]]]:
    """Channel groups, each with the runs of samples worked on together.

    A chunk's padded input takes at most a third of the workspace limit
    (about three chunk-sized arrays are alive at once: the padded input, the
    running sum and one term), shared by the ``workers`` threads that each
    work on a chunk at the same time. On the CPU it is also cache-sized, at
    most :data:`CPU_CHUNK_BYTES`.
    """
    n, c = geom.batch, geom.in_channels
    plane_bytes = geom.padded_hw[0] * geom.padded_hw[1] * (xp.finfo(like.dtype).bits // 8)
    gpu = on_gpu(like)
    limit = get_workspace_limit(gpu=gpu)
    budget = None if limit is None else limit // (3 * workers)
    cpu = is_mutable(like) and not gpu
    if cpu:
        budget = CPU_CHUNK_BYTES if budget is None else min(budget, CPU_CHUNK_BYTES)
    if budget is None:
        return [(slice(0, c), [slice(0, n)])]
    per_run = max(1, min(n, budget // plane_bytes))
    per_group = max(1, min(c, budget // (per_run * plane_bytes)))
    runs = even_split(n, per_run)
    return [(g, runs) for g in even_split(c, per_group)]


def _chunk_buffer(
    like: Array, chunks: list[tuple[slice, list[slice]]], lay: Layout
) -> Array | None:
    channels = max(g.stop - g.start for g, _ in chunks)
    samples = max(r.stop - r.start for _, runs in chunks for r in runs)
    return row_buffer(like, channels, samples, lay)


def _assemble(by_run: list[list[Array]], xp: Namespace) -> Array:
    """Concatenate chunk results: samples along axis 0, channel groups along axis 1."""
    runs = [r[0] if len(r) == 1 else xp.concat(r, axis=1) for r in by_run]
    return runs[0] if len(runs) == 1 else xp.concat(runs, axis=0)


def _chunk_output(
    x: Array,
    w_taps: Array,
    bias: Array | None,
    channels: slice,
    samples: slice,
    lay: Layout,
    geom: ConvGeometry,
    buf: Array | None,
    xp: Namespace,
) -> Array:
    """One chunk's output (n, c, OH, OW): a view of the sum over taps on the grid."""
    w_col = w_taps[channels, :]  # (c, taps): a column per tap, one weight per row
    planes = chunk_planes(x, samples, channels, xp)
    rows = shifted_rows(planes, geom.pad, lay, buf, xp)
    c, n = planes.shape[0], planes.shape[1]
    length = n * lay.plane
    mutable = is_mutable(x)
    acc = None
    for tap, offset in enumerate(lay.offsets):
        term = rows[:, offset : offset + length] * w_col[:, tap : tap + 1]
        if acc is None:
            acc = term
        elif mutable:  # in place: no new array per tap
            acc += term
        else:
            acc = acc + term
    assert acc is not None
    if bias is not None:
        b_col = xp.reshape(bias[channels], (-1, 1))
        if mutable:
            acc += b_col
        else:
            acc = acc + b_col
    grid = xp.reshape(acc, (c, n, lay.hp, lay.wp))[:, :, : lay.oh, : lay.ow]
    return xp.permute_dims(grid, (1, 0, 2, 3))


def depthwise_forward(
    x: Array, weight: Array, bias: Array | None, geom: ConvGeometry, xp: Namespace
) -> Array:
    """conv2d output (N, C, OH, OW) of a stride-1 depthwise convolution, tap by tap."""
    lay = layout(geom)
    workers = host_workers(x)
    chunks = _chunks(geom, x, xp, workers)
    w_taps = xp.reshape(weight, (geom.in_channels, -1))  # (C, taps)
    if not is_mutable(x):  # JAX, Dask: the chunks' outputs are concatenated
        by_run: list[list[Array]] = [[] for _ in chunks[0][1]]
        for channels, runs in chunks:
            for r, samples in enumerate(runs):
                part = _chunk_output(x, w_taps, bias, channels, samples, lay, geom, None, xp)
                by_run[r].append(part)
        return _assemble(by_run, xp)
    y = xp.empty(geom.output_shape, dtype=x.dtype, device=device_of(x=x))

    def work(share: list[tuple[slice, slice]]) -> None:
        buf = _chunk_buffer(x, chunks, lay)  # one per thread
        for channels, samples in share:
            part = _chunk_output(x, w_taps, bias, channels, samples, lay, geom, buf, xp)
            set_into(y, (samples, channels, slice(None), slice(None)), part)  # in place

    # NumPy works on one thread per operation; here each thread takes every
    # workers-th chunk (see _threads). Measured on the (32, 128, 28, 28) layer,
    # 2-core Intel Xeon, fwd+bwd (this forward runs twice: for the output and
    # the input gradient), 11 alternating rounds: two threads took 0.68x the
    # one-thread time in float32 (0.61-0.96 by round), 1.00x in float64.
    jobs = [(channels, samples) for channels, runs in chunks for samples in runs]
    shares = [jobs[k::workers] for k in range(min(workers, len(jobs)))]
    run_all([functools.partial(work, share) for share in shares])
    return y


def depthwise_grads(
    grad_output: Array, x: Array, geom: ConvGeometry, xp: Namespace, *, bias_grad: bool
) -> tuple[Array, Array | None]:
    """dL/dW (C, 1, KH, KW) and, with ``bias_grad``, dL/db of a stride-1 depthwise conv.

    On one thread: split over two like the forward pass, it gained nothing
    (benchmark layer, best of 15 alternating rounds: float32 11.2 ms on one
    thread against 10.8 on two, float64 22.2 against 24.0).
    """
    lay = layout(geom)
    chunks = _chunks(geom, x, xp)
    buf = _chunk_buffer(x, chunks, lay)
    gy_buf = _chunk_buffer(x, chunks, lay)
    w_groups, b_groups = [], []
    for channels, runs in chunks:
        w_sum = b_sum = None
        for samples in runs:
            rows = shifted_rows(chunk_planes(x, samples, channels, xp), geom.pad, lay, buf, xp)
            # The output gradient on the grid: zero where the output is thrown away.
            gy = on_grid(chunk_planes(grad_output, samples, channels, xp), lay, gy_buf, xp)
            length = gy.shape[1]
            # (c, taps): per channel and tap, one dot product over the chunk's samples.
            part = xp.stack([xp.vecdot(gy, rows[:, o : o + length]) for o in lay.offsets], axis=1)
            w_sum = part if w_sum is None else w_sum + part
            if bias_grad:
                b_part = xp.sum(gy, axis=1)
                b_sum = b_part if b_sum is None else b_sum + b_part
        w_groups.append(w_sum)
        b_groups.append(b_sum)
    per_channel = w_groups[0] if len(w_groups) == 1 else xp.concat(w_groups, axis=0)
    grad_w = xp.reshape(per_channel, geom.weight_shape)
    grad_b = None
    if bias_grad:
        grad_b = b_groups[0] if len(b_groups) == 1 else xp.concat(b_groups, axis=0)
    return grad_w, grad_b
