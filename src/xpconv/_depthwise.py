"""Depthwise convolution by shifted planes: no im2col at all.

In a depthwise convolution (``groups == in_channels == out_channels``) every
output channel sees one input channel, so the matrix products of the im2col
route are (1, K) @ (K, n*L): all copying, almost no arithmetic. Here the work
is done kernel offset by offset instead, on the shifted-plane layout of
:mod:`xpconv._shifted`: on an output grid of the padded size, offset ``t`` of
every output position is one contiguous slice of the padded input rows, so::

    out_virtual = sum over offsets t of  w[:, t] * rows[:, shift_t : shift_t + length]

one slice times one weight per plane: two elementwise passes per offset. The
work is cut into chunks of planes, ordered (channel, sample) so that the
weights are one column per offset; a chunk's padded planes are written into
one reused buffer and stay in cache for the K passes. On NumPy the forward
pass gives each CPU thread its share of the chunks (:mod:`xpconv._threads`):
NumPy runs every operation on one thread.

The weight gradient pairs the same shifted slices with the output gradient
laid out on the grid (zeros at the thrown-away positions, so they add
nothing): one dot product per plane and offset (``vecdot``). The input
gradient of a stride-1 depthwise convolution is another depthwise
convolution (of the output gradient with the flipped kernel,
:func:`xpconv._engine.input_grad`), so it comes through
:func:`depthwise_forward` as well.

The chunk size, the threads and the choice of this route over im2col are
measured (``docs/performance.md``: design-depthwise, design-depthwise-chunk,
design-depthwise-threads).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from xpconv._backend import (
    add_into,
    all_finite,
    device_of,
    itemsize,
    set_into,
    values_readable,
)
from xpconv._shifted import chunk_planes, layout, on_grid, shifted_rows
from xpconv._threads import run_all
from xpconv._tiles import even_split

if TYPE_CHECKING:
    from xpconv._backend import Capabilities
    from xpconv._engine import Route
    from xpconv._geometry import ConvGeometry
    from xpconv._shifted import Layout

__all__ = ["CPU_CHUNK_BYTES", "depthwise_forward", "depthwise_grads", "pads_with_modes"]

Array = Any
Namespace = Any
Chunks = list[tuple[slice, list[slice]]]

# On the CPU a chunk holds at most this many bytes of padded input, so that the
# shifted slices and the running sum (about three chunks) stay in the L2 cache.
CPU_CHUNK_BYTES = 2**19


@dataclass(frozen=True)
class _Band:
    """A band of output rows (first spatial axis) worked on as a convolution of its own.

    ``rows`` are the rows of x it reads; ``geom`` is the band's depthwise
    convolution: those rows with the padding that falls inside the band.
    """

    out: slice
    rows: slice
    geom: ConvGeometry

    @functools.cached_property
    def layout(self) -> Layout:
        return layout(self.geom)


def _budget(caps: Capabilities, limit: int | None, workers: int) -> int | None:
    """Bytes of padded input per chunk: a third of the workspace limit's share of
    each thread (about three chunk-sized arrays are alive at once: the padded
    input, the running sum and one term); on the CPU also at most
    :data:`CPU_CHUNK_BYTES`, to stay in cache."""
    budget = None if limit is None else limit // (3 * workers)
    if caps.in_place and not caps.gpu:
        budget = CPU_CHUNK_BYTES if budget is None else min(budget, CPU_CHUNK_BYTES)
    return budget


def _bands(geom: ConvGeometry, budget: int | None, item_bytes: int) -> list[_Band]:
    """The whole output, or bands of rows whose padded planes fit in ``budget``."""
    whole = _Band(slice(0, geom.out_size[0]), slice(0, geom.in_size[0]), geom)
    row_bytes = math.prod(geom.padded_size[1:]) * item_bytes
    if budget is None or layout(geom).plane * item_bytes <= budget:
        return [whole]
    (lo, _), reach = geom.pad[0], geom.dilation[0] * (geom.kernel[0] - 1)
    # Output rows per band: its padded rows and the zero tail of its layout fit.
    tail_bytes = layout(geom).reach * item_bytes
    size = max(1, (budget - tail_bytes) // row_bytes - reach)
    bands = []
    for start in range(0, geom.out_size[0], size):
        stop = min(start + size, geom.out_size[0])
        first, last = start - lo, stop + reach - lo  # padded rows read, in x's rows
        top = min(max(first, 0), geom.in_size[0])
        bottom = max(min(last, geom.in_size[0]), top)
        above = min(max(-first, 0), last - first)  # rows in the padding before x
        below = last - first - above - (bottom - top)
        sub = replace(
            geom,
            in_size=(bottom - top, *geom.in_size[1:]),
            pad=((above, below), *geom.pad[1:]),
            out_size=(stop - start, *geom.out_size[1:]),
        )
        bands.append(_Band(slice(start, stop), slice(top, bottom), sub))
    return bands


def pads_with_modes(geom: ConvGeometry, caps: Capabilities, limit: int | None, item: int) -> bool:
    """Whether this kernel can apply a padding mode itself, while it copies the planes.

    It can when every plane is copied whole. In bands of rows (planes too
    large for a chunk), a band's mirrored or wrapped rows would come from
    other bands: the caller pads a copy of the input first, as for im2col.
    """
    workers = caps.threads if caps.in_place else 1
    return len(_bands(geom, _budget(caps, limit, workers), item)) == 1


def _chunks(geom: ConvGeometry, budget: int | None, item_bytes: int) -> Chunks:
    """Channel groups, each with the runs of samples worked on together, within ``budget``."""
    n, c = geom.batch, geom.in_channels
    plane_bytes = layout(geom).plane * item_bytes
    if budget is None:
        return [(slice(0, c), [slice(0, n)])]
    per_run = max(1, min(n, budget // plane_bytes))
    per_group = max(1, min(c, budget // (per_run * plane_bytes)))
    runs = even_split(n, per_run)
    return [(g, runs) for g in even_split(c, per_group)]


def _jobs(geom: ConvGeometry, budget: int | None, item_bytes: int) -> list[_Job]:
    """Every (band, channels, samples) piece of the work, channel groups in order."""
    return [
        _Job(band, channels, samples)
        for band in _bands(geom, budget, item_bytes)
        for channels, runs in _chunks(band.geom, budget, item_bytes)
        for samples in runs
    ]


@dataclass(frozen=True)
class _Job:
    band: _Band
    channels: slice
    samples: slice

    @property
    def key(self) -> tuple[Any, ...]:
        """The job's region of the (N, C, *out_size) output."""
        return (self.samples, self.channels, self.band.out, ...)

    def planes(self, a: Array, xp: Namespace) -> Array:
        """The job's (c, n, *band) planes of x (rows of the band) as a channel-major view."""
        return chunk_planes(_rows(a, self.band.rows), self.samples, self.channels, xp)

    def out_planes(self, a: Array, xp: Namespace) -> Array:
        """The job's planes of an (N, C, *out_size) array, as :meth:`planes`."""
        return chunk_planes(_rows(a, self.band.out), self.samples, self.channels, xp)


def _rows(a: Array, rows: slice) -> Array:
    """``a[:, :, rows]``, or ``a`` itself when ``rows`` covers the whole first spatial axis."""
    if rows.start == 0 and rows.stop == a.shape[2]:
        return a
    return a[:, :, rows, ...]


def _job_buffer(like: Array, jobs: list[_Job], route: Route, slot: Any) -> Array | None:
    """A reused buffer for the padded planes of the largest job (None without scratch)."""
    if not route.caps.scratch:
        return None
    return route.scratch.buffer(like, max(_job_elements(job) for job in jobs), slot)


def _job_elements(job: _Job) -> int:
    """Elements of a job's padded planes, with the zero tail of each channel's row."""
    lay = job.band.layout
    samples = job.samples.stop - job.samples.start
    return (job.channels.stop - job.channels.start) * (samples * lay.plane + lay.reach)


def _assemble(parts: list[tuple[_Job, Array]], xp: Namespace) -> Array:
    """Concatenate the jobs' outputs: channel groups (axis 1), runs of samples
    (axis 0), then bands (axis 2), in the order the jobs were made."""
    bands: dict[int, dict[int, list[Array]]] = {}
    for job, part in parts:
        runs = bands.setdefault(job.band.out.start, {})
        runs.setdefault(job.samples.start, []).append(part)

    def cat(items: list[Array], axis: int) -> Array:
        return items[0] if len(items) == 1 else xp.concat(items, axis=axis)

    by_band = [
        cat([cat(groups, 1) for _, groups in sorted(runs.items())], 0)
        for _, runs in sorted(bands.items())
    ]
    return cat(by_band, 2)


def _job_output(
    x: Array,
    w_taps: Array,
    bias: Array | None,
    job: _Job,
    buf: Array | None,
    route: Route,
    xp: Namespace,
) -> Array:
    """One job's output (n, c, *band): a view of the sum over offsets on the grid."""
    geom, lay = job.band.geom, job.band.layout
    w_col = w_taps[job.channels, :]  # (c, K): a column per offset, one weight per row
    planes = job.planes(x, xp)
    rows = shifted_rows(planes, geom.pad, lay, buf, xp, route.padding_mode)
    c, n = planes.shape[0], planes.shape[1]
    length = n * lay.plane
    products = (
        rows[:, shift : shift + length] * w_col[:, tap : tap + 1]
        for tap, shift in enumerate(lay.offsets)
    )
    bias_col = [] if bias is None else [xp.reshape(bias[job.channels], (-1, 1))]
    terms = itertools.chain(products, bias_col)
    acc = next(terms)
    for term in terms:
        if route.caps.in_place:  # no new array per offset
            acc += term
        else:
            acc = acc + term
    grid = lay.valid(xp.reshape(acc, (c, n, *lay.padded)))
    return xp.permute_dims(grid, (1, 0, *range(2, grid.ndim)))


def depthwise_forward(
    x: Array, weight: Array, bias: Array | None, route: Route, xp: Namespace
) -> Array:
    """Output (N, C, *out_size) of a stride-1 depthwise convolution, offset by offset."""
    geom, caps = route.geom, route.caps
    workers = caps.threads if caps.in_place else 1
    jobs = _jobs(geom, _budget(caps, route.limit, workers), itemsize(x.dtype, xp))
    w_taps = xp.reshape(weight, (geom.in_channels, -1))  # (C, K)
    if not caps.in_place:  # JAX, Dask, array-api-strict: the jobs' outputs are concatenated
        parts = [(job, _job_output(x, w_taps, bias, job, None, route, xp)) for job in jobs]
        return _assemble(parts, xp)
    y = xp.empty(geom.output_shape, dtype=x.dtype, device=device_of(x=x))

    def work(share: list[_Job], slot: int) -> None:
        buf = _job_buffer(x, jobs, route, ("planes", slot))  # one per thread
        for job in share:
            set_into(y, job.key, _job_output(x, w_taps, bias, job, buf, route, xp))  # in place

    # Each thread takes every workers-th job: fixed shares, so the result
    # does not depend on the number of threads.
    shares = [jobs[k::workers] for k in range(min(workers, len(jobs)))]
    run_all([functools.partial(work, share, k) for k, share in enumerate(shares)])
    return y


def _conj(a: Array, xp: Namespace) -> Array:
    return xp.conj(a) if xp.isdtype(a.dtype, "complex floating") else a


def _weight_grad_on_grid(gy: Array, rows: Array, lay: Layout, xp: Namespace) -> Array:
    """(c, K): per channel and offset, one long dot product over the chunk's grid.

    ``gy`` is the output gradient laid on the padded grid (:func:`on_grid`)
    with zeros at the thrown-away positions, so they add nothing, unless the
    input they read is not finite (0 * inf): then :func:`_weight_grad_of_outputs`.
    """
    length = gy.shape[1]
    gy = _conj(gy, xp)  # vecdot conjugates its first argument; the products here are bilinear
    return xp.stack([xp.vecdot(gy, rows[:, o : o + length]) for o in lay.offsets], axis=1)


def _weight_grad_of_outputs(gy_planes: Array, rows: Array, lay: Layout, xp: Namespace) -> Array:
    """(c, K) as :func:`_weight_grad_on_grid`, over the real output positions only.

    Exact whatever the values (no product at a thrown-away position), but
    many short dot products: several times slower on NumPy.
    """
    c, n = gy_planes.shape[0], gy_planes.shape[1]
    length = n * lay.plane
    parts = []
    for o in lay.offsets:
        window = lay.valid(xp.reshape(rows[:, o : o + length], (c, n, *lay.padded)))
        dots = xp.vecdot(_conj(gy_planes, xp), window)  # (c, n, *out_size[:-1]), bilinear
        parts.append(xp.sum(xp.reshape(dots, (c, -1)), axis=1))
    return xp.stack(parts, axis=1)


def depthwise_grads(
    grad_output: Array, x: Array, route: Route, xp: Namespace, *, bias_grad: bool
) -> tuple[Array, Array | None]:
    """dL/dW (C, 1, *kernel) and, with ``bias_grad``, dL/db of a stride-1 depthwise conv.

    The fast products on the grid multiply the thrown-away positions by zero;
    if the input they read is not finite (0 * inf), the result is not finite,
    and the weight gradient is computed again over the real outputs only.
    Where the values cannot be read (JAX tracers, Dask), it is computed that
    way at once. On one thread: split like the forward pass it gained nothing
    (``docs/performance.md``, design-depthwise-threads).
    """
    if values_readable(x):  # try the fast products
        grads = _depthwise_grads(grad_output, x, route, xp, bias_grad=bias_grad, exact=False)
        if all_finite(grads[0]):
            return grads
    return _depthwise_grads(grad_output, x, route, xp, bias_grad=bias_grad, exact=True)


def _depthwise_grads(
    grad_output: Array, x: Array, route: Route, xp: Namespace, *, bias_grad: bool, exact: bool
) -> tuple[Array, Array | None]:
    geom = route.geom
    jobs = _jobs(geom, _budget(route.caps, route.limit, 1), itemsize(x.dtype, xp))
    buf = _job_buffer(x, jobs, route, ("planes", 0))
    gy_buf = _job_buffer(x, jobs, route, "grid")
    dev = device_of(x=x)
    per_tap = xp.zeros((geom.in_channels, geom.kernel_volume), dtype=x.dtype, device=dev)
    grad_b = xp.zeros((geom.in_channels,), dtype=x.dtype, device=dev) if bias_grad else None
    for job in jobs:
        lay = job.band.layout
        rows = shifted_rows(job.planes(x, xp), job.band.geom.pad, lay, buf, xp, route.padding_mode)
        gy_planes = job.out_planes(grad_output, xp)
        # The output gradient on the grid: zero where the output is thrown away.
        gy = on_grid(gy_planes, lay, gy_buf, xp)
        if exact:
            part = _weight_grad_of_outputs(gy_planes, rows, lay, xp)
        else:
            part = _weight_grad_on_grid(gy, rows, lay, xp)
        per_tap = add_into(per_tap, (job.channels, slice(None)), part)
        if grad_b is not None:
            grad_b = add_into(grad_b, (job.channels,), xp.sum(gy, axis=1))
    return xp.reshape(per_tap, geom.weight_shape), grad_b
