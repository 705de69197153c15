"""Convolution functions with PyTorch semantics for any array API library.

Layouts follow ``torch.nn.functional``: inputs are (N, C, H, W) (or unbatched
(C, H, W)), conv2d weights are (out_channels, in_channels/groups, KH, KW) and
the operation is a cross-correlation. Results stay in the inputs' namespace,
dtype and device; inputs are never modified.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from xpconv._backend import device_of, namespace_of
from xpconv._geometry import (
    ConvGeometry,
    PaddingArg,
    PairArg,
    as_pair,
    conv_geometry,
    transpose_geometry,
    window_geometry,
)
from xpconv._im2col import col2im, im2col

__all__ = [
    "Conv2dGradients",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "fold",
    "unfold",
]

Array = Any
Namespace = Any


class Conv2dGradients(NamedTuple):
    """Gradients returned by :func:`conv2d_backward`."""

    input: Array
    weight: Array
    bias: Array | None


# --------------------------------------------------------------------------- checks


def _check_arrays(xp: Namespace | None, **arrays: Array | None) -> Namespace:
    """Namespace, device and dtype checks shared by every public function."""
    if xp is None:
        xp = namespace_of(**arrays)
    else:
        namespace_of(**arrays)  # still reject a mix of libraries
    device_of(**arrays)
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {}
    for name, a in present.items():
        if not xp.isdtype(a.dtype, "real floating"):
            msg = f"{name} must have a real floating dtype (float32 or float64), got {a.dtype}"
            raise TypeError(msg)
        dtypes[name] = a.dtype
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        msg = f"arrays must share one dtype, got {listed}; cast them with xp.astype first"
        raise TypeError(msg)
    return xp


def _batched(x: Array, xp: Namespace, name: str) -> tuple[Array, bool]:
    """Accept (C, H, W) like PyTorch does by adding a batch axis of 1."""
    if x.ndim == 3:
        return xp.expand_dims(x, axis=0), True
    if x.ndim != 4:
        msg = f"{name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(x.shape)}"
        raise ValueError(msg)
    return x, False


def _check_bias(bias: Array | None, channels: int) -> None:
    if bias is not None and tuple(bias.shape) != (channels,):
        msg = f"bias must have shape ({channels},) (one value per output channel), got {tuple(bias.shape)}"
        raise ValueError(msg)


# --------------------------------------------------------------------------- kernels
# The pieces below take a validated ConvGeometry; the layers call them directly.


def _grouped_weight(weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(O, C/g, KH, KW) -> (g, O/g, C/g*KH*KW)."""
    g = geom.groups
    return xp.reshape(weight, (g, geom.out_channels // g, -1))


def _grouped_cols(cols: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(N, C*KH*KW, L) -> (N, g, C/g*KH*KW, L); channels of a group are contiguous rows."""
    return xp.reshape(cols, (geom.batch, geom.groups, -1, geom.out_area))


def forward_from_cols(
    cols: Array, weight: Array, bias: Array | None, geom: ConvGeometry, xp: Namespace
) -> Array:
    """conv2d output (N, O, OH, OW) from im2col columns: one batched matmul per group."""
    y = xp.matmul(_grouped_weight(weight, geom, xp), _grouped_cols(cols, geom, xp))
    y = xp.reshape(y, geom.output_shape)
    if bias is not None:
        y = y + xp.reshape(bias, (geom.out_channels, 1, 1))
    return y


def weight_grad_from_cols(
    grad_output: Array, cols: Array, geom: ConvGeometry, xp: Namespace
) -> Array:
    """dL/dW = sum over batch and pixels of grad_output x columns."""
    gy = xp.reshape(grad_output, (geom.batch, geom.groups, -1, geom.out_area))
    per_sample = xp.matmul(gy, xp.matrix_transpose(_grouped_cols(cols, geom, xp)))
    return xp.reshape(xp.sum(per_sample, axis=0), geom.weight_shape)


def input_grad(grad_output: Array, weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """dL/dx: weight^T x grad_output gives columns, col2im sums them back to pixels."""
    gy = xp.reshape(grad_output, (geom.batch, geom.groups, -1, geom.out_area))
    wt = xp.matrix_transpose(_grouped_weight(weight, geom, xp))
    cols = xp.matmul(wt, gy)  # (N, g, C/g*KH*KW, L)
    cols = xp.reshape(cols, (geom.batch, geom.in_channels * geom.kernel_area, geom.out_area))
    return col2im(cols, geom, xp)


def bias_grad(grad_output: Array, xp: Namespace) -> Array:
    return xp.sum(grad_output, axis=(0, 2, 3))


# --------------------------------------------------------------------------- public API


def conv2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: PairArg = 1,
    padding: PaddingArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    xp: Namespace | None = None,
) -> Array:
    """2-D convolution (cross-correlation), like ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array
        Input of shape (N, C, H, W) or (C, H, W), real floating dtype.
    weight : array
        Filters of shape (O, C/groups, KH, KW), same dtype, namespace and device as `x`.
    bias : array, optional
        Shape (O,). Added to every output pixel of its channel.
    stride, dilation : int or (int, int), optional
        Step between windows and between kernel taps; positive.
    padding : int, (int, int), 'valid' or 'same', optional
        Zeros added on each side of H and W. ``'same'`` gives an output of size
        ``ceil(H / stride)`` (TensorFlow/JAX rule; the odd pixel goes to the
        bottom/right), which for stride 1 is PyTorch's ``padding='same'``.
    groups : int, optional
        Split channels into `groups` independent convolutions (``groups == C``
        is a depthwise convolution).
    xp : namespace, optional
        The array API namespace; inferred from the inputs by default.

    Returns
    -------
    array
        Shape (N, O, OH, OW), with ``OH = (H + pad_h - dilation*(KH-1) - 1) // stride + 1``.

    Raises
    ------
    ValueError
        Wrong rank, channel/group mismatch, kernel larger than the padded input,
        non-positive stride or dilation, negative padding, unknown padding string,
        arrays on different devices.
    TypeError
        Arrays from different libraries, different dtypes, non-floating dtypes.

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
    xp = _check_arrays(xp, x=x, weight=weight, bias=bias)
    x4, unbatched = _batched(x, xp, "x")
    geom = conv_geometry(
        tuple(x4.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    _check_bias(bias, geom.out_channels)
    y = forward_from_cols(im2col(x4, geom, xp), weight, bias, geom, xp)
    return y[0, ...] if unbatched else y


def conv2d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride: PairArg = 1,
    padding: PaddingArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    bias: bool = True,
    xp: Namespace | None = None,
) -> Conv2dGradients:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array
        dL/dy, the shape of ``conv2d(x, weight, ...)``.
    x, weight : array
        The arrays the forward pass was called with.
    stride, padding, dilation, groups
        The forward pass's arguments.
    bias : bool, optional
        Whether to compute the bias gradient (``None`` in the result otherwise).
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    Conv2dGradients
        Named tuple ``(input, weight, bias)`` with the shapes of `x`, `weight`
        and ``(O,)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv2d`; also when `grad_output` has the wrong shape.

    Notes
    -----
    ``weight = sum_n grad_output[n] @ im2col(x)[n].T`` and
    ``input = col2im(weight.T @ grad_output)``; the input gradient is
    :func:`conv_transpose2d` of `grad_output`.

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
    >>> grads.weight[0, 0], grads.bias
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    xp = _check_arrays(xp, grad_output=grad_output, x=x, weight=weight)
    x4, unbatched = _batched(x, xp, "x")
    gy = xp.expand_dims(grad_output, axis=0) if unbatched and grad_output.ndim == 3 else grad_output
    geom = conv_geometry(
        tuple(x4.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    if tuple(gy.shape) != geom.output_shape:
        expected = geom.output_shape[1:] if unbatched else geom.output_shape
        msg = f"grad_output must have the conv2d output shape {expected}, got {tuple(grad_output.shape)}"
        raise ValueError(msg)
    cols = im2col(x4, geom, xp)
    grad_w = weight_grad_from_cols(gy, cols, geom, xp)
    del cols
    grad_x = input_grad(gy, weight, geom, xp)
    grad_b = bias_grad(gy, xp) if bias else None
    return Conv2dGradients(grad_x[0, ...] if unbatched else grad_x, grad_w, grad_b)


def conv_transpose2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: PairArg = 1,
    padding: PairArg = 0,
    output_padding: PairArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    xp: Namespace | None = None,
) -> Array:
    """Transposed convolution, like ``torch.nn.functional.conv_transpose2d``.

    It is the input gradient of :func:`conv2d`: ``conv_transpose2d(g, w, stride=s,
    padding=p)`` equals ``conv2d_backward(g, x, w, stride=s, padding=p).input``
    for an `x` of the matching size.

    Parameters
    ----------
    x : array
        Shape (N, C_in, H, W) or (C_in, H, W).
    weight : array
        Shape (C_in, C_out/groups, KH, KW) (PyTorch's transposed layout).
    bias : array, optional
        Shape (C_out,).
    stride, padding, dilation : int or (int, int), optional
        The arguments of the convolution being transposed.
    output_padding : int or (int, int), optional
        Extra rows/columns on the bottom/right of the output, to pick one of the
        input sizes a strided convolution maps to the same output size. Must be
        smaller than either stride or dilation.
    groups : int, optional
        Number of channel groups.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C_out, H_out, W_out) with
        ``H_out = (H-1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv2d`, plus an invalid `output_padding`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    xp = _check_arrays(xp, x=x, weight=weight, bias=bias)
    x4, unbatched = _batched(x, xp, "x")
    geom = transpose_geometry(
        tuple(x4.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )
    _check_bias(bias, geom.in_channels)
    y = input_grad(x4, weight, geom, xp)
    if bias is not None:
        y = y + xp.reshape(bias, (geom.in_channels, 1, 1))
    return y[0, ...] if unbatched else y


def unfold(
    x: Array,
    /,
    kernel_size: PairArg,
    *,
    stride: PairArg = 1,
    padding: PairArg = 0,
    dilation: PairArg = 1,
    xp: Namespace | None = None,
) -> Array:
    """Extract sliding windows (im2col), like ``torch.nn.functional.unfold``.

    Parameters
    ----------
    x : array
        Shape (N, C, H, W) or (C, H, W).
    kernel_size, stride, padding, dilation : int or (int, int)
        Window size, step, zero padding and tap spacing.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C*KH*KW, L) (or (C*KH*KW, L)), rows ordered (channel, kernel
        row, kernel column), ``L = OH*OW`` windows in row-major order.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.unfold(np.arange(9.0).reshape(1, 1, 3, 3), 2)[0]
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    xp = _check_arrays(xp, x=x)
    x4, unbatched = _batched(x, xp, "x")
    geom = window_geometry(
        tuple(x4.shape), kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    cols = im2col(x4, geom, xp)
    return cols[0, ...] if unbatched else cols


def fold(
    cols: Array,
    /,
    output_size: PairArg,
    kernel_size: PairArg,
    *,
    stride: PairArg = 1,
    padding: PairArg = 0,
    dilation: PairArg = 1,
    xp: Namespace | None = None,
) -> Array:
    """Sum sliding windows back into an image (col2im), like ``torch.nn.functional.fold``.

    The adjoint of :func:`unfold`: overlapping windows are added.

    Parameters
    ----------
    cols : array
        Shape (N, C*KH*KW, L) or (C*KH*KW, L).
    output_size : int or (int, int)
        The image size (H, W).
    kernel_size, stride, padding, dilation : int or (int, int)
        As for :func:`unfold`.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C, H, W) (or (C, H, W)).

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.fold(np.ones((1, 4, 4)), (3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    xp = _check_arrays(xp, cols=cols)
    if cols.ndim not in (2, 3):
        msg = f"cols must be 3-D (N, C*KH*KW, L) or 2-D (C*KH*KW, L), got shape {tuple(cols.shape)}"
        raise ValueError(msg)
    unbatched = cols.ndim == 2
    cols3 = xp.expand_dims(cols, axis=0) if unbatched else cols
    kh, kw = as_pair(kernel_size, "kernel_size", minimum=1)
    h, w = as_pair(output_size, "output_size", minimum=1)
    n, rows, length = (int(s) for s in cols3.shape)
    if rows % (kh * kw) != 0:
        msg = f"cols.shape[-2] ({rows}) must be divisible by the kernel area {kh}x{kw} = {kh * kw}"
        raise ValueError(msg)
    geom = window_geometry(
        (n, rows // (kh * kw), h, w),
        (kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        input_name="output_size",
    )
    if length != geom.out_area:
        msg = (
            f"cols.shape[-1] ({length}) must equal the number of windows "
            f"{geom.out_hw[0]}x{geom.out_hw[1]} = {geom.out_area} for output_size {(h, w)}"
        )
        raise ValueError(msg)
    image = col2im(cols3, geom, xp)
    return image[0, ...] if unbatched else image
