"""Dask adapter: block-wise convolutions over a batch-chunked ``dask.array``, any rank.

:func:`xpconv.conv` accepts Dask arrays through the array API, but its
batched matmuls merge the batch chunks. The functions here keep Dask's
parallelism where a convolution has it, in the batch axis:

* :func:`conv` (and :func:`conv1d`, :func:`conv2d`, :func:`conv3d`) runs
  :func:`xpconv.conv` on every batch chunk (a NumPy or CuPy block) with
  ``blockwise``: one task per chunk, lazily, never gathering the batch into
  one chunk. Channels and spatial axes are rechunked to one chunk each, as a
  convolution needs whole images (signals, volumes).
* :func:`conv_backward` (and the ``conv1d/2d/3d_backward`` of each rank) runs
  :func:`xpconv.conv_backward` once per batch chunk; the input gradient stays
  chunked like the input, the weight and bias gradients are a sum (tree
  reduction) of the per-chunk gradients.
* :class:`BlockwiseConv` runs an :class:`xpconv.Conv1d`, :class:`xpconv.Conv2d`
  or :class:`xpconv.Conv3d` layer (parameters in NumPy or CuPy) on Dask inputs.

The weight and bias may be NumPy or CuPy arrays (the library of the input's
blocks) or single-chunk Dask arrays; they are shipped to each worker once.
Everything returned is lazy: call ``.compute()`` (or ``dask.compute`` on
several results together, so shared work runs once).

Examples
--------
>>> import dask.array as da
>>> import numpy as np
>>> import xpconv.dask
>>> x = da.ones((8, 3, 16, 16), chunks=(2, 3, 16, 16))
>>> y = xpconv.dask.conv2d(x, np.ones((4, 3, 3, 3)), padding=1)
>>> y.chunks[0], y.shape
((2, 2, 2, 2), (8, 4, 16, 16))
>>> float(y[0, 0, 5, 5].compute())
27.0
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import array_api_compat as compat
import dask.array as da
from dask.base import tokenize

from xpconv._backend import namespace_of
from xpconv._geometry import (
    ConvGeometry,
    PaddingArg,
    SizeArg,
    conv_geometry,
    input_layout,
    spatial_names,
)
from xpconv._padding import check_mode, check_pads
from xpconv._threads import explicit_thread_limit, thread_limit
from xpconv._workspace import explicit_limit, workspace_limit
from xpconv.functional import ConvGradients
from xpconv.functional import conv as _core_conv
from xpconv.functional import conv_backward as _core_conv_backward

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BlockwiseConv",
    "BlockwiseConv2d",
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_backward",
]

Array = Any


# --------------------------------------------------------------------------- helpers


def _single(blocks: Any) -> Any:
    """The one block behind ``blockwise``'s nested lists for a contracted index.

    Axes that are not in a ``blockwise`` output arrive as nested lists of
    blocks; every such axis is a single chunk here, so each list has one item.
    """
    while isinstance(blocks, list):
        blocks = blocks[0]
    return blocks


def _meta_of(a: Any) -> Any:
    """The NumPy/CuPy type stand-in of a Dask array (or the array itself)."""
    return a._meta if isinstance(a, da.Array) else a


def _as_single_chunk(a: Array | None, name: str) -> da.Array | None:
    """A parameter as a one-chunk Dask array: one graph key, sent to each worker once."""
    if a is None:
        return None
    if isinstance(a, da.Array):
        return a.rechunk(-1)
    if not (compat.is_numpy_array(a) or compat.is_cupy_array(a)):
        msg = (
            f"{name} must be a NumPy, CuPy or Dask array when the input is a Dask array, "
            f"got {type(a).__module__}.{type(a).__name__}"
        )
        raise TypeError(msg)
    return da.from_array(a, chunks=a.shape)


def _check_input(x: object, name: str) -> da.Array:
    if not isinstance(x, da.Array):
        msg = (
            f"{name} must be a dask.array.Array for xpconv.dask, got "
            f"{type(x).__module__}.{type(x).__name__}; use xpconv.conv2d for other arrays"
        )
        raise TypeError(msg)
    if any(math.isnan(s) for s in x.shape):
        msg = f"{name} must have known chunk sizes, got shape {x.shape}; call compute_chunk_sizes()"
        raise ValueError(msg)
    return x


def _check(
    x: da.Array,
    weight: Array,
    bias: Array | None,
    conv_args: dict[str, Any],
    **others: Array,
) -> ConvGeometry:
    """The core's checks, done eagerly on shapes, dtypes and block types."""
    rank = weight.ndim - 2
    if rank < 1 or x.ndim != rank + 2:
        msg = (
            f"x must be {rank + 2}-D {input_layout(max(rank, 1))} for xpconv.dask with a weight "
            f"of shape {tuple(weight.shape)}, got shape {x.shape}"
        )
        raise ValueError(msg)
    metas = {"x": _meta_of(x), "weight": _meta_of(weight), "bias": _meta_of(bias)}
    metas.update({k: _meta_of(v) for k, v in others.items()})
    xp = namespace_of(**metas)  # NumPy blocks with CuPy weights, etc.
    dtypes = {k: m.dtype for k, m in metas.items() if m is not None}
    for name, dtype in dtypes.items():
        if not xp.isdtype(dtype, ("real floating", "complex floating")):
            msg = f"{name} must have a floating dtype (real or complex), got {dtype}"
            raise TypeError(msg)
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        msg = f"arrays must share one dtype, got {listed}; cast them with astype first"
        raise TypeError(msg)
    geometry_args = {k: v for k, v in conv_args.items() if k != "padding_mode"}
    geom = conv_geometry(tuple(x.shape), tuple(weight.shape), **geometry_args)
    # A pad too large for the padding mode fails here, before any task runs.
    mode = check_mode(conv_args.get("padding_mode", "zeros"))
    if mode != "zeros":
        check_pads(mode, geom.in_size, geom.pad, spatial_names(geom.rank))
    if bias is not None and tuple(bias.shape) != (geom.out_channels,):
        msg = (
            f"bias must have shape ({geom.out_channels},) (one value per output channel), "
            f"got {tuple(bias.shape)}"
        )
        raise ValueError(msg)
    return geom


def _whole_images(x: da.Array) -> da.Array:
    """Keep the batch chunks; make the channels and every spatial axis one chunk each."""
    if all(len(c) == 1 for c in x.chunks[1:]):
        return x
    return x.rechunk(dict.fromkeys(range(1, x.ndim), -1))


def _indices(rank: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``blockwise`` index names of x, weight and y (``(N, C, *spatial)``, ...)."""
    spatial = tuple(f"x{i}" for i in range(rank))
    kernel = tuple(f"k{i}" for i in range(rank))
    out = tuple(f"y{i}" for i in range(rank))
    return ("n", "c", *spatial), ("o", "cg", *kernel), ("n", "o", *out)


# --------------------------------------------------------------------------- blocks
# Top-level functions (not closures) so the graph pickles by reference.

Limits = tuple[tuple[bool, int | None], int | None]


def _limits() -> Limits:
    """The workspace and thread limits in force where the graph is built.

    The tasks run later, on Dask's threads or other processes, where the
    caller's ``workspace_limit``/``thread_limit`` blocks are not in force.
    """
    return explicit_limit(), explicit_thread_limit()


@contextlib.contextmanager
def _under(limits: Limits) -> Iterator[None]:
    (workspace_set, workspace), threads = limits
    with contextlib.ExitStack() as stack:
        if workspace_set:
            stack.enter_context(workspace_limit(workspace))
        if threads is not None:
            stack.enter_context(thread_limit(threads))
        yield


def _forward_block(x: Any, weight: Any, bias: Any, *, limits: Limits, **conv_args: Any) -> Any:
    bias = None if bias is None else _single(bias)
    with _under(limits):
        return _core_conv(_single(x), _single(weight), bias, **conv_args)


def _backward_block(
    grad_output: Any, x: Any, weight: Any, *, bias: bool, limits: Limits, **conv_args: Any
) -> tuple[Any, Any, Any]:
    with _under(limits):
        grads = _core_conv_backward(
            _single(grad_output), _single(x), _single(weight), bias=bias, **conv_args
        )
    # Leading axis of one: the per-chunk parameter gradients are summed over it.
    gb = None if grads.bias is None else grads.bias[None, ...]
    return grads.input, grads.weight[None, ...], gb


def _pick(parts: Any, index: int) -> Any:
    return parts[index]


# --------------------------------------------------------------------------- public API


def conv(
    x: da.Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> da.Array:
    """:func:`xpconv.conv` on a Dask array, one task per batch chunk, any rank.

    Parameters
    ----------
    x : dask.array.Array
        Input ``(N, C, *spatial)`` (or unbatched ``(C, *spatial)``) with NumPy or CuPy
        blocks, chunked along N. Chunks along the other axes are merged (per
        batch chunk, never across the batch).
    weight, bias : array
        NumPy or CuPy arrays of the same library and dtype as the blocks of
        `x`, or Dask arrays (merged into one chunk). The spatial rank is
        ``weight.ndim - 2``.
    stride, padding, dilation, groups, padding_mode
        As for :func:`xpconv.conv`.
    xp : namespace, optional
        Accepted for signature compatibility; unused (the blocks' library is used).

    Returns
    -------
    dask.array.Array
        Lazy ``(N, O, *out)`` result with the batch chunks of `x`. The tasks run
        under the workspace and thread limits in force when this is called.

    Raises
    ------
    TypeError
        `x` is not a Dask array; parameters from another library or dtype.
    ValueError
        As :func:`xpconv.conv`, checked before anything is computed.
    """
    del xp
    x = _check_input(x, "x")
    conv_args: dict[str, Any] = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
    }
    if x.ndim == weight.ndim - 1:  # unbatched
        return conv(x[None, ...], weight, bias, **conv_args)[0]
    geom = _check(x, weight, bias, conv_args)
    limits = _limits()
    x = _whole_images(x)
    w = _as_single_chunk(weight, "weight")
    b = _as_single_chunk(bias, "bias")
    x_ind, w_ind, y_ind = _indices(geom.rank)
    return da.blockwise(
        _forward_block,
        y_ind,
        x,
        x_ind,
        w,
        w_ind,
        *((b, ("o",)) if b is not None else (None, None)),
        new_axes=dict(zip(y_ind[1:], geom.output_shape[1:], strict=True)),
        name="xpconv-forward-" + tokenize(x, w, b, conv_args, limits),
        dtype=x.dtype,
        meta=x._meta,
        limits=limits,
        **conv_args,
    )


def conv_backward(
    grad_output: da.Array,
    x: da.Array,
    weight: Array,
    /,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> ConvGradients:
    """:func:`xpconv.conv_backward` on Dask arrays, one task per batch chunk, any rank.

    Parameters
    ----------
    grad_output : dask.array.Array
        dL/dy, shape of ``conv(x, weight, ...)``; rechunked to the batch
        chunks of `x` if they differ.
    x : dask.array.Array
        The forward pass's input.
    weight : array
        NumPy/CuPy array or Dask array, as for :func:`conv`.
    stride, padding, dilation, groups, bias, padding_mode
        As for :func:`xpconv.conv_backward`.
    xp : namespace, optional
        Accepted for signature compatibility; unused.

    Returns
    -------
    ConvGradients
        Lazy Dask arrays ``(input, weight, bias)``: `input` chunked like `x`,
        `weight` and `bias` sums over the batch chunks. Compute them together
        (``dask.compute(*grads)``) so that each chunk's backward runs once.
    """
    del xp
    x = _check_input(x, "x")
    grad_output = _check_input(grad_output, "grad_output")
    conv_args: dict[str, Any] = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
    }
    if x.ndim == weight.ndim - 1:  # unbatched
        grads = conv_backward(grad_output[None, ...], x[None, ...], weight, bias=bias, **conv_args)
        return ConvGradients(grads.input[0], grads.weight, grads.bias)
    geom = _check(x, weight, None, conv_args, grad_output=grad_output)
    if tuple(grad_output.shape) != geom.output_shape:
        msg = (
            f"grad_output must have the convolution's output shape {geom.output_shape}, "
            f"got {tuple(grad_output.shape)}"
        )
        raise ValueError(msg)
    limits = _limits()
    x = _whole_images(x)
    grad_output = grad_output.rechunk({0: x.chunks[0], **dict.fromkeys(range(1, x.ndim), -1)})
    w = _as_single_chunk(weight, "weight")
    meta = x._meta
    x_ind, w_ind, y_ind = _indices(geom.rank)
    # One task per batch chunk returns (grad_input, grad_weight, grad_bias).
    parts = da.blockwise(
        _backward_block,
        "n",
        grad_output,
        y_ind,
        x,
        x_ind,
        w,
        w_ind,
        name="xpconv-backward-" + tokenize(grad_output, x, w, bias, conv_args, limits),
        dtype=x.dtype,
        meta=meta.reshape((0,)),
        bias=bias,
        limits=limits,
        **conv_args,
    )
    grad_x = _part(parts, 0, x_ind, geom.input_shape[1:], meta)
    grad_w = _part(parts, 1, ("n", *w_ind), geom.weight_shape, meta, per_chunk=True).sum(axis=0)
    grad_b = None
    if bias:
        grad_b = _part(parts, 2, ("n", "o"), (geom.out_channels,), meta, per_chunk=True)
        grad_b = grad_b.sum(axis=0)
    return ConvGradients(grad_x, grad_w, grad_b)


def _part(
    parts: da.Array,
    index: int,
    indices: tuple[str, ...],
    sizes: tuple[int, ...],
    meta: Any,
    *,
    per_chunk: bool = False,
) -> da.Array:
    """Item ``index`` of each batch chunk's backward result, as one Dask array.

    ``indices`` name its axes, the first ``"n"``; ``sizes`` are those of the
    others. The input gradient keeps the batch chunks; a parameter gradient
    (``per_chunk``) has one leading entry per chunk, for the caller to sum.
    """
    return da.blockwise(
        _pick,
        indices,
        parts,
        "n",
        index,
        None,
        new_axes=dict(zip(indices[1:], sizes, strict=True)),
        **({"adjust_chunks": {"n": 1}} if per_chunk else {}),
        dtype=meta.dtype,
        meta=meta.reshape((0,) * len(indices)),
    )


def _ranked(rank: int, function: Any, backward: Any) -> tuple[Any, Any]:
    """``conv{rank}d`` and ``conv{rank}d_backward``: the generic functions, rank checked."""

    def check(weight: Array, name: str) -> None:
        if weight.ndim != rank + 2:
            msg = (
                f"{name} expects a {rank + 2}-D weight (out_channels, in_channels/groups, "
                f"*kernel), got shape {tuple(weight.shape)}"
            )
            raise ValueError(msg)

    def forward(x: da.Array, weight: Array, /, bias: Array | None = None, **kw: Any) -> da.Array:
        check(weight, f"conv{rank}d")
        return function(x, weight, bias, **kw)

    def grads(grad_output: da.Array, x: da.Array, weight: Array, /, **kw: Any) -> ConvGradients:
        check(weight, f"conv{rank}d_backward")
        return backward(grad_output, x, weight, **kw)

    forward.__name__, grads.__name__ = f"conv{rank}d", f"conv{rank}d_backward"
    forward.__qualname__, grads.__qualname__ = forward.__name__, grads.__name__
    forward.__doc__ = (
        f":func:`conv` with a {rank}-D kernel checked (``xpconv.conv{rank}d`` block-wise)."
    )
    grads.__doc__ = f":func:`conv_backward` with a {rank}-D kernel checked."
    return forward, grads


conv1d, conv1d_backward = _ranked(1, conv, conv_backward)
conv2d, conv2d_backward = _ranked(2, conv, conv_backward)
conv3d, conv3d_backward = _ranked(3, conv, conv_backward)


class BlockwiseConv:
    """Run an :class:`xpconv.Conv1d`, ``Conv2d`` or ``Conv3d`` layer on Dask inputs.

    The layer keeps its NumPy (or CuPy) parameters; :meth:`forward` and
    :meth:`backward` are lazy and block-wise, :meth:`step` computes the
    parameter gradients and applies the layer's SGD step.

    Parameters
    ----------
    layer : xpconv.Conv1d, xpconv.Conv2d or xpconv.Conv3d
        A layer whose parameters are NumPy or CuPy arrays.

    Examples
    --------
    >>> import dask.array as da
    >>> import xpconv, xpconv.dask
    >>> layer = xpconv.dask.BlockwiseConv(xpconv.Conv2d(3, 4, 3, padding=1, rng=0))
    >>> y = layer(da.ones((8, 3, 16, 16), chunks=(2, 3, 16, 16)))
    >>> grad_x = layer.backward(da.ones_like(y))
    >>> layer.step(0.1)  # computes the weight and bias gradients
    >>> grad_x.chunks[0]
    (2, 2, 2, 2)
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._input: da.Array | None = None
        self.grad_weight: da.Array | None = None
        self.grad_bias: da.Array | None = None

    @property
    def _conv_args(self) -> dict[str, Any]:
        layer = self.layer
        return {
            "stride": layer.stride,
            "padding": layer.padding,
            "dilation": layer.dilation,
            "groups": layer.groups,
            "padding_mode": getattr(layer, "padding_mode", "zeros"),
        }

    def forward(self, x: da.Array) -> da.Array:
        """Lazy, block-wise forward; remembers `x` for :meth:`backward`."""
        y = conv(x, self.layer.weight, self.layer.bias, **self._conv_args)
        self._input = x
        return y

    __call__ = forward

    def backward(self, grad_output: da.Array) -> da.Array:
        """Lazy dL/dx; sets the lazy ``grad_weight`` and ``grad_bias`` of this wrapper."""
        if self._input is None:
            msg = "backward() needs a forward() call first: the layer has no saved input"
            raise RuntimeError(msg)
        grads = conv_backward(
            grad_output,
            self._input,
            self.layer.weight,
            bias=self.layer.bias is not None,
            **self._conv_args,
        )
        self.grad_weight, self.grad_bias = grads.weight, grads.bias
        return grads.input

    def step(self, lr: float) -> None:
        """Compute the parameter gradients and apply the wrapped layer's SGD step."""
        if self.grad_weight is None:
            msg = "step() needs a backward() call first: there are no gradients"
            raise RuntimeError(msg)
        import dask

        if self.grad_bias is None:
            (gw,) = dask.compute(self.grad_weight)
            gb = None
        else:
            gw, gb = dask.compute(self.grad_weight, self.grad_bias)
        self.layer.grad_weight, self.layer.grad_bias = gw, gb
        self.layer.step(lr)


#: The name :class:`BlockwiseConv` had when it ran :class:`xpconv.Conv2d` only.
BlockwiseConv2d = BlockwiseConv
