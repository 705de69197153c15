"""Convolution functions with PyTorch semantics for any array API library and any rank.

Layouts follow ``torch.nn.functional``: inputs are ``(N, C, *spatial)`` (or
unbatched ``(C, *spatial)``), weights are ``(out_channels, in_channels/groups,
*kernel)`` and the operation is a cross-correlation. The spatial rank ``D``
comes from the weight: 1 for signals (N, C, L), 2 for images (N, C, H, W), 3
for volumes (N, C, D, H, W), and any higher rank through :func:`conv`.
Results stay in the inputs' namespace, dtype and device; inputs are never
modified.

This module checks the arguments and documents the functions; the route
and the kernels live in :mod:`xpconv._engine`.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, NamedTuple

from array_api_compat import is_dask_array

from xpconv import _engine
from xpconv._backend import (
    add_into,
    device_of,
    itemsize,
    namespace_of,
    native_byte_order,
    quiet_float_errors,
    resolve_namespace,
)
from xpconv._geometry import (
    ConvGeometry,
    PaddingArg,
    SizeArg,
    as_tuple,
    conv_geometry,
    input_layout,
    spatial_names,
    transpose_geometry,
    window_geometry,
)
from xpconv._im2col import col2im, im2col
from xpconv._padding import check_mode, check_pads, explicit_padding, pad_adjoint, zeros_only

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "Conv2dGradients",
    "ConvGradients",
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_backward",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_transpose_backward",
    "fold",
    "unfold",
]

Array = Any
Namespace = Any


class ConvGradients(NamedTuple):
    """Gradients returned by :func:`conv_backward` (and ``conv1d/2d/3d_backward``)."""

    input: Array
    weight: Array
    bias: Array | None


#: The name :func:`conv2d_backward`'s result had before the N-d functions.
Conv2dGradients = ConvGradients


# --------------------------------------------------------------------------- checks


_DTYPES = "float16, bfloat16, float32, float64, complex64 or complex128, where the library has it"


def _check_arrays(xp: Any, **arrays: Array | None) -> tuple[Namespace, list[Array | None], Any]:
    """Namespace, device and dtype checks shared by every public function.

    Returns the namespace, the arrays ready to compute with and the dtype of
    the results. The arrays come in native byte order (a big-endian NumPy
    array is copied once, so that results and gradients share its dtype) and
    half precision (float16, bfloat16) is widened to float32: the products
    accumulate in float32 and the results are narrowed back (:func:`_narrow`).
    Every array but ``bias`` is required.
    """
    _check_present(**arrays)
    inferred = namespace_of(**arrays)
    if xp is not None and resolve_namespace(xp) is not inferred:
        msg = f"xp={xp!r} is not the namespace of the arrays ({inferred.__name__})"
        raise TypeError(msg)
    device_of(**arrays)
    dtypes = {}
    for name, a in arrays.items():
        if a is None:
            continue
        if _dtype_kind(inferred, a.dtype) is None:
            msg = f"{name} must have a floating dtype ({_DTYPES}), got {a.dtype}"
            raise TypeError(msg)
        dtypes[name] = a.dtype
    checked = [None if a is None else native_byte_order(a) for a in arrays.values()]
    kinds = {a.dtype for a in checked if a is not None}
    if len(kinds) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        msg = f"arrays must share one dtype, got {listed}; cast them with xp.astype first"
        raise TypeError(msg)
    (dtype,) = kinds
    if _dtype_kind(inferred, dtype) == "half":
        checked = [None if a is None else inferred.astype(a, inferred.float32) for a in checked]
    return inferred, checked, dtype


def _check_present(**arrays: Array | None) -> None:
    for name, a in arrays.items():
        if a is None and name != "bias":
            msg = f"{name} must be an array, got None"
            raise TypeError(msg)


def _blockwise(data: Array) -> ModuleType | None:
    """:mod:`xpconv.dask` when `data` is a Dask array, else None.

    The generic path would merge Dask's batch chunks into one block (and
    reject NumPy weights as another library); the block-wise path runs one
    task per batch chunk. Imported here, lazily, so that xpconv does not
    need Dask.
    """
    if not is_dask_array(data):
        return None
    from xpconv import dask as blockwise

    return blockwise


def _check_blockwise(
    op: str, rank: int | None, xp: Any, conv_args: dict[str, Any], **arrays: Array | None
) -> None:
    """The core's checks and messages for a Dask input, on shapes and the blocks' types."""
    _check_present(**arrays)
    if xp is not None and resolve_namespace(xp) is not namespace_of(x=arrays["x"]):
        msg = f"xp={xp!r} is not the namespace of the arrays (x is a Dask array)"
        raise TypeError(msg)
    _check_arrays(None, **{k: getattr(a, "_meta", a) for k, a in arrays.items()})
    x, weight, grad_output = arrays["x"], arrays["weight"], arrays.get("grad_output")
    assert x is not None
    assert weight is not None
    unbatched = _is_unbatched(x, _kernel_rank(weight, op, rank), op)
    x_shape = (1, *x.shape) if unbatched else tuple(x.shape)
    geom = conv_geometry(x_shape, tuple(weight.shape), **conv_args)
    _check_channels(geom, op)
    _check_bias(arrays.get("bias"), geom.out_channels)
    if grad_output is not None:
        _check_grad_output(grad_output, geom, op, unbatched=unbatched)


def _check_grad_output(grad_output: Array, geom: ConvGeometry, op: str, *, unbatched: bool) -> None:
    expected = geom.output_shape[1:] if unbatched else geom.output_shape
    if tuple(grad_output.shape) != expected:
        got = tuple(grad_output.shape)
        msg = f"grad_output must have the {op} output shape {expected}, got {got}"
        raise ValueError(msg)


@functools.lru_cache(maxsize=64)
def _dtype_kind(xp: Namespace, dtype: Any) -> str | None:
    """'half', 'real' or 'complex' for a floating dtype, None for any other."""
    if xp.isdtype(dtype, "complex floating"):
        return "complex"
    if xp.isdtype(dtype, "real floating"):
        return "half" if xp.finfo(dtype).bits == 16 else "real"
    return None


def _narrow(a: Array, dtype: Any, xp: Namespace) -> Array:
    """A result back in the inputs' dtype (half precision was computed in float32)."""
    return a if a is None or a.dtype == dtype else xp.astype(a, dtype)


def _conj(a: Array, xp: Namespace) -> Array:
    """The complex conjugate (``a`` itself for real arrays: no copy)."""
    return xp.conj(a) if xp.isdtype(a.dtype, "complex floating") else a


def _check_channels(geom: ConvGeometry, op: str) -> None:
    """PyTorch refuses a weight without output channels; no input channels is refused too."""
    if geom.out_channels == 0:
        msg = f"{op} needs at least one output channel, got a weight of shape {geom.weight_shape}"
        raise ValueError(msg)
    if geom.in_channels == 0:
        msg = f"{op} needs at least one input channel, got an input of shape {geom.input_shape}"
        raise ValueError(msg)


def _weight_layout(rank: int, *, transposed: bool = False) -> str:
    channels = (
        "in_channels, out_channels/groups" if transposed else "out_channels, in_channels/groups"
    )
    return f"({channels}, " + ", ".join(f"K{a}" for a in spatial_names(rank)) + ")"


def _kernel_rank(weight: Array, op: str, rank: int | None, *, transposed: bool = False) -> int:
    """The spatial rank from the weight, checked against the function's own rank."""
    if rank is not None:
        if weight.ndim != rank + 2:
            layout = _weight_layout(rank, transposed=transposed)
            msg = f"{op} expects a {rank + 2}-D weight {layout}, got shape {tuple(weight.shape)}"
            raise ValueError(msg)
        return rank
    if weight.ndim < 3:
        channels = "in_channels, out_channels/groups" if transposed else "out_channels, ..."
        msg = (
            f"{op} expects a weight ({channels}, *kernel) with at least one spatial axis, "
            f"got shape {tuple(weight.shape)}"
        )
        raise ValueError(msg)
    return int(weight.ndim) - 2


def _is_unbatched(x: Array, rank: int, op: str, name: str = "x") -> bool:
    """Whether ``x`` is ``(C, *spatial)`` rather than ``(N, C, *spatial)``; else a ValueError."""
    if x.ndim not in (rank + 1, rank + 2):
        msg = (
            f"{op} expects a {rank + 2}-D {input_layout(rank)} or {rank + 1}-D "
            f"{input_layout(rank, batched=False)} input {name}, got shape {tuple(x.shape)}"
        )
        raise ValueError(msg)
    return bool(x.ndim == rank + 1)


def _batched(x: Array, rank: int, xp: Namespace, op: str, name: str = "x") -> tuple[Array, bool]:
    """``x`` with a batch axis (added for an unbatched input, as PyTorch does)."""
    if _is_unbatched(x, rank, op, name):
        return xp.expand_dims(x, axis=0), True
    return x, False


def _check_bias(bias: Array | None, channels: int) -> None:
    if bias is not None and tuple(bias.shape) != (channels,):
        msg = (
            f"bias must have shape ({channels},) (one value per output channel), "
            f"got {tuple(bias.shape)}"
        )
        raise ValueError(msg)


def _op_name(op: str, rank: int | None) -> str:
    return op if rank is None else f"{op}{rank}d"


# --------------------------------------------------------------------------- conv


def _conv(
    x: Array,
    weight: Array,
    bias: Array | None,
    rank: int | None,
    xp: Any,
    padding_mode: str,
    **conv_args: Any,
) -> Array:
    op = _op_name("conv", rank)
    mode = check_mode(padding_mode)
    if (blockwise := _blockwise(x)) is not None:
        _check_blockwise(op, rank, xp, conv_args, x=x, weight=weight, bias=bias)
        return blockwise.conv(x, weight, bias, padding_mode=mode, **conv_args)
    xp, (x, weight, bias), dtype = _check_arrays(xp, x=x, weight=weight, bias=bias)
    rank = _kernel_rank(weight, op, rank)
    xb, unbatched = _batched(x, rank, xp, op)
    geom = conv_geometry(tuple(xb.shape), tuple(weight.shape), **conv_args)
    _check_channels(geom, op)
    _check_bias(bias, geom.out_channels)
    _engine.check_fits(geom.output_shape, itemsize(x.dtype, xp), x, f"{op}'s output")
    xb, route = _padded_route(xb, geom, mode, xp)
    with quiet_float_errors(xb):
        y = _engine.forward(xb, weight, bias, route, xp)
    return _narrow(y[0, ...] if unbatched else y, dtype, xp)


def _padded_route(x: Array, geom: ConvGeometry, mode: str, xp: Any) -> tuple[Array, _engine.Route]:
    """The input the engine reads and its route, padded with ``mode``.

    The depthwise kernel pads with the mode as it copies its planes; for the
    others, x is padded with the mode first and the engine convolves that
    copy with padding 0 (:func:`xpconv._padding.explicit_padding`).
    """
    if mode == "zeros" or not geom.is_padded:
        return x, _engine.plan(geom, x, xp)
    check_pads(mode, geom.in_size, geom.pad, spatial_names(geom.rank))
    route = _engine.plan(geom, x, xp, padding_mode=mode)
    if route.padding_mode == mode:
        return x, route
    x, geom = explicit_padding(x, geom, mode, xp)
    return x, _engine.plan(geom, x, xp)


def conv(
    x: Array,
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
) -> Array:
    """Convolution (cross-correlation) over any number of spatial dimensions.

    The spatial rank ``D`` is ``weight.ndim - 2``; :func:`conv1d`,
    :func:`conv2d` and :func:`conv3d` are this function with the rank
    checked, like ``torch.nn.functional.conv1d/2d/3d``.

    Parameters
    ----------
    x : array
        Input of shape ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, with ``D``
        spatial axes and a real floating dtype.
    weight : array
        Filters of shape ``(O, C/groups, *kernel)``, same dtype, namespace and
        device as `x`.
    bias : array, optional
        Shape (O,). Added to every output position of its channel.
    stride, dilation : int or tuple of D ints, optional
        Step between windows and between kernel taps; positive.
    padding : int, tuple of D ints, 'valid', 'same' or 'full', optional
        Values added on both sides of each spatial axis. ``'same'`` gives an
        output of size ``ceil(size / stride)`` along each axis
        (TensorFlow/JAX rule, the odd value at the end), which for stride 1 is
        PyTorch's ``padding='same'``. ``'full'`` pads ``dilation*(kernel-1)``
        on each side: every window that overlaps the input (the 'full'
        convolution of signal processing).
    groups : int, optional
        Split channels into `groups` independent convolutions (``groups == C``
        is a depthwise convolution).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}, optional
        What the padding holds: zeros (the default); the input mirrored
        without repeating the edge (``'reflect'``, PyTorch's and
        ``numpy.pad``'s) or with it (``'symmetric'``, ``numpy.pad``'s); the
        edge value repeated (``'replicate'``); or the input wrapped around
        (``'circular'``). ``'reflect'`` needs a padding smaller than the
        input size, ``'symmetric'`` and ``'circular'`` at most the size.
        :func:`conv_backward` with the same mode folds the gradient of the
        padding back onto the input.
    xp : namespace, optional
        The array API namespace (or the library module, such as ``torch``);
        inferred from the inputs by default.

    Returns
    -------
    array
        Shape ``(N, O, *out)`` with ``out = (size + pad_before + pad_after -
        dilation*(kernel-1) - 1) // stride + 1`` along each axis.

    Raises
    ------
    ValueError
        Wrong ranks, a tuple of the wrong length, channel/group mismatch,
        kernel larger than the padded input, non-positive stride or dilation,
        negative padding, unknown padding string or mode, a padding too large
        for the mode, arrays on different devices.
    TypeError
        Arrays from different libraries, different dtypes, non-floating
        dtypes, non-integer sizes, an `xp` that is not the arrays' namespace.

    Examples
    --------
    A 4-D convolution (three spatial axes and time, say), which PyTorch has no
    function for:

    >>> import numpy as np
    >>> import xpconv
    >>> x = np.ones((1, 1, 4, 4, 4, 4))
    >>> w = np.ones((2, 1, 2, 2, 2, 2))
    >>> xpconv.conv(x, w, stride=2).shape
    (1, 2, 2, 2, 2, 2)
    >>> float(xpconv.conv(x, w)[0, 0, 0, 0, 0, 0])   # 2**4 ones
    16.0

    A padding mode: a 1-tap kernel returns the padded signal.

    >>> signal = np.arange(1.0, 5.0).reshape(1, 1, 4)
    >>> xpconv.conv(signal, np.ones((1, 1, 1)), padding=2, padding_mode="reflect")
    array([[[3., 2., 1., 2., 3., 4., 3., 2.]]])
    """
    return _conv(
        x,
        weight,
        bias,
        None,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv1d(
    x: Array,
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
) -> Array:
    """1-D convolution, like ``torch.nn.functional.conv1d``: :func:`conv` for signals.

    `x` is (N, C, L) or (C, L), `weight` (O, C/groups, K); the other arguments
    are those of :func:`conv`, as ints or 1-tuples.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.conv1d(np.arange(6.0).reshape(1, 1, 6), np.ones((1, 1, 3)), stride=2)
    array([[[3., 9.]]])
    """
    return _conv(
        x,
        weight,
        bias,
        1,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv2d(
    x: Array,
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
) -> Array:
    """2-D convolution, like ``torch.nn.functional.conv2d``: :func:`conv` for images.

    `x` is (N, C, H, W) or (C, H, W), `weight` (O, C/groups, KH, KW); the
    other arguments are those of :func:`conv`, as ints or pairs.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> xpconv.conv2d(x, w, stride=2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    return _conv(
        x,
        weight,
        bias,
        2,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv3d(
    x: Array,
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
) -> Array:
    """3-D convolution, like ``torch.nn.functional.conv3d``: :func:`conv` for volumes.

    `x` is (N, C, D, H, W) or (C, D, H, W), `weight` (O, C/groups, KD, KH,
    KW); the other arguments are those of :func:`conv`, as ints or 3-tuples.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> y = xpconv.conv3d(np.ones((2, 3, 8, 8, 8)), np.ones((4, 3, 3, 3, 3)), padding=1)
    >>> y.shape, float(y[0, 0, 4, 4, 4])
    ((2, 4, 8, 8, 8), 81.0)
    """
    return _conv(
        x,
        weight,
        bias,
        3,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


# --------------------------------------------------------------------------- backward


def _conv_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    rank: int | None,
    bias: bool,
    xp: Any,
    padding_mode: str,
    **conv_args: Any,
) -> ConvGradients:
    op = _op_name("conv", rank)
    mode = check_mode(padding_mode)
    if not isinstance(bias, bool):
        msg = f"bias must be True or False (whether to compute dL/db), got {bias!r}"
        raise TypeError(msg)
    if (blockwise := _blockwise(x)) is not None:
        _check_blockwise(op, rank, xp, conv_args, grad_output=grad_output, x=x, weight=weight)
        return blockwise.conv_backward(
            grad_output, x, weight, bias=bias, padding_mode=mode, **conv_args
        )
    xp, (grad_output, x, weight), dtype = _check_arrays(
        xp, grad_output=grad_output, x=x, weight=weight
    )
    rank = _kernel_rank(weight, op, rank)
    xb, unbatched = _batched(x, rank, xp, op)
    # An unbatched x has an unbatched output: grad_output must be unbatched too.
    gy = xp.expand_dims(grad_output, axis=0) if unbatched else grad_output
    geom = conv_geometry(tuple(xb.shape), tuple(weight.shape), **conv_args)
    _check_channels(geom, op)
    _check_grad_output(grad_output, geom, op, unbatched=unbatched)
    pads = geom.pad
    xb, route = _padded_route(xb, geom, mode, xp)
    # A padding mode: the input gradient is that of the padded input, folded
    # back by the adjoint of the padding.
    grad_route = route if route.padding_mode == "zeros" else _engine.padded_input_route(route)
    with quiet_float_errors(xb):
        # The weight gradient first: its columns (with a row of ones for the
        # bias) are the larger, and the input gradient's reuse their buffer.
        # For complex arrays each gradient is the adjoint (PyTorch's
        # convention): the passes are bilinear, so x and W enter conjugated.
        grad_w, grad_b = _engine.weight_grad(gy, _conj(xb, xp), route, xp, bias=bias)
        grad_x = _engine.input_grad(gy, _conj(weight, xp), grad_route, xp)
        if mode != "zeros":
            grad_x = pad_adjoint(grad_x, pads, mode, xp)
    grads = (grad_x[0, ...] if unbatched else grad_x, grad_w, grad_b)
    return ConvGradients(*(_narrow(g, dtype, xp) for g in grads))


def conv_backward(
    grad_output: Array,
    x: Array,
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
    """Gradients of :func:`conv` with respect to its input, weight and bias, any rank.

    Parameters
    ----------
    grad_output : array
        dL/dy, the shape of ``conv(x, weight, ...)``.
    x, weight : array
        The arrays the forward pass was called with.
    stride, padding, dilation, groups, padding_mode
        The forward pass's arguments. With a `padding_mode` other than
        ``'zeros'``, the gradient of each padded value is added to the input
        value it was copied from.
    bias : bool, optional
        Whether to compute the bias gradient (``None`` in the result otherwise).
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    ConvGradients
        Named tuple ``(input, weight, bias)`` with the shapes of `x`, `weight`
        and ``(O,)``. For complex arrays these are the adjoints (what
        PyTorch's autograd returns): ``input = A^H grad_output`` for the
        linear map ``A`` from the input to the output, and likewise for the
        weight.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv`; also when `grad_output` has the wrong shape or `bias`
        is not a bool.

    Notes
    -----
    ``weight = sum_n grad_output[n] @ im2col(x)[n].T`` and ``input =
    col2im(weight.T @ grad_output)``; the input gradient is
    :func:`conv_transpose` of `grad_output`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x = np.ones((1, 1, 3, 3))
    >>> w = np.ones((1, 1, 2, 2))
    >>> grads = xpconv.conv_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> grads.input[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> grads.weight[0, 0], grads.bias
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    return _conv_backward(
        grad_output,
        x,
        weight,
        None,
        bias,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv1d_backward(
    grad_output: Array,
    x: Array,
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
    """Gradients of :func:`conv1d`: :func:`conv_backward` with the rank checked.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> g = xpconv.conv1d_backward(np.ones((1, 1, 2)), np.ones((1, 1, 3)), np.ones((1, 1, 2)))
    >>> g.input, g.weight
    (array([[[1., 2., 1.]]]), array([[[2., 2.]]]))
    """
    return _conv_backward(
        grad_output,
        x,
        weight,
        1,
        bias,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv2d_backward(
    grad_output: Array,
    x: Array,
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
    """Gradients of :func:`conv2d`: :func:`conv_backward` with the rank checked.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x = np.ones((1, 1, 3, 3))
    >>> w = np.ones((1, 1, 2, 2))
    >>> grads = xpconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> grads.input[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return _conv_backward(
        grad_output,
        x,
        weight,
        2,
        bias,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv3d_backward(
    grad_output: Array,
    x: Array,
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
    """Gradients of :func:`conv3d`: :func:`conv_backward` with the rank checked.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x, w = np.ones((1, 2, 4, 4, 4)), np.ones((3, 2, 2, 2, 2))
    >>> g = xpconv.conv3d_backward(np.ones((1, 3, 3, 3, 3)), x, w)
    >>> g.input.shape, g.weight.shape, g.bias.shape
    ((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), (3,))
    """
    return _conv_backward(
        grad_output,
        x,
        weight,
        3,
        bias,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


# --------------------------------------------------------------------------- transposed


def _conv_transpose(
    x: Array,
    weight: Array,
    bias: Array | None,
    rank: int | None,
    xp: Any,
    padding_mode: str,
    **conv_args: Any,
) -> Array:
    op = _op_name("conv_transpose", rank)
    zeros_only(padding_mode, op)
    xp, (x, weight, bias), dtype = _check_arrays(xp, x=x, weight=weight, bias=bias)
    rank = _kernel_rank(weight, op, rank, transposed=True)
    xb, unbatched = _batched(x, rank, xp, op)
    geom = transpose_geometry(tuple(xb.shape), tuple(weight.shape), op=op, **conv_args)
    _check_channels(geom, op)
    _check_bias(bias, geom.in_channels)
    _engine.check_fits(geom.input_shape, itemsize(x.dtype, xp), x, f"{op}'s output")
    with quiet_float_errors(xb):
        y = _engine.input_grad(xb, weight, _engine.plan(geom, xb, xp), xp)
        if bias is not None:
            y = add_into(y, (...,), xp.reshape(bias, (geom.in_channels, *(1,) * rank)))
    return _narrow(y[0, ...] if unbatched else y, dtype, xp)


_TRANSPOSE_DOC = """Transposed convolution{what}, as ``torch.nn.functional.conv_transpose{torch}``.

    It is the input gradient of :func:`{forward}`: ``{name}(g, w, stride=s,
    padding=p)`` equals ``{forward}_backward(g, x, w, stride=s,
    padding=p).input`` for an `x` of the matching size.

    Parameters
    ----------
    x : array
        Shape {x_shape}.
    weight : array
        Shape {w_shape} (PyTorch's transposed layout).
    bias : array, optional
        Shape (C_out,).
    stride, padding, dilation : int or {tuple_words}, optional
        The arguments of the convolution being transposed.
    output_padding : int or {tuple_words}, optional
        Extra positions at the end of each output axis, to pick one of the
        input sizes a strided convolution maps to the same output size. Must
        be smaller than either stride or dilation.
    groups : int, optional
        Number of channel groups.
    padding_mode : 'zeros', optional
        Only ``'zeros'``, as in PyTorch: the padding of a transposed
        convolution removes output values rather than adding input values.
        Any other mode is a ValueError.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape ``(N, C_out, *out)`` with ``out = (size-1)*stride - 2*padding +
        dilation*(kernel-1) + output_padding + 1`` along each axis.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv`, plus an invalid `output_padding`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> {example}
    """


def conv_transpose(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    output_padding: SizeArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    return _conv_transpose(
        x,
        weight,
        bias,
        None,
        xp,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv_transpose1d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    output_padding: SizeArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    return _conv_transpose(
        x,
        weight,
        bias,
        1,
        xp,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv_transpose2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    output_padding: SizeArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    return _conv_transpose(
        x,
        weight,
        bias,
        2,
        xp,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv_transpose3d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    output_padding: SizeArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    return _conv_transpose(
        x,
        weight,
        bias,
        3,
        xp,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


conv_transpose.__doc__ = _TRANSPOSE_DOC.format(
    what=" over any number of spatial dimensions (``weight.ndim - 2``)",
    torch="1d/2d/3d",
    name="conv_transpose",
    forward="conv",
    x_shape="``(N, C_in, *spatial)`` or ``(C_in, *spatial)``",
    w_shape="``(C_in, C_out/groups, *kernel)``",
    tuple_words="tuple of D ints",
    example="xpconv.conv_transpose(np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 2, 2, 2))).shape\n"
    "    (1, 1, 3, 3, 3)",
)
conv_transpose1d.__doc__ = _TRANSPOSE_DOC.format(
    what=" of signals",
    torch="1d",
    name="conv_transpose1d",
    forward="conv1d",
    x_shape="(N, C_in, L) or (C_in, L)",
    w_shape="(C_in, C_out/groups, K)",
    tuple_words="1-tuple",
    example="xpconv.conv_transpose1d(np.ones((1, 1, 2)), np.ones((1, 1, 3)), stride=2)\n"
    "    array([[[1., 1., 2., 1., 1.]]])",
)
conv_transpose2d.__doc__ = _TRANSPOSE_DOC.format(
    what=" of images",
    torch="2d",
    name="conv_transpose2d",
    forward="conv2d",
    x_shape="(N, C_in, H, W) or (C_in, H, W)",
    w_shape="(C_in, C_out/groups, KH, KW)",
    tuple_words="pair of ints",
    example="xpconv.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]\n"
    "    array([[1., 2., 1.],\n           [2., 4., 2.],\n           [1., 2., 1.]])",
)
conv_transpose3d.__doc__ = _TRANSPOSE_DOC.format(
    what=" of volumes",
    torch="3d",
    name="conv_transpose3d",
    forward="conv3d",
    x_shape="(N, C_in, D, H, W) or (C_in, D, H, W)",
    w_shape="(C_in, C_out/groups, KD, KH, KW)",
    tuple_words="3-tuple",
    example="xpconv.conv_transpose3d(np.ones((1, 4, 3, 3, 3)), np.ones((4, 2, 2, 2, 2)),"
    " stride=2).shape\n    (1, 2, 6, 6, 6)",
)


def conv_transpose_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    output_padding: SizeArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> ConvGradients:
    """Gradients of :func:`conv_transpose` (any rank) with respect to its input, weight and bias.

    A transposed convolution is the input gradient of a convolution with the
    same weight, so its input gradient is that convolution (:func:`conv` of
    `grad_output`) and its weight gradient that convolution's weight
    gradient, with the roles of input and output exchanged.

    Parameters
    ----------
    grad_output : array
        dL/dy, the shape of ``conv_transpose(x, weight, ...)``.
    x, weight : array
        The arrays the forward pass was called with.
    stride, padding, output_padding, dilation, groups, padding_mode
        The forward pass's arguments (`padding_mode` is ``'zeros'`` only).
    bias : bool, optional
        Whether to compute the bias gradient (``None`` in the result otherwise).
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    ConvGradients
        Named tuple ``(input, weight, bias)`` with the shapes of `x`, `weight`
        and ``(C_out,)``.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x, w = np.ones((1, 1, 2)), np.ones((1, 1, 3))
    >>> g = xpconv.conv_transpose_backward(np.ones((1, 1, 5)), x, w, stride=2)
    >>> g.input, g.weight, g.bias
    (array([[[3., 3.]]]), array([[[2., 2., 2.]]]), array([5.]))
    """
    op = "conv_transpose_backward"
    zeros_only(padding_mode, op)
    xp, (grad_output, x, weight), dtype = _check_arrays(
        xp, grad_output=grad_output, x=x, weight=weight
    )
    if not isinstance(bias, bool):
        msg = f"bias must be True or False (whether to compute dL/db), got {bias!r}"
        raise TypeError(msg)
    rank = _kernel_rank(weight, op, None, transposed=True)
    xb, unbatched = _batched(x, rank, xp, op)
    gy = xp.expand_dims(grad_output, axis=0) if unbatched else grad_output
    geom = transpose_geometry(
        tuple(xb.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        op="conv_transpose",
    )
    _check_channels(geom, op)
    if tuple(gy.shape) != geom.input_shape:
        expected = geom.input_shape[1:] if unbatched else geom.input_shape
        msg = (
            f"grad_output must have the conv_transpose output shape {expected}, "
            f"got {tuple(grad_output.shape)}"
        )
        raise ValueError(msg)
    # geom is the convolution from the transposed convolution's output to its input.
    route = _engine.plan(geom, gy, xp)
    with quiet_float_errors(xb):
        # Adjoints for complex arrays, as in conv_backward.
        grad_x = _engine.forward(gy, _conj(weight, xp), None, route, xp)
        grad_w, _ = _engine.weight_grad(_conj(xb, xp), gy, route, xp, bias=False)
        grad_b = _engine.bias_grad(gy, xp) if bias else None
    grads = (grad_x[0, ...] if unbatched else grad_x, grad_w, grad_b)
    return ConvGradients(*(_narrow(g, dtype, xp) for g in grads))


# --------------------------------------------------------------------------- unfold / fold


def _unfold_rank(x: Array, kernel_size: object) -> int:
    if isinstance(kernel_size, tuple | list):
        return len(kernel_size)
    # An int kernel_size: as torch, a 3-D input is an unbatched (C, H, W) image.
    return 2 if x.ndim == 3 else int(x.ndim) - 2


def unfold(
    x: Array,
    /,
    kernel_size: SizeArg,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    dilation: SizeArg = 1,
    xp: Any = None,
) -> Array:
    """Extract sliding windows (im2col), like ``torch.nn.functional.unfold``, any rank.

    Parameters
    ----------
    x : array
        Shape ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.
    kernel_size : int or tuple of ints
        Window size. A tuple gives the spatial rank (``(3,)`` for signals,
        ``(3, 3, 3)`` for volumes); with an int the rank is ``x.ndim - 2``,
        except that a 3-D `x` is an unbatched (C, H, W) image, as in PyTorch
        (pass ``kernel_size=(k,)`` for a batch of signals (N, C, L)).
    stride, padding, dilation : int or tuple of ints
        Window step, zero padding and tap spacing.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C*K, L) (or (C*K, L)) with ``K = prod(kernel_size)``: rows
        ordered (channel, kernel offset), ``L`` windows in row-major order.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.unfold(np.arange(9.0).reshape(1, 1, 3, 3), 2)[0]
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    >>> xpconv.unfold(np.arange(5.0).reshape(1, 1, 5), (3,), stride=2)[0]
    array([[0., 2.],
           [1., 3.],
           [2., 4.]])
    """
    xp, (x,), dtype = _check_arrays(xp, x=x)
    rank = _unfold_rank(x, kernel_size)
    if rank < 1:
        msg = (
            "unfold expects an input x (N, C, *spatial) or (C, *spatial) with at least one "
            f"spatial axis, got shape {tuple(x.shape)}"
        )
        raise ValueError(msg)
    xb, unbatched = _batched(x, rank, xp, "unfold")
    geom = window_geometry(
        tuple(xb.shape), kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    rows = (geom.batch, geom.column_rows, geom.out_volume)
    _engine.check_fits(rows, itemsize(x.dtype, xp), x, "unfold's result")
    cols = im2col(xb, geom, xp)
    return _narrow(cols[0, ...] if unbatched else cols, dtype, xp)


def _fold_rank(output_size: object, kernel_size: object) -> int:
    for size in (output_size, kernel_size):
        if isinstance(size, tuple | list):
            return len(size)
    return 2  # ints everywhere: torch's fold, for images


def _fold_geometry(
    cols: Array, output_size: object, kernel_size: object, **window_args: Any
) -> ConvGeometry:
    rank = _fold_rank(output_size, kernel_size)
    kernel = as_tuple(kernel_size, "kernel_size", rank, minimum=1)
    size = as_tuple(output_size, "output_size", rank, minimum=1)
    n, rows, length = (int(s) for s in cols.shape)
    volume = math.prod(kernel)
    if rows % volume != 0:
        msg = (
            f"cols.shape[-2] ({rows}) must be divisible by the kernel volume "
            f"{'x'.join(map(str, kernel))} = {volume}"
        )
        raise ValueError(msg)
    geom = window_geometry(
        (n, rows // volume, *size), kernel, input_name="output_size", **window_args
    )
    if length != geom.out_volume:
        windows = "x".join(map(str, geom.out_size))
        msg = (
            f"cols.shape[-1] ({length}) must equal the number of windows "
            f"{windows} = {geom.out_volume} for output_size {size}"
        )
        raise ValueError(msg)
    return geom


def fold(
    cols: Array,
    /,
    output_size: SizeArg,
    kernel_size: SizeArg,
    *,
    stride: SizeArg = 1,
    padding: SizeArg = 0,
    dilation: SizeArg = 1,
    xp: Any = None,
) -> Array:
    """Sum sliding windows back into an array (col2im), like ``torch.nn.functional.fold``, any rank.

    The adjoint of :func:`unfold`: overlapping windows are added.

    Parameters
    ----------
    cols : array
        Shape (N, C*K, L) or (C*K, L).
    output_size : int or tuple of ints
        The spatial size of the result. The spatial rank is the length of
        `output_size` or else of `kernel_size`; with ints for both it is 2, as
        in PyTorch.
    kernel_size, stride, padding, dilation : int or tuple of ints
        As for :func:`unfold`.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape ``(N, C, *output_size)`` (or ``(C, *output_size)``).

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.fold(np.ones((1, 4, 4)), (3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> xpconv.fold(np.ones((1, 3, 2)), (5,), 3, stride=2)[0, 0]
    array([1., 1., 2., 1., 1.])
    """
    xp, (cols,), dtype = _check_arrays(xp, cols=cols)
    if cols.ndim not in (2, 3):
        msg = f"cols must be 3-D (N, C*K, L) or 2-D (C*K, L), got shape {tuple(cols.shape)}"
        raise ValueError(msg)
    unbatched = cols.ndim == 2
    cols3 = xp.expand_dims(cols, axis=0) if unbatched else cols
    geom = _fold_geometry(
        cols3, output_size, kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    _engine.check_fits(geom.input_shape, itemsize(cols.dtype, xp), cols, "fold's result")
    with quiet_float_errors(cols3):
        image = col2im(cols3, geom, xp)
    return _narrow(image[0, ...] if unbatched else image, dtype, xp)
