"""The route of a convolution, decided once per call, and each pass as its own function.

::

    functional (checks) -> plan() -> forward | input_grad | weight_grad | bias_grad
        -> _pointwise | _depthwise | _gemm -> _im2col -> _backend

:func:`plan` looks at the geometry and at what the array library can do
(:func:`xpconv._backend.capabilities`, asked once) and fixes every choice in
one :class:`Route`: which kernel computes the forward pass and the weight
gradient, how the input gradient is formed, whether the products go sample
by sample and carry the bias, how many threads the samples are split
across, and the workspace limit in force. The passes
below read the route; none of them asks the backend or the geometry again.

Tests force a route through :func:`forced_route` (configuration, not
monkeypatching), to check that every route gives the same numbers.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from xpconv._backend import (
    Scratch,
    add_into,
    all_finite,
    capabilities,
    device_of,
    itemsize,
    memory_bytes,
    namespace_of,
    set_into,
)
from xpconv._depthwise import depthwise_forward, depthwise_grads, pads_with_modes
from xpconv._gemm import gemm_forward, gemm_input_grad, gemm_weight_grad
from xpconv._geometry import ConvGeometry
from xpconv._pointwise import pointwise_forward, pointwise_input_grad, pointwise_weight_grad
from xpconv._threads import blas_threads, run_all, single_threaded_blas, thread_limit
from xpconv._tiles import even_split
from xpconv._workspace import get_workspace_limit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from xpconv._backend import Capabilities

__all__ = [
    "PER_SAMPLE_MAX_ROWS",
    "Route",
    "bias_grad",
    "check_fits",
    "choose",
    "forced_route",
    "forward",
    "input_grad",
    "padded_input_route",
    "plan",
    "weight_grad",
]

Array = Any
Namespace = Any
T = TypeVar("T")
Kernel = Literal["pointwise", "depthwise", "gemm"]
InputGradBy = Literal["pointwise", "transposed", "col2im"]

# Largest C*K (column rows) for the per-sample products: below it the
# transposed copy of the output that one GEMM needs costs as much as the
# product (docs/performance.md, design-per-sample).
PER_SAMPLE_MAX_ROWS = 192

# Fewest column entries (all samples) worth splitting across threads: below
# it the threads' start and the one-thread BLAS on short products cost what
# they save (docs/performance.md, design-sample-workers).
SAMPLE_WORKERS_MIN_COLUMNS = 1 << 22


@dataclass(frozen=True)
class Route:
    """Every choice of one convolution call, made once by :func:`plan`.

    ``kernel`` computes the forward pass and the weight gradient: a
    ``'pointwise'`` layer needs no im2col, a stride-1 ``'depthwise'`` layer
    works on shifted planes, everything else goes through im2col and matrix
    products (``'gemm'``). ``input_grad_by`` forms the input gradient: the
    pointwise product, a ``'transposed'`` convolution of grad_output (stride
    1, no more output than input channels) or ``'col2im'`` of the column
    gradient. ``per_sample`` and ``fold_bias`` shape the im2col products
    (:mod:`xpconv._gemm`); ``limit`` is the workspace limit in force, and
    ``scratch`` the buffers its passes share. ``padding_mode`` is the mode
    the kernel pads x with as it reads it ('zeros' unless :func:`plan` was
    asked for a mode that the kernel can apply itself). ``workers`` is the
    number of host threads the im2col passes split the samples across
    (:func:`_sample_workers`).
    """

    geom: ConvGeometry
    caps: Capabilities
    limit: int | None
    kernel: Kernel
    input_grad_by: InputGradBy
    per_sample: bool
    fold_bias: bool
    padding_mode: str = "zeros"
    workers: int = 1
    scratch: Scratch = field(default_factory=Scratch, compare=False, repr=False)

    def with_fold_bias(self, fold: bool) -> Route:
        """This route with the bias carried in the products or not (for a call without bias)."""
        return self if fold == self.fold_bias else replace(self, fold_bias=fold)


# --------------------------------------------------------------------------- choosing


def _is_pointwise(geom: ConvGeometry) -> bool:
    # out_size == in_size also rules out the unread positions that a
    # transposed convolution's output_padding adds to the input of the
    # convolution it transposes.
    return (
        all(k == 1 for k in geom.kernel)
        and all(s == 1 for s in geom.stride)
        and not geom.is_padded
        and geom.groups == 1
        and geom.out_size == geom.in_size
    )


def _is_depthwise(geom: ConvGeometry) -> bool:
    return (
        geom.groups > 1
        and geom.groups == geom.in_channels == geom.out_channels
        and all(s == 1 for s in geom.stride)
    )


def _transposes_input_grad(geom: ConvGeometry) -> bool:
    # The transposed convolution unfolds grad_output (O channels) where col2im
    # folds columns of C channels: it moves less data when O <= C.
    return all(s == 1 for s in geom.stride) and geom.out_channels <= geom.in_channels


def _per_sample(geom: ConvGeometry) -> bool:
    return geom.groups == 1 and geom.column_rows <= PER_SAMPLE_MAX_ROWS


def _sample_workers(geom: ConvGeometry, caps: Capabilities, kernel: Kernel) -> int:
    """Host threads to split the samples of an im2col convolution across.

    NumPy copies the columns and adds col2im's slices on one thread, while
    the BLAS runs the products on all of them. Split by samples, each thread
    copies its own columns and multiplies them on a one-thread BLAS while
    they are still in its cache, as PyTorch's CPU convolution does
    (``docs/performance.md``, design-sample-workers). As many threads as
    both xpconv (:func:`xpconv.thread_limit`) and the BLAS may use, no more
    than the samples; none for a convolution too small to pay for them.
    """
    if kernel != "gemm" or not caps.host_threads or geom.batch < 2:
        return 1
    if geom.batch * geom.column_rows * geom.out_volume < SAMPLE_WORKERS_MIN_COLUMNS:
        return 1
    return max(1, min(caps.threads, blas_threads(), geom.batch))


_FORCED: ContextVar[dict[str, Any] | None] = ContextVar("xpconv_forced_route", default=None)


@contextlib.contextmanager
def forced_route(**choices: Any) -> Iterator[None]:
    """Force choices of every :func:`plan` inside the block (for tests).

    ``kernel='gemm'`` and ``input_grad_by='col2im'`` are valid for every
    convolution; ``per_sample`` may be forced either way for one group;
    ``fold_bias=False``; ``scratch=False`` runs the generic array-API code
    instead of the native buffers and strided copies; ``workers=n`` splits
    the samples of any NumPy im2col convolution across n threads (at most
    one per sample).
    """
    allowed = {"kernel", "input_grad_by", "per_sample", "fold_bias", "scratch", "workers"}
    unknown = set(choices) - allowed
    if unknown:
        msg = f"forced_route accepts {sorted(allowed)}, got {sorted(unknown)}"
        raise TypeError(msg)
    if choices.get("kernel", "gemm") != "gemm":
        msg = f"only kernel='gemm' can be forced (it serves every convolution), got {choices}"
        raise ValueError(msg)
    token = _FORCED.set(choices)
    try:
        yield
    finally:
        _FORCED.reset(token)


def choose(
    geom: ConvGeometry, caps: Capabilities, limit: int | None, scratch: Scratch | None = None
) -> Route:
    """The :class:`Route` for ``geom`` on a library that can do ``caps``."""
    forced = _FORCED.get() or {}
    if "scratch" in forced:
        caps = replace(caps, scratch=forced["scratch"] and caps.scratch)
    kernel: Kernel = "gemm"
    if _is_pointwise(geom):
        kernel = "pointwise"
    elif _is_depthwise(geom):
        kernel = "depthwise"
    kernel = forced.get("kernel", kernel)
    by: InputGradBy = "col2im"
    if kernel == "pointwise":
        by = "pointwise"
    elif _transposes_input_grad(geom):
        by = "transposed"
    if kernel != "pointwise" and "input_grad_by" in forced:
        stride_one = all(s == 1 for s in geom.stride)
        by = "transposed" if forced["input_grad_by"] == "transposed" and stride_one else "col2im"
    per_sample = geom.groups == 1 and forced.get("per_sample", _per_sample(geom))
    fold_bias = per_sample and caps.scratch and forced.get("fold_bias", True)
    workers = _sample_workers(geom, caps, kernel)
    if "workers" in forced and kernel == "gemm" and caps.host_threads and caps.threads > 1:
        workers = max(1, min(forced["workers"], geom.batch))
    scratch = Scratch() if scratch is None else scratch
    return Route(
        geom, caps, limit, kernel, by, per_sample, fold_bias, workers=workers, scratch=scratch
    )


def plan(
    geom: ConvGeometry, like: Array, xp: Namespace = None, padding_mode: str = "zeros"
) -> Route:
    """The route of one call on arrays like ``like``: the library is asked here, once.

    A convolution whose smallest workspace tile (the im2col columns of one
    output row of one sample) cannot fit in the device's memory is refused
    here, before any work; the public functions check their results.

    A ``padding_mode`` other than 'zeros' is taken by the depthwise kernel,
    which pads its copies of the planes with it
    (:func:`xpconv._depthwise.pads_with_modes`), and by the im2col route
    when its tiles are whole samples, which pads each tile's copy with it
    (:func:`_gemm_pads_with_modes`): then the route's ``padding_mode`` is
    that mode. Otherwise it stays 'zeros', and the caller pads a copy of x
    with the mode and plans the convolution of that copy with padding 0
    (:func:`xpconv._padding.explicit_padding`).
    """
    caps = capabilities(like)
    item = itemsize(like.dtype, namespace_of(like=like) if xp is None else xp)
    one_band = (geom.column_rows, geom.out_volume // max(geom.out_size[0], 1))
    check_fits(one_band, item, like, "the im2col columns of one output row")
    route = choose(geom, caps, get_workspace_limit(gpu=caps.gpu))
    if padding_mode == "zeros" or not geom.is_padded:
        return route
    if route.kernel == "depthwise" and pads_with_modes(geom, caps, route.limit, item):
        return replace(route, padding_mode=padding_mode)
    if route.kernel == "gemm" and _gemm_pads_with_modes(route, item):
        return replace(route, padding_mode=padding_mode)
    return route


def _gemm_pads_with_modes(route: Route, item: int) -> bool:
    """Whether every im2col tile is whole samples, even on a worker's share of the limit.

    Such a tile pads its copy of the samples with the mode, which saves the
    padded copy of x in the forward pass and the weight gradient
    (``docs/performance.md``, design-gemm-modes). A band's mirrored or
    wrapped rows would lie in other bands.
    """
    if not route.caps.scratch:
        return False
    if route.limit is None:
        return True
    geom = route.geom
    one_sample = (geom.column_rows + 1) * geom.out_volume * item  # + a ones row
    return one_sample <= route.limit // max(route.workers, 1)


def padded_input_route(route: Route) -> Route:
    """The same convolution on x already padded (padding 0 on the padded size).

    With a padding mode, the input gradient is that of the padded input,
    folded back onto x by the mode's adjoint (:func:`xpconv._padding.pad_adjoint`).
    """
    geom = route.geom
    inner = replace(geom, in_size=geom.padded_size, pad=((0, 0),) * geom.rank)
    return choose(inner, route.caps, route.limit, route.scratch)


def check_fits(shape: tuple[int, ...], item: int, like: Array, what: str) -> None:
    """``MemoryError`` naming the size when an array of ``shape`` cannot fit in memory."""
    capacity = memory_bytes(like)
    nbytes = math.prod(shape) * item
    if capacity is not None and nbytes > capacity:
        msg = (
            f"{what} would have shape {shape}: {_human(nbytes)}, more than the "
            f"{_human(capacity)} of memory of the device that holds the arrays"
        )
        raise MemoryError(msg)


def _human(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"):
        if size < 1024 or unit == "YiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


# --------------------------------------------------------------------------- passes


def _zeros(shape: tuple[int, ...], like: Array, xp: Namespace) -> Array:
    return xp.zeros(shape, dtype=like.dtype, device=device_of(like=like))


def _empty(shape: tuple[int, ...], like: Array, xp: Namespace) -> Array:
    return xp.empty(shape, dtype=like.dtype, device=device_of(like=like))


def _into(out: Array | None, result: Array) -> Array:
    """``result``, copied into ``out`` when the caller gave one."""
    return result if out is None else set_into(out, (...,), result)


def forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    route: Route,
    xp: Namespace,
    out: Array | None = None,
) -> Array:
    """The convolution's output (N, O, *out_size), written into ``out`` if given (NumPy)."""
    geom = route.geom
    if geom.batch == 0:  # an empty batch has nothing to tile (PyTorch returns empty too)
        return _zeros(geom.output_shape, x, xp)
    if route.workers > 1:
        y = _empty(geom.output_shape, x, xp) if out is None else out
        _on_workers(route, lambda c, sub: forward(x[c, ...], weight, bias, sub, xp, out=y[c, ...]))
        return y
    if route.kernel == "gemm":
        return gemm_forward(x, weight, bias, route, xp, out=out)
    if route.kernel == "depthwise":
        return _into(out, depthwise_forward(x, weight, bias, route, xp))
    y = pointwise_forward(x, weight, geom, xp)
    if bias is not None:  # in place where the backend allows it: no second output-sized array
        y = add_into(y, (...,), xp.reshape(bias, (geom.out_channels, *(1,) * geom.rank)))
    return _into(out, y)


def input_grad(
    grad_output: Array, weight: Array, route: Route, xp: Namespace, out: Array | None = None
) -> Array:
    """dL/dx (also a transposed convolution's forward pass), written into ``out`` if given."""
    geom = route.geom
    if geom.batch == 0:
        return _zeros(geom.input_shape, grad_output, xp)
    if route.workers > 1:
        gx = _empty(geom.input_shape, grad_output, xp) if out is None else out
        _on_workers(
            route, lambda c, sub: input_grad(grad_output[c, ...], weight, sub, xp, out=gx[c, ...])
        )
        return gx
    if route.input_grad_by == "pointwise":
        return _into(out, pointwise_input_grad(grad_output, weight, geom, xp))
    # The transposed convolution multiplies its zero padding by the weight: a
    # non-finite weight would turn those zeros into NaN where col2im (and
    # PyTorch) add nothing. Unless the weight is known to be finite, col2im.
    if route.input_grad_by == "transposed" and all_finite(weight):
        return _transposed_input_grad(grad_output, weight, route, xp, out)
    route = replace(route, input_grad_by="col2im")
    return gemm_input_grad(grad_output, weight, route, xp, out=out)


def weight_grad(
    grad_output: Array, x: Array, route: Route, xp: Namespace, *, bias: bool
) -> tuple[Array, Array | None]:
    """dL/dW and, with ``bias``, dL/db (summed in the same pass where the kernel can)."""
    geom = route.geom
    if geom.batch == 0:
        grad_b = _zeros((geom.out_channels,), x, xp) if bias else None
        return _zeros(geom.weight_shape, x, xp), grad_b
    if route.workers > 1:
        parts = _on_workers(
            route, lambda c, sub: weight_grad(grad_output[c, ...], x[c, ...], sub, xp, bias=bias)
        )
        grad_w = functools.reduce(operator.add, (w for w, _ in parts))
        return grad_w, (functools.reduce(operator.add, (b for _, b in parts)) if bias else None)
    if route.kernel == "depthwise":
        return depthwise_grads(grad_output, x, route, xp, bias_grad=bias)
    if route.kernel == "pointwise":
        item = itemsize(x.dtype, xp)
        grad_w = pointwise_weight_grad(grad_output, x, geom, item, route.limit, xp)
        grad_b = None
    else:
        grad_w, grad_b = gemm_weight_grad(grad_output, x, route, xp, bias=bias)
    if bias and grad_b is None:
        grad_b = bias_grad(grad_output, xp)
    return grad_w, grad_b


def bias_grad(grad_output: Array, xp: Namespace) -> Array:
    """dL/db: grad_output summed over every axis but the channels."""
    return xp.sum(grad_output, axis=(0, *range(2, grad_output.ndim)))


# --------------------------------------------------------------------------- samples on threads


def _sample_routes(route: Route) -> list[tuple[slice, Route]]:
    """The samples cut into one chunk per worker, each with a route of its own.

    The chunks run at the same time, so each gets its share of the
    workspace limit, and buffers of its own.
    """
    geom = route.geom
    chunks = even_split(geom.batch, math.ceil(geom.batch / route.workers))
    limit = None if route.limit is None else max(route.limit // len(chunks), 1)
    return [
        (
            chunk,
            replace(
                route,
                geom=replace(geom, batch=chunk.stop - chunk.start),
                limit=limit,
                workers=1,
                scratch=route.scratch.part(k),
            ),
        )
        for k, chunk in enumerate(chunks)
    ]


def _on_workers(route: Route, work: Callable[[slice, Route], T]) -> list[T]:
    """``work(chunk, route)`` for every chunk of samples, each on a thread of its own.

    The BLAS runs on one thread meanwhile: the chunks are the parallelism.
    """
    tasks = [functools.partial(_one_thread, work, c, sub) for c, sub in _sample_routes(route)]
    with single_threaded_blas():
        return run_all(tasks)


def _one_thread(work: Callable[[slice, Route], T], chunk: slice, route: Route) -> T:
    with thread_limit(1):  # a worker splits nothing further
        return work(chunk, route)


# --------------------------------------------------------------------------- the transpose rule
# With stride 1, input position p meets grad_output[p + lo - i*d] through
# kernel offset i (along every spatial axis; lo is the padding before the
# axis), so
#
#     dL/dx[p] = sum_i W[:, :, i]^T @ grad_output[p + lo - i*d]
#
# is the cross-correlation of grad_output, padded by d*(k-1) - lo before each
# axis (cropped where that is negative), with the kernel flipped and its
# input and output channels swapped within each group: one more stride-1
# convolution, with O input channels, which has a route of its own (a
# depthwise layer's input gradient is depthwise again). That is one im2col
# and one product with the short (C, O*K) weight on the left, instead of the
# tall (C*K, O) column-gradient product and a K-slice col2im.


def _transposed_geometry(geom: ConvGeometry) -> tuple[ConvGeometry, tuple[slice, ...]]:
    """The convolution that gives dL/dx, and the crop of grad_output it reads."""
    pads, crops = [], []
    for k, d, n, o, (lo, _) in zip(
        geom.kernel, geom.dilation, geom.in_size, geom.out_size, geom.pad, strict=True
    ):
        before = d * (k - 1) - lo
        after = n + d * (k - 1) - o - before  # enough for n outputs; zeros past grad_output
        crops.append(slice(max(-before, 0), o - max(-after, 0)))
        pads.append((max(before, 0), max(after, 0)))
    transposed = ConvGeometry(
        batch=geom.batch,
        in_channels=geom.out_channels,
        out_channels=geom.in_channels,
        groups=geom.groups,
        in_size=tuple(c.stop - c.start for c in crops),
        kernel=geom.kernel,
        stride=geom.stride,
        dilation=geom.dilation,
        pad=tuple(pads),
        out_size=geom.in_size,
    )
    return transposed, tuple(crops)


def _transposed_weight(weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(O, C/g, *kernel) -> (C, O/g, *kernel), flipped along every kernel axis."""
    g, o, c = geom.groups, geom.out_channels, geom.in_channels
    spatial = tuple(range(3, 3 + geom.rank))
    per_group = xp.reshape(weight, (g, o // g, c // g, *geom.kernel))
    swapped = xp.reshape(xp.permute_dims(per_group, (0, 2, 1, *spatial)), (c, o // g, *geom.kernel))
    return xp.flip(swapped, axis=tuple(a - 1 for a in spatial))


def _transposed_input_grad(
    grad_output: Array, weight: Array, route: Route, xp: Namespace, out: Array | None
) -> Array:
    transposed, crops = _transposed_geometry(route.geom)
    gy = grad_output[(slice(None), slice(None), *crops)]
    flipped = _transposed_weight(weight, route.geom, xp)
    route = choose(transposed, route.caps, route.limit, route.scratch)
    return forward(gy, flipped, None, route, xp, out=out)
